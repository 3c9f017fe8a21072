"""Training options (everything the loop needs besides the network configs)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ..errors import InputError
from .losses import LossConfig

# Options that only steer one invocation; a resumed run takes them from the command line.
RUN_CONTROL = ("out", "kimg", "max_minutes", "kimg_per_run", "workers", "device", "progress",
               "snap_ticks", "image_ticks", "keep_network_snapshots", "compact_snapshot", "snapshot_part_mb", "tf32",
               "data", "seg_data")


@dataclass
class TrainOptions:
    # data (spec 3.5; official run: mirror, back views repeated 4x)
    data: str = ""
    seg_data: str | None = None
    xflip: bool = True
    min_yaw: float = 0.0
    max_yaw: float = 180.0
    back_repeat: int = 4
    # optimisation (spec 2.5)
    batch: int = 32
    batch_gpu: int = 4
    glr: float = 0.0025
    dlr: float = 0.002
    betas: tuple[float, float] = (0.0, 0.99)
    eps: float = 1e-8
    r1_interval: int = 16        # lazy R1 every N minibatches; 0 = R1 in every D step
    ema_kimg: float = 10.0       # G_ema half-life
    ema_rampup: float | None = 0.05
    precision: str = "fp32"      # fp32 | bf16 (bf16 autocast only on CUDA)
    seed: int = 0
    loss: LossConfig = field(default_factory=LossConfig)
    # run control
    out: str = ""
    kimg: float = 25000.0
    tick_kimg: float = 4.0
    snap_ticks: int = 50         # snapshot + G_ema export every N ticks
    image_ticks: int = 50        # sample grid every N ticks
    keep_network_snapshots: bool = True
    max_minutes: float | None = None   # stop (with a snapshot) after this wall time
    kimg_per_run: float | None = None  # stop (with a snapshot) after this many kimg in this run
    workers: int = 2
    device: str = "auto"
    progress: bool = True
    compact_snapshot: bool = False     # Adam moments stored as bfloat16 (about 1/3 smaller snapshots)
    snapshot_part_mb: float | None = None  # split snapshots into parts of at most this many MiB
    tf32: bool = True                  # TF32 matmuls/convs on CUDA (the official run disables them)

    def validate(self, world: int = 1) -> None:
        if self.batch % world:
            raise InputError(f"--batch {self.batch} is not divisible by the number of processes {world}")
        per_rank = self.batch // world
        if per_rank % self.batch_gpu:
            raise InputError(f"--batch-gpu {self.batch_gpu} must divide the per-process batch {per_rank}")
        if self.precision not in ("fp32", "bf16"):
            raise InputError(f"--precision must be fp32 or bf16, got {self.precision}")
        for name in ("kimg", "tick_kimg", "ema_kimg", "glr", "dlr"):
            if getattr(self, name) <= 0:
                raise InputError(f"--{name.replace('_', '-')} must be positive")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, data: dict) -> "TrainOptions":
        names = {f.name for f in dataclasses.fields(cls)}
        data = {k: v for k, v in data.items() if k in names}
        if isinstance(data.get("loss"), dict):
            loss_names = {f.name for f in dataclasses.fields(LossConfig)}
            data["loss"] = LossConfig(**{k: v for k, v in data["loss"].items() if k in loss_names})
        if "betas" in data:
            data["betas"] = tuple(data["betas"])
        return cls(**data)

    def replace(self, **changes) -> "TrainOptions":
        loss_changes = {k[5:]: changes.pop(k) for k in list(changes) if k.startswith("loss.")}
        out = dataclasses.replace(self, **changes)
        if loss_changes:
            out = dataclasses.replace(out, loss=dataclasses.replace(out.loss, **loss_changes))
        return out
