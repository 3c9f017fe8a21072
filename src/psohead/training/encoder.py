"""Training a latent encoder (:mod:`psohead.networks.encoder`) on its generator's own samples.

Each step draws z and a camera like a photo's (mostly frontal, some yaw and pitch), renders the
generator's image (no grad), and teaches the encoder to recover the truncation-free W+ code from
image + label (latent loss, in units of the latents' spread, so the mean latent scores about 1).
Every ``image_every`` steps some predicted codes are also rendered through the frozen generator
(gradients reach the encoder only) and compared with the input (pixel MSE + the inversion's
perceptual term); with ``data``, real aligned crops join that image loss (they have no latent).

A run folder (``run_dir``) holds ``snapshot-latest.pt`` (encoder, Adam, step, sampler and RNG
states), ``log.jsonl``, ``config.json`` and sample grids (per held-out sample: input | encoder's
render). A run continues with ``resume``; every invocation runs a budget of steps (``steps``,
``kimg`` or ``max_minutes``) and ends with a snapshot and the encoder file ``out``.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from .. import camera
from ..api import generator_digest, load_encoder, load_generator, save_encoder
from ..atomic import check_output_file, claim_dir, write_image, write_json
from ..errors import InputError
from ..inversion.losses import PERCEPTUAL_BACKENDS, build_perceptual
from ..inversion.projector import latent_stats
from ..networks.config import EncoderConfig
from ..networks.encoder import LatentEncoder
from ..progress import track
from .loop import StopFlag, check_run_folder, set_speed_flags, to_training_batch
from .photo_augment import augment_photos
from .snapshot import LATEST, capture_rng, find_latest, load_snapshot, remove_stale_temps, restore_rng, save_snapshot

VERB = "train-encoder"
STATE_KIND = "encoder"  # marks an encoder run's snapshot (GAN snapshots share the file format)
# Options that only steer one invocation; a resumed run takes them from the command line.
RUN_CONTROL = ("out", "steps", "kimg", "max_minutes", "device", "progress", "log_every", "grid_every",
               "snapshot_every")


@dataclass
class EncoderTrainOptions:
    network: str = "default"  # the generator: default, a psohead .safetensors or an official .pkl
    out: str = ""  # the encoder file (.safetensors), written at the end of every invocation
    run_dir: str = ""  # run folder (state, log, grids); empty: beside out, named <out stem>-run
    data: str | None = None  # optional aligned crops + dataset.json: real images for the image loss
    augment: float = 0.0  # share of samples the encoder sees photographically augmented (:mod:`.photo_augment`)
    # the encoder network
    encoder: dict = dataclasses.field(default_factory=dict)  # EncoderConfig fields besides num_ws / w_dim
    init_from: str | None = None  # a new run starts from this encoder file (its network and weights; fresh Adam)
    # optimisation
    batch: int = 16  # generator samples per step
    lr: float = 1e-3  # Adam learning rate (constant after a linear warm-up)
    warmup_steps: int = 100  # linear learning-rate ramp from zero over these first steps
    betas: tuple[float, float] = (0.9, 0.99)
    latent_weight: float = 1.0  # weight of the W+ error (units of the latents' spread)
    image_weight: float = 0.1  # weight of the image loss of re-rendered codes (0: latent loss only)
    image_every: int = 4  # image loss every N steps (a render with backward costs more than a step)
    image_batch: int = 4  # samples (and real crops) re-rendered per image step
    perceptual: str = "auto"  # the inversion's perceptual backend (auto: lpips with vgg16, else msssim)
    perceptual_weight: float = 1.0  # image loss = pixel MSE + this * perceptual distance
    vgg16: str | None = None  # torchvision VGG16 weights for the lpips backend
    # the cameras of the generator's samples (degrees): yaw ~ N(0, yaw_std) within +-max_yaw
    yaw_std: float = 20.0
    max_yaw: float = 60.0
    pitch_std: float = 8.0
    w_avg_samples: int = 10000  # z samples behind the mean latent (as the projector's)
    heldout: int = 32  # fixed held-out samples for the logged latent error (and 4 for the grids)
    seed: int = 0
    # run control
    steps: int | None = None  # steps in this invocation
    kimg: float | None = None  # or thousands of generator samples in this invocation
    max_minutes: float | None = None  # or wall time of this invocation
    log_every: int = 50  # JSONL record (with the held-out error) every N steps
    grid_every: int = 500  # sample grid every N steps
    snapshot_every: int = 1000  # state file + encoder file every N steps
    device: str = "auto"
    progress: bool = True

    def __post_init__(self):
        self.betas = tuple(self.betas)

    def validate(self) -> None:
        for name in ("batch", "image_every", "image_batch", "w_avg_samples", "log_every", "grid_every",
                     "snapshot_every", "heldout"):
            if getattr(self, name) < 1:
                raise InputError(f"--{name.replace('_', '-')} must be >= 1")
        for name in ("lr",):
            if getattr(self, name) <= 0:
                raise InputError(f"--{name} must be positive")
        if not 0 <= self.augment <= 1:
            raise InputError(f"--augment must be in [0, 1], got {self.augment}")
        for name in ("latent_weight", "image_weight", "perceptual_weight", "yaw_std", "pitch_std", "max_yaw",
                     "warmup_steps"):
            if getattr(self, name) < 0:
                raise InputError(f"--{name.replace('_', '-')} must be >= 0")
        if self.perceptual not in PERCEPTUAL_BACKENDS or self.perceptual == "dfeat":
            raise InputError(f"--perceptual must be one of auto, lpips, msssim, none, got {self.perceptual!r}")
        if self.steps is not None and self.steps < 0 or self.kimg is not None and self.kimg < 0:
            raise InputError("--steps and --kimg must be >= 0")
        if self.steps is None and self.kimg is None and self.max_minutes is None:
            raise InputError("give a budget for this run: --steps, --kimg or --max-minutes")
        if not self.out:
            raise InputError("--out is required (the encoder .safetensors file)")
        if self.init_from and self.encoder:
            raise InputError("--init-from takes the encoder's network from its file; drop the --encoder-* flags")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, data: dict) -> "EncoderTrainOptions":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def run_folder(self) -> Path:
        out = Path(self.out)
        return Path(self.run_dir) if self.run_dir else out.with_name(out.stem + "-run")

    def budget(self) -> int | None:
        """Steps this invocation may take at most (None: until ``max_minutes``)."""
        limits = [self.steps] if self.steps is not None else []
        if self.kimg is not None:
            limits.append(math.ceil(self.kimg * 1000 / self.batch))
        return min(limits) if limits else None


# --------------------------------------------------------------------------------------------
# Samples

def sample_labels(n: int, opts: EncoderTrainOptions, gen: torch.Generator) -> torch.Tensor:
    """[n,25] cameras like an aligned photo's: radius 2.7 looking at the head centre, yaw and
    pitch normal around frontal (degrees ``yaw_std``, ``pitch_std``), |yaw| <= ``max_yaw``."""
    yaw = (torch.randn(n, generator=gen) * opts.yaw_std).clamp(-opts.max_yaw, opts.max_yaw)
    pitch = (torch.randn(n, generator=gen) * opts.pitch_std).clamp(-45, 45)
    return camera.label_from_yaw_pitch(yaw.deg2rad(), pitch.deg2rad(), lookat=camera.HEAD_LOOKAT)


@dataclass
class Samples:
    """Generator samples: input image, its label, the code to recover, the render camera and the
    head's opacity."""

    image: torch.Tensor  # [N,3,H,W] in [-1,1]
    label: torch.Tensor  # [N,25] the camera (no offset), as a photo's crop has
    ws: torch.Tensor  # [N,num_ws,w_dim] the truncation-free mapped code
    render_label: torch.Tensor  # [N,25] the camera with the generator's offset for this z
    mask: torch.Tensor  # [N,1,r,r] accumulated opacity at the neural rendering resolution r

    def __getitem__(self, sl) -> "Samples":
        return Samples(*(getattr(self, f.name)[sl] for f in dataclasses.fields(self)))


@torch.no_grad()
def render_samples(G, z: torch.Tensor, label: torch.Tensor) -> Samples:
    device = next(G.parameters()).device
    z, label = z.to(device), label.to(device)
    ws = G.mapping(z, label)
    c_render, _ = G.apply_delta_c(z, label)
    out = G.synthesis(ws, c_render, noise_mode="const", deterministic=True)
    return Samples(out["image"].float(), label, ws, c_render, out["image_mask"].float())


def draw_samples(G, n: int, opts: EncoderTrainOptions, gen: torch.Generator) -> Samples:
    z = torch.randn(n, G.z_dim, generator=gen)
    return render_samples(G, z, sample_labels(n, opts, gen))


def heldout_samples(G, opts: EncoderTrainOptions, chunk: int = 16) -> Samples:
    """The run's fixed held-out samples (their own seed: never drawn in training)."""
    gen = torch.Generator().manual_seed(opts.seed + 1_000_003)
    parts = [draw_samples(G, min(chunk, opts.heldout - i), opts, gen) for i in range(0, opts.heldout, chunk)]
    return Samples(*(torch.cat([getattr(p, f.name) for p in parts]) for f in dataclasses.fields(Samples)))


@torch.no_grad()
def latent_error(E: LatentEncoder, samples: Samples, chunk: int = 16) -> float:
    """Mean squared W+ error of the encoder on ``samples`` in units of the latents' spread
    (the mean latent scores about 1)."""
    total = 0.0
    for i in range(0, len(samples.image), chunk):
        s = samples[i:i + chunk]
        total += float((E(s.image, s.label) - s.ws).square().sum())
    return total / (samples.ws.numel() * float(E.w_scale) ** 2)


@torch.no_grad()
def sample_grid(G, E: LatentEncoder, samples: Samples) -> torch.Tensor:
    """uint8 [H,W,3]: one row per sample, its input beside the encoder's render."""
    pred = E(samples.image, samples.label)
    render = G.synthesis(pred, samples.render_label, noise_mode="const", deterministic=True)["image"].float()
    rows = torch.cat([torch.cat([a, b], 2) for a, b in zip(samples.image, render)], 1)
    return rows.clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8).permute(1, 2, 0).cpu()


# --------------------------------------------------------------------------------------------
# Training

def build_encoder(G, opts: EncoderTrainOptions, stats) -> LatentEncoder:
    """A fresh encoder for G: config from ``opts.encoder``, mean latent and spread from ``stats``."""
    try:
        cfg = EncoderConfig(num_ws=int(G.num_ws), w_dim=int(G.w_dim), c_dim=int(G.c_dim), **opts.encoder)
    except TypeError as err:
        raise InputError(f"encoder config: {err}") from None
    E = LatentEncoder.from_config(cfg)
    with torch.no_grad():
        E.w_avg.copy_(stats.w_avg.reshape(-1))
        E.w_scale.fill_(stats.w_std / math.sqrt(G.w_dim))  # the spread of one entry
    return E


def _image_loss(G, perceptual, ws: torch.Tensor, render_label: torch.Tensor, target: torch.Tensor,
                weight: float) -> torch.Tensor:
    render = G.synthesis(ws, render_label, noise_mode="const", deterministic=True)["image"].float()
    loss = (render - target).square().flatten(1).mean(1)
    if weight > 0:
        loss = loss + weight * perceptual(render, target)
    return loss.mean()


class _RealCrops:
    """Aligned crops of ``opts.data`` drawn with the run's sampler, with the inversion's render
    camera (the label shifted by the mean z's offset)."""

    def __init__(self, path: str, G, z_mean: torch.Tensor):
        from ..io.dataset import HeadDataset

        self.dataset = HeadDataset(path)
        self.G, self.z_mean = G, z_mean

    def draw(self, n: int, gen: torch.Generator, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        idx = torch.randint(len(self.dataset), (n,), generator=gen).tolist()
        batch = torch.utils.data.default_collate([self.dataset[i] for i in idx])
        img, _, label = to_training_batch(batch, device, self.G.img_resolution)
        with torch.no_grad():
            render_label, _ = self.G.apply_delta_c(self.z_mean.expand(n, -1), label)
        return img, label, render_label


def train_encoder(opts: EncoderTrainOptions) -> dict:
    """Train a new encoder; returns a summary dict."""
    return _train(opts, None, None)


def resume_training(run_dir, changes: dict) -> dict:
    """Continue the encoder run in ``run_dir``: its saved options with ``changes`` (the flags given
    again) applied, the run folder ``run_dir`` wherever it was first made; returns a summary dict.
    The run's state (tens of MB) is read once, for the options and the training both."""
    if changes.get("init_from"):
        raise InputError("--init-from starts a new run; a resumed run continues from its own state")
    snap = _load_state(run_dir)
    opts = dataclasses.replace(EncoderTrainOptions.from_dict(snap["options"]), **changes, run_dir=str(run_dir))
    return _train(opts, snap, str(run_dir))


def _train(opts: EncoderTrainOptions, snap: dict | None, resume: str | None) -> dict:
    """:func:`train_encoder` (``snap`` None) or :func:`resume_training` of the run folder ``resume``
    whose state is ``snap``."""
    opts.validate()
    run = opts.run_folder()
    check_output_file(opts.out, (".safetensors",), "encoder file")
    if resume is None and find_latest(run) is not None:
        raise InputError(f"{run} already holds an encoder run; continue it with --resume {run} or choose another "
                         "--out or --run-dir")
    check_run_folder(run, VERB, resume)
    from ..devices import resolve_device

    device = resolve_device(opts.device)
    set_speed_flags(device, tf32=True)
    G = load_generator(opts.network, device=device)
    digest = generator_digest(G)
    if snap is not None and snap["generator_sha256"] != digest:
        raise InputError(f"--network {opts.network}: not the generator this run trains for (weights "
                         f"{digest[:16]}..., the run's {snap['generator_sha256'][:16]}...)")
    stats = latent_stats(G, opts.w_avg_samples)
    perceptual = build_perceptual(opts.perceptual, vgg16=opts.vgg16).to(device)
    real = _RealCrops(opts.data, G, stats.z_mean) if opts.data else None

    torch.manual_seed(opts.seed)
    if opts.init_from and snap is None:  # (a resumed run's own weights come from its state below)
        E = load_encoder(opts.init_from, generator=G, device=device).train().requires_grad_(True)
    else:
        E = build_encoder(G, opts, stats).to(device)
    opt = torch.optim.Adam(E.parameters(), lr=opts.lr, betas=opts.betas)
    gen = torch.Generator().manual_seed(opts.seed)
    step, elapsed_before = 0, 0.0
    if snap is not None:
        E.load_state_dict(snap["encoder"])
        opt.load_state_dict(snap["opt"])
        gen.set_state(snap["sampler"])
        step, elapsed_before = int(snap["step"]), float(snap["elapsed_s"])
        restore_rng(snap["rng"])
    heldout = heldout_samples(G, opts)
    # the same samples, every one augmented once with a fixed draw: how well the encoder ignores
    # what separates a photo from a render
    heldout_photo = dataclasses.replace(heldout, image=augment_photos(
        heldout.image, heldout.mask, 1.0, torch.Generator().manual_seed(opts.seed + 2_000_003)))

    claim_dir(run, VERB)
    remove_stale_temps(run)
    write_json(run / "config.json", {"encoder_config": E.config.to_dict(), "options": opts.to_dict(),
                                     "generator_sha256": digest})

    budget = opts.budget()
    start_step, t_start = step, time.time()

    def elapsed() -> float:  # training seconds over all invocations
        return elapsed_before + time.time() - t_start

    def save() -> None:
        state = {"kind": STATE_KIND, "options": opts.to_dict(), "encoder_config": E.config.to_dict(),
                 "encoder": E.state_dict(), "opt": opt.state_dict(), "step": step, "elapsed_s": elapsed(),
                 "sampler": gen.get_state(), "rng": capture_rng(), "generator_sha256": digest}
        save_snapshot(run / LATEST, state)
        save_encoder(E, opts.out, digest, source=f"psohead train-encoder, {step} steps of batch {opts.batch} "
                                                   f"on {opts.network}")

    acc, reason = {}, "budget"
    steps = range(budget) if budget is not None else itertools.count()
    bar = track(steps, VERB, opts.progress, total=budget, desc="train-encoder")
    with StopFlag() as stop:
        for _ in bar:
            lr = opts.lr * min(1.0, (step + 1) / opts.warmup_steps) if opts.warmup_steps else opts.lr
            for group in opt.param_groups:
                group["lr"] = lr
            s = draw_samples(G, opts.batch, opts, gen)
            opt.zero_grad(set_to_none=True)
            pred = E(augment_photos(s.image, s.mask, opts.augment, gen), s.label)
            latent = (pred - s.ws).square().mean() / E.w_scale.square()
            loss = opts.latent_weight * latent
            terms = {"latent": latent.detach()}
            if opts.image_weight > 0 and step % opts.image_every == 0:
                k = min(opts.image_batch, opts.batch)
                img_loss = _image_loss(G, perceptual, pred[:k], s.render_label[:k], s.image[:k],
                                       opts.perceptual_weight)
                loss = loss + opts.image_weight * img_loss
                terms["image"] = img_loss.detach()
                if real is not None:
                    img, label, render_label = real.draw(opts.image_batch, gen, device)
                    real_loss = _image_loss(G, perceptual, E(img, label), render_label, img, opts.perceptual_weight)
                    loss = loss + opts.image_weight * real_loss
                    terms["real_image"] = real_loss.detach()
            loss.backward()
            opt.step()
            step += 1
            for key, value in terms.items():
                acc.setdefault(key, []).append(value)

            out_of_time = opts.max_minutes is not None and time.time() - t_start > opts.max_minutes * 60
            last = stop.raised or out_of_time or (budget is not None and step - start_step >= budget)
            if step % opts.log_every == 0 or last:
                record = {"step": step, "kimg": step * opts.batch / 1000, "lr": lr, "elapsed_s": round(elapsed(), 2),
                          "heldout_latent_error": round(latent_error(E, heldout), 5),
                          "heldout_latent_error_augmented": round(latent_error(E, heldout_photo), 5)}
                record.update({f"loss/{k}": round(float(torch.stack(v).mean()), 5) for k, v in acc.items()})
                record["sec_per_step"] = round((time.time() - t_start) / max(step - start_step, 1), 4)
                acc.clear()
                with open(run / "log.jsonl", "a") as f:
                    f.write(json.dumps(record) + "\n")
                bar.note(latent=f"{record['heldout_latent_error']:.4f}")
            if step % opts.grid_every == 0 or last:
                write_image(run / f"samples{step:06d}.png", sample_grid(G, E, heldout[:4]).numpy())
            if step % opts.snapshot_every == 0 or last:
                save()
            if stop.raised or out_of_time:
                reason = "signal" if stop.raised else "time limit"
                break
        else:
            if step == start_step:  # a budget of zero steps: still leave a state and an encoder file
                save()
    return {"step": step, "stopped": reason, "heldout_latent_error": latent_error(E, heldout),
            "encoder": str(opts.out), "run_dir": str(run), "generator_sha256": digest}


def _load_state(run_dir) -> dict:
    path = Path(run_dir) / LATEST
    if not Path(run_dir).is_dir() or not path.is_file():
        raise InputError(f"--resume {run_dir}: not a train-encoder run folder (no {LATEST} in it)")
    state = load_snapshot(path)
    if state.get("kind") != STATE_KIND:
        raise InputError(f"--resume {run_dir}: holds a GAN training run, not an encoder run")
    return state
