"""The training loop's endless, resumable, rank-sharded index stream."""
from __future__ import annotations

import torch


class InfiniteSampler(torch.utils.data.Sampler):
    """Endless shuffled indices for one rank, resumable from a position.

    Epoch e is a fixed permutation (seed + e); rank r takes every world-th element of it. The
    stream position is all that is needed to continue exactly where a run stopped.
    """

    def __init__(self, size: int, rank: int = 0, world: int = 1, seed: int = 0, start: int = 0):
        self.size, self.rank, self.world, self.seed, self.start = size, rank, world, seed, start
        self.per_epoch = max(1, size // world) if size >= world else 1

    def __iter__(self):
        pos = self.start
        while True:
            epoch, k = divmod(pos, self.per_epoch)
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            perm = torch.randperm(self.size, generator=g)
            mine = perm[self.rank::self.world] if self.size >= self.world else perm[:1]
            for idx in mine[k:self.per_epoch].tolist():
                yield idx
            pos = (epoch + 1) * self.per_epoch
