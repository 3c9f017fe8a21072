"""Test helper: ``python tests/train_probe.py REPORT_DIR <psohead train arguments>``.

Runs the ``psohead train`` CLI in this process (alone, or as one rank under torchrun) and then
writes ``REPORT_DIR/rank<RANK>.pt``: this process's final G, G_ema and D state dicts, and how
many snapshots and sample grids it wrote. The loop keeps its networks local, so the helper
records them where the loop hands them over (the loss object and the EMA update); nothing in
psohead itself is changed.
"""
import os
import sys
from pathlib import Path

import torch

from psohead.cli import main
from psohead.training import loop


def run(report_dir: Path, argv: list[str]) -> int:
    nets, writes = {}, {"snapshots": 0, "grids": 0}

    class RecordingLoss(loop.PanoHeadLoss):
        def __init__(self, G, D, *args, **kwargs):
            super().__init__(G, D, *args, **kwargs)
            nets.update(G=G, D=D)

    def recording_ema(G_ema, G, beta):
        nets["G_ema"] = G_ema
        update_ema(G_ema, G, beta)

    def counting(fn, key):
        def wrapped(*args, **kwargs):
            writes[key] += 1
            return fn(*args, **kwargs)
        return wrapped

    update_ema = loop.update_ema
    loop.PanoHeadLoss, loop.update_ema = RecordingLoss, recording_ema
    loop.save_snapshot = counting(loop.save_snapshot, "snapshots")
    loop.write_image = counting(loop.write_image, "grids")
    rc = main(["train", *argv])
    report = {name: net.state_dict() for name, net in nets.items()}
    report.update(writes=writes, world=int(os.environ.get("WORLD_SIZE", "1")))
    report_dir.mkdir(parents=True, exist_ok=True)
    torch.save(report, report_dir / f"rank{os.environ.get('RANK', '0')}.pt")
    return rc


if __name__ == "__main__":
    sys.exit(run(Path(sys.argv[1]), sys.argv[2:]))
