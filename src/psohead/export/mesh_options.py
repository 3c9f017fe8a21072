"""Options of the head mesh (:func:`psohead.export.mesh.build_head_mesh`), importable without torch
so the command line can show their defaults."""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import InputError

# Metres per generator world unit, measured on the heads themselves (benchmarks/head_scale.py,
# docs/export.md): SynthHeads' hairless ground-truth heads are 0.333 world units wide and 0.450 long,
# a real adult head about 15 cm and 19.5 cm.
METRES_PER_UNIT = 0.44
MAX_GRID_RESOLUTION = 1024  # 1024^3 density samples are 4 GiB of float32; more would not fit in memory


class MeshOptionError(InputError):
    """A bad :class:`MeshOptions` field: ``field`` names it, ``problem`` says what is wrong (so a
    caller with its own names for the fields, as the preset's ``outputs``, can say it its way)."""

    def __init__(self, field: str, problem: str):
        super().__init__(f"mesh options: {field} {problem}")
        self.field, self.problem = field, problem


@dataclass
class MeshOptions:
    """How :func:`build_head_mesh` / :func:`write_head_meshes` make the head mesh (docs/export.md)."""
    resolution: int = 256          # density grid points per axis (marching-cubes voxel = box / (resolution - 1))
    level: float | str = "auto"    # iso-level on the activated density, or 'auto': where renders see the surface
    crop: str = "render"           # zero density the renderer never sees ('render'), the official borders, or 'none'
    keep_all: bool = False         # keep every piece and inner cavity (default: the head's outer surface only)
    smoothing: int = 3             # Taubin smoothing passes after marching cubes (0 = none)
    faces: int = 50_000            # target face count after decimation (0 = keep every marching-cubes face)
    colors: bool = True            # colour the mesh (False: geometry only, grey, no texture)
    texture: bool = True           # UV atlas + texture baked from the renders (False: vertex colours only)
    texture_size: int | None = None  # texture side in texels, a power of two; None: 8 x the network's image size, <= 2048
    texture_from_photo: bool = False  # where the input photo sees the surface squarely, take its colours
    bake_views: int = 12           # bake views on the level ring (rings above and below get a third each)
    render_batch: int | None = None  # views per generator call while baking (None: 8 on CUDA, 2 on the CPU)
    scale: float = METRES_PER_UNIT  # metres per world unit in the files (1 keeps the generator's units)
    roughness: float = 0.8         # PBR roughness of the material (skin and hair are not glossy)

    def __post_init__(self):
        def bad(name, problem):
            raise MeshOptionError(name, problem)

        for name, low in (("resolution", 8), ("faces", 0), ("smoothing", 0), ("bake_views", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                bad(name, f"must be an integer >= {low}, got {value!r}")
        if self.resolution > MAX_GRID_RESOLUTION:
            bad("resolution", f"must be at most {MAX_GRID_RESOLUTION}, got {self.resolution}")
        if 0 < self.faces < 100:
            bad("faces", f"must be 0 (no decimation) or at least 100, got {self.faces}")
        if self.level != "auto":
            try:
                level = float(self.level)
            except (TypeError, ValueError):
                level = None
            if level is None or not (math.isfinite(level) and level > 0):
                bad("level", f"must be 'auto' or a positive number, got {self.level!r}")
        if self.crop not in ("render", "official", "none"):
            bad("crop", f"must be render, official or none, got {self.crop!r}")
        if self.texture_size is not None:
            t = self.texture_size
            if isinstance(t, bool) or not isinstance(t, int) or t < 256 or t > 8192 or t & (t - 1):
                bad("texture_size", f"must be a power of two from 256 to 8192, got {t!r}")
        if self.texture_from_photo and not (self.texture and self.colors):
            bad("texture_from_photo", "needs the texture (it cannot go with no texture or no colours)")
        if self.render_batch is not None and (isinstance(self.render_batch, bool)
                                              or not isinstance(self.render_batch, int) or self.render_batch < 1):
            bad("render_batch", f"must be a positive integer or None, got {self.render_batch!r}")
        if not (isinstance(self.scale, (int, float)) and self.scale > 0 and math.isfinite(self.scale)):
            bad("scale", f"must be a positive number, got {self.scale!r}")
        if not (isinstance(self.roughness, (int, float)) and 0 <= self.roughness <= 1):
            bad("roughness", f"must be in [0, 1], got {self.roughness!r}")

    def texture_side(self, G) -> int:
        """The texture size used for network ``G`` (``texture_size`` or the automatic one)."""
        if self.texture_size is not None:
            return self.texture_size
        res = int(getattr(G, "img_resolution", 512))
        return min(2048, max(256, 1 << (8 * res - 1).bit_length()))
