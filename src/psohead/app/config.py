"""Settings of the web app: where it listens, the job queue's bounds and the upload limits."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError

# The repository's bundled photos (present in a source checkout / editable install).
EXAMPLES_DIR = Path(__file__).resolve().parents[3] / "examples"


@dataclass(frozen=True)
class AppConfig:
    network: str = "default"  # 'default' (the bundled model) or a network file, loaded once at start-up
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    host: str = "127.0.0.1"  # loopback only unless told otherwise
    port: int = 7860
    preset: str = "fast"  # the page's preset choice to start with
    overrides: dict = field(default_factory=dict)  # preset fields fixed for every job, e.g. {"stage1.steps": 20}
    encoder: str | None = None  # the network's latent encoder file; None: the bundled one for the bundled model
    first_look: bool = True  # where the network has an encoder, show its preview while the full run goes on
    queue: int = 8  # jobs admitted at once (running + waiting); the next one is told to try again
    concurrency: int = 1  # jobs running at once on the device
    ttl: float = 3600.0  # seconds a job's folder (results, downloads) is kept after the job finished
    work_dir: Path | None = None  # parent of the job folders; None: a fresh folder in the system temp dir
    max_upload_mb: float = 20.0  # largest photo file accepted (MiB; Gradio refuses larger uploads itself)
    max_megapixels: float = 40.0  # largest photo accepted, width x height (decoding a bomb stops here)
    max_disk_mb: float = 4096.0  # the work dir's budget: new jobs are refused while it is used up
    examples_dir: Path | None = EXAMPLES_DIR  # photos offered as examples (missing folder: none)

    def __post_init__(self):
        for name, low in (("queue", 1), ("concurrency", 1), ("ttl", 1), ("max_upload_mb", 0.001),
                          ("max_megapixels", 0.001), ("max_disk_mb", 1), ("port", 0)):
            if getattr(self, name) < low:
                raise InputError(f"app: {name} must be >= {low}, got {getattr(self, name)}")
        if self.concurrency > self.queue:
            raise InputError(f"app: concurrency ({self.concurrency}) cannot exceed the queue ({self.queue})")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 2 ** 20)  # MB as Gradio's upload limit counts them

    @property
    def max_pixels(self) -> int:
        return int(self.max_megapixels * 1e6)
