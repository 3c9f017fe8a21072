"""The GAN training loop (spec 2.5): single process or one process per device under torchrun.

Per minibatch: Gmain (one G step), Dmain (one D step) and, every ``r1_interval`` minibatches,
Dreg (lazy R1 with gain = interval and the lazy-regularisation lr/beta scaling). Gradients are
averaged over ranks by :mod:`.distributed`; G_ema follows G with the official half-life and
ramp-up. Rank 0 writes the JSONL log, sample grids and snapshots. A run stops at ``kimg``, after
``kimg_per_run`` kimg or ``max_minutes`` in this invocation, or on SIGINT/SIGTERM, always with a
final snapshot, so long trainings can run as a chain of short resumable chunks.
"""
from __future__ import annotations

import copy
import json
import math
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from .. import camera
from ..atomic import check_output_dir, check_writable, claim_dir, write_image, write_json
from ..errors import InputError
from ..networks.config import DiscriminatorConfig, GeneratorConfig
from ..nn import filtered_resize
from . import distributed as ddp
from ..io.dataset import HeadDataset
from .sampler import InfiniteSampler
from .losses import PanoHeadLoss
from .options import RUN_CONTROL, TrainOptions
from .snapshot import LATEST, capture_rng, find_latest, load_snapshot, remove_stale_temps, restore_rng, save_snapshot


# --------------------------------------------------------------------------------------------
# Networks

def build_generator(cfg: GeneratorConfig) -> torch.nn.Module:
    from ..networks.generator import TriGridGenerator
    return TriGridGenerator.from_config(cfg)


def build_discriminator(cfg: DiscriminatorConfig) -> torch.nn.Module:
    from ..networks.discriminator import MaskDualDiscriminatorV2
    return MaskDualDiscriminatorV2(**cfg.to_dict())


def update_ema(G_ema: torch.nn.Module, G: torch.nn.Module, beta: float) -> None:
    """Parameters: lerp toward G by (1 - beta); buffers: copied (spec 2.5)."""
    with torch.no_grad():
        for p_ema, p in zip(G_ema.parameters(), G.parameters()):
            p_ema.copy_(p.detach().lerp(p_ema, beta))
        for b_ema, b in zip(G_ema.buffers(), G.buffers()):
            b_ema.copy_(b)
    G_ema.neural_rendering_resolution = G.neural_rendering_resolution
    G_ema.rendering_kwargs = copy.deepcopy(G.rendering_kwargs)


def ema_beta(opts: TrainOptions, cur_nimg: int, rampup: bool = True) -> float:
    ema_nimg = opts.ema_kimg * 1000
    if rampup and opts.ema_rampup is not None:
        ema_nimg = min(ema_nimg, cur_nimg * opts.ema_rampup)
    return 0.5 ** (opts.batch / max(ema_nimg, 1e-8))


# --------------------------------------------------------------------------------------------
# Sample grids

GRID_YAWS_DEG = (0, 90, 180, 270)


@torch.no_grad()
def render_grid(G, z: torch.Tensor, yaws_deg=GRID_YAWS_DEG, psi: float = 0.7) -> np.ndarray:
    """uint8 [H, W, 3]: per identity a row of RGB views and a row of depth maps at the given yaws."""
    device = z.device
    front = camera.label_from_yaw_pitch(0.0).to(device).expand(len(z), -1)
    ws = G.mapping(z, front, truncation_psi=psi)
    res = G.img_resolution
    rows = []
    for i in range(len(z)):
        rgb_row, depth_row = [], []
        for yaw in yaws_deg:
            c = camera.label_from_yaw_pitch(math.radians(yaw), 0.0, lookat=camera.HEAD_LOOKAT).to(device)
            c_render, _ = G.apply_delta_c(z[i:i + 1], c)
            out = G.synthesis(ws[i:i + 1], c_render, noise_mode="const")
            rgb_row.append(out["image"][0].float().clamp(-1, 1).add(1).mul(127.5))
            d = out["image_depth"][0].float()
            d = (d.max() - d) / (d.max() - d.min()).clamp_min(1e-8)  # near = bright
            mask = out["image_mask"][0].float().clamp(0, 1)
            depth_row.append(filtered_resize((d * mask * 255).expand(3, -1, -1)[None], res)[0])
        rows += [torch.cat(rgb_row, 2), torch.cat(depth_row, 2)]
    grid = torch.cat(rows, 1).clamp(0, 255).round().to(torch.uint8)
    return grid.permute(1, 2, 0).cpu().numpy()


# --------------------------------------------------------------------------------------------
# Loop

@dataclass
class Progress:
    cur_nimg: int = 0
    cur_tick: int = 0
    batch_idx: int = 0
    elapsed_s: float = 0.0      # training seconds summed over all invocations

    def to_dict(self) -> dict:
        return dict(self.__dict__)


class StopFlag:
    """Turns SIGINT/SIGTERM into a flag the loop polls between minibatches."""

    def __init__(self):
        self.raised = False
        self._old = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum, frame):
        self.raised = True

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


def set_speed_flags(device: torch.device, tf32: bool) -> None:
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32


def to_training_batch(batch, device: torch.device, resolution: int) -> tuple:
    """Loader batch (uint8 image, uint8 mask, label) -> image [-1,1], mask [0,1] at ``resolution``, label."""
    img, mask, c = batch
    img = img.to(device, non_blocking=True).float().div_(127.5).sub_(1)
    mask = mask.to(device, non_blocking=True).float().div_(255)
    if img.shape[-1] != resolution:
        img, mask = filtered_resize(img, resolution), filtered_resize(mask, resolution)
    return img, mask, c.to(device, non_blocking=True)


def mix_batches(real: tuple, extra: tuple, ratio: float) -> tuple[tuple, torch.Tensor]:
    """(image, mask, label) batches: each real entry is replaced by the extra batch's entry with
    probability ``ratio`` (CPU global torch RNG, so resumed runs draw the same); returns (batch, pick)."""
    pick = torch.rand(len(real[0])) < ratio
    mixed = tuple(torch.where(pick.to(r.device).view(-1, *[1] * (r.ndim - 1)), e, r) for r, e in zip(real, extra))
    return mixed, pick


def _lazy_adam(params, lr: float, betas, eps: float, interval: int) -> torch.optim.Adam:
    ratio = interval / (interval + 1) if interval > 0 else 1.0
    return torch.optim.Adam(params, lr=lr * ratio, betas=(betas[0] ** ratio, betas[1] ** ratio), eps=eps)


def train(opts: TrainOptions, G_cfg: GeneratorConfig | None = None, D_cfg: DiscriminatorConfig | None = None,
          resume: str | None = None, init: dict | None = None,
          extra_data: HeadDataset | None = None, extra_ratio: float = 0.0,
          resume_overrides: dict | None = None, verb: str = "train", run_files: dict | None = None) -> dict:
    """Train (or continue) a run; returns a summary dict. See the module docstring.

    ``resume`` continues a snapshot (configs and options come from it, run-control options from
    ``opts``); ``resume_overrides`` changes saved options on purpose (e.g. a larger batch on a
    bigger machine), which gives up the exact replay of an uninterrupted run. ``init`` = {"G": state dict, "D": state dict or None, "G_ema": ...} starts from
    given weights (fine-tuning). ``extra_data`` is mixed into the real batches with probability ``extra_ratio``.
    ``verb`` names the command whose run folder ``opts.out`` is (its marker); ``run_files``
    ({name: JSON value}) are written into it with config.json, once the data and networks are ready.
    """
    info = ddp.init_distributed(opts.device)
    try:
        return _train(opts, G_cfg, D_cfg, resume, init, extra_data, extra_ratio, info, resume_overrides or {},
                      verb, run_files or {})
    finally:
        ddp.shutdown(info)


def check_run_folder(out: Path, verb: str, resume) -> None:
    """Before any work: a new run needs a new, empty or own folder that holds no run yet; a resumed
    one writes into a folder with its snapshots (or a new one)."""
    if find_latest(out) is None:
        check_output_dir(out, verb, what="run folder", offer_overwrite=False)
    elif resume is None:
        raise InputError(f"{out} already holds a run; continue it with --resume {out} or choose another --out")
    else:
        check_writable(out, "run folder")


def _train(opts, G_cfg, D_cfg, resume, init, extra_data, extra_ratio, info: ddp.DistInfo,
           resume_overrides: dict, verb: str, run_files: dict) -> dict:
    device = info.device
    snap = None
    if resume:
        snap = load_snapshot(resume)
        saved = TrainOptions.from_dict(snap["options"])
        opts = saved.replace(**{k: getattr(opts, k) for k in RUN_CONTROL}, **resume_overrides)
        G_cfg = GeneratorConfig.from_dict(snap["G_config"])
        D_cfg = DiscriminatorConfig.from_dict(snap["D_config"])
    if G_cfg is None or D_cfg is None:
        raise InputError("train: network configs are required (use a preset)")
    opts.validate(info.world)
    if not opts.out:
        raise InputError("train: --out is required")
    out = Path(opts.out)
    check_run_folder(out, verb, resume)  # every rank: an error on rank 0 alone would leave the others waiting
    set_speed_flags(device, opts.tf32)

    # Data
    dataset = HeadDataset(opts.data, opts.seg_data, xflip=opts.xflip, min_yaw=opts.min_yaw,
                          max_yaw=opts.max_yaw, back_repeat=opts.back_repeat)
    labels = dataset.all_labels()
    progress = Progress(**snap["progress"]) if snap else Progress()
    per_rank = opts.batch // info.world

    def loader_for(ds, seed_offset):
        sampler = InfiniteSampler(len(ds), info.rank, info.world, seed=opts.seed + seed_offset,
                                  start=progress.batch_idx * per_rank)
        # iter() now: creating a loader iterator draws from the global RNG, which must happen
        # before the RNG is seeded or restored so that a resumed run replays the same stream.
        return iter(torch.utils.data.DataLoader(
            ds, sampler=sampler, batch_size=per_rank, num_workers=opts.workers,
            pin_memory=device.type == "cuda", persistent_workers=opts.workers > 0,
            prefetch_factor=4 if opts.workers > 0 else None))

    real_iter = loader_for(dataset, 0)
    extra_iter = loader_for(extra_data, 7) if extra_data is not None and extra_ratio > 0 else None

    # Networks (every rank builds the same ones, then takes rank 0's weights)
    torch.manual_seed(opts.seed)
    G = build_generator(G_cfg).to(device).train()
    D = build_discriminator(D_cfg).to(device).train()
    if init is not None:
        G.load_state_dict(init["G"], strict=False)
        if init.get("D") is not None:
            D.load_state_dict(init["D"], strict=False)
    if hasattr(G, "dataset_label_std"):
        G.dataset_label_std.copy_(labels.std(0).to(device))
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    if init is not None and init.get("G_ema") is not None:
        G_ema.load_state_dict(init["G_ema"], strict=False)
    opt_G = _lazy_adam(G.parameters(), opts.glr, opts.betas, opts.eps, 0)
    opt_D = _lazy_adam(D.parameters(), opts.dlr, opts.betas, opts.eps, opts.r1_interval)
    if snap:
        G.load_state_dict(snap["G"])
        G_ema.load_state_dict(snap["G_ema"])
        D.load_state_dict(snap["D"])
        opt_G.load_state_dict(_restore(snap["opt_G"]))
        opt_D.load_state_dict(_restore(snap["opt_D"]))
        G.neural_rendering_resolution = G_ema.neural_rendering_resolution = snap["neural_rendering_resolution"]
    for module in (G, G_ema, D):
        ddp.broadcast_module(module, info)

    # RNG: fresh per-rank seeds, or the states saved with the snapshot
    seed = opts.seed * info.world + info.rank
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    if device.type == "cuda":
        torch.cuda.manual_seed(seed)
    if snap and len(snap.get("rng", [])) == info.world:
        restore_rng(snap["rng"][info.rank])

    dtype = torch.bfloat16 if opts.precision == "bf16" else None
    loss = PanoHeadLoss(G, D, opts.loss, autocast_dtype=dtype)
    fixed_z = torch.from_numpy(np.random.RandomState(opts.seed + 123).randn(4, G.z_dim)).float().to(device)

    log_path = out / "log.jsonl"
    if info.is_main:
        claim_dir(out, verb)
        remove_stale_temps(out)  # left by a run killed while writing a snapshot or grid
        write_json(out / "config.json", {"G_config": G_cfg.to_dict(), "D_config": D_cfg.to_dict(),
                                         "options": opts.to_dict()})
        for name, value in run_files.items():
            write_json(out / name, value)
    target_nimg = int(opts.kimg * 1000)
    start_nimg = progress.cur_nimg
    run_limit = target_nimg if opts.kimg_per_run is None else min(target_nimg, start_nimg + int(opts.kimg_per_run * 1000))
    t_start = time.time()
    tick_start_nimg, tick_start_time = progress.cur_nimg, t_start
    stats_acc: dict[str, list] = {}
    bar = None
    if info.is_main and opts.progress:
        from tqdm import tqdm
        bar = tqdm(total=target_nimg / 1000, initial=progress.cur_nimg / 1000, unit="kimg",
                   bar_format="{l_bar}{bar}| {n:.3f}/{total:.3f} kimg [{elapsed}<{remaining}{postfix}]")

    def snapshot(tag: str | None = None) -> Path | None:
        rngs = ddp.gather_objects(capture_rng(), info)
        if not info.is_main:
            return None
        state = {
            "G_config": G_cfg.to_dict(), "D_config": D_cfg.to_dict(), "options": opts.to_dict(),
            "G": G.state_dict(), "G_ema": G_ema.state_dict(), "D": D.state_dict(),
            "opt_G": _compact(opt_G.state_dict(), opts.compact_snapshot),
            "opt_D": _compact(opt_D.state_dict(), opts.compact_snapshot),
            "rng": rngs, "progress": progress.to_dict(),
            "neural_rendering_resolution": int(G.neural_rendering_resolution),
        }
        path = save_snapshot(out / LATEST, state, part_mb=opts.snapshot_part_mb)
        if tag is not None and opts.keep_network_snapshots:
            save_snapshot(out / f"snapshot-{tag}.pt", state, part_mb=opts.snapshot_part_mb)
        return path

    reason = "done"
    with StopFlag() as stop:
        while progress.cur_nimg < run_limit:
            # Fetch a minibatch (images resized to G's output where a dataset differs).
            img, mask, real_c = to_training_batch(next(real_iter), device, G.img_resolution)
            if extra_iter is not None:
                extra = to_training_batch(next(extra_iter), device, G.img_resolution)
                (img, mask, real_c), pick = mix_batches((img, mask, real_c), extra, extra_ratio)
                stats_acc.setdefault("data/extra_fraction", []).append(float(pick.float().mean()))
            gen_z = torch.randn([per_rank, G.z_dim], device=device)
            gen_c = labels[torch.randint(len(labels), (per_rank,))].to(device)

            phases = [("Gmain", G, opt_G, 1)]
            if opts.r1_interval > 0:
                phases.append(("Dmain", D, opt_D, 1))
                if progress.batch_idx % opts.r1_interval == 0:
                    phases.append(("Dreg", D, opt_D, opts.r1_interval))
            else:
                phases.append(("Dboth", D, opt_D, 1))
            n_chunks = per_rank // opts.batch_gpu
            for name, module, opt, gain in phases:
                module.requires_grad_(True)
                opt.zero_grad(set_to_none=True)
                for k in range(n_chunks):
                    sl = slice(k * opts.batch_gpu, (k + 1) * opts.batch_gpu)
                    terms = loss.accumulate_gradients(name, img[sl], mask[sl], real_c[sl], gen_z[sl], gen_c[sl],
                                                      gain=gain / n_chunks, cur_nimg=progress.cur_nimg)
                    for key, v in terms.items():
                        stats_acc.setdefault(key, []).append(float(v))
                module.requires_grad_(False)
                ddp.reduce_gradients(module.parameters(), info)
                opt.step()

            ddp.average_running_means(G, info)
            update_ema(G_ema, G, ema_beta(opts, progress.cur_nimg, rampup=True))
            G.neural_rendering_resolution = loss.rendering_resolution(progress.cur_nimg)
            progress.cur_nimg += opts.batch
            progress.batch_idx += 1
            if bar is not None:
                bar.update(opts.batch / 1000)

            stop_now = stop.raised
            if opts.max_minutes is not None and time.time() - t_start > opts.max_minutes * 60:
                stop_now = True
            if info.active:  # every rank must leave the loop at the same minibatch
                flag = torch.tensor([float(stop_now)], device=device)
                dist.all_reduce(flag)
                stop_now = bool(flag.item())

            tick_done = progress.cur_nimg >= tick_start_nimg + opts.tick_kimg * 1000
            finished = progress.cur_nimg >= run_limit or stop_now
            if not (tick_done or finished):
                continue
            # End of tick: log, grid, snapshot.
            now = time.time()
            progress.elapsed_s += now - tick_start_time
            record = {"tick": progress.cur_tick, "kimg": progress.cur_nimg / 1000,
                      "sec_per_kimg": (now - tick_start_time) / max((progress.cur_nimg - tick_start_nimg) / 1000, 1e-9),
                      "elapsed_s": round(progress.elapsed_s, 2), "blur_sigma": loss.blur_sigma(progress.cur_nimg),
                      "gpc_prob": loss.swapping_prob(progress.cur_nimg),
                      "density_noise": loss.density_noise(progress.cur_nimg),
                      "rendering_resolution": int(G.neural_rendering_resolution)}
            for key, vals in stats_acc.items():
                mean = ddp.mean_over_ranks(torch.tensor(sum(vals) / len(vals), device=device), info)
                record[key] = round(float(mean), 5)
            if device.type == "cuda":
                record["gpu_mem_gb"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
            stats_acc.clear()
            progress.cur_tick += 1
            tick_start_nimg, tick_start_time = progress.cur_nimg, now
            if info.is_main:
                with open(log_path, "a") as f:
                    f.write(json.dumps(record) + "\n")
                if bar is not None:
                    bar.set_postfix({k.split("/")[-1]: record[k] for k in ("loss/G", "loss/D_real", "loss/D_fake")
                                     if k in record} | {"s/kimg": round(record["sec_per_kimg"], 1)})
                if finished or progress.cur_tick % opts.image_ticks == 0:
                    write_image(out / f"fakes{progress.cur_nimg // 1000:06d}.png", render_grid(G_ema, fixed_z))
            if finished or progress.cur_tick % opts.snap_ticks == 0:
                snapshot(tag=f"{progress.cur_nimg // 1000:06d}" if not finished else None)
            if stop_now:
                reason = "signal" if stop.raised else "time limit"
                break
    if bar is not None:
        bar.close()
    if reason == "done" and progress.cur_nimg < target_nimg:
        reason = "kimg per run"
    return {"kimg": progress.cur_nimg / 1000, "target_kimg": opts.kimg, "stopped": reason,
            "snapshot": str(out / LATEST), "complete": progress.cur_nimg >= target_nimg}


def _compact(opt_state: dict, compact: bool) -> dict:
    """The optimiser state as a snapshot stores it.

    With beta1 = 0 (the official setting) Adam overwrites its first moment with the gradient at
    every step, so it is dead state and is left out (exactly; a quarter of a snapshot).
    ``compact`` also stores the second moments in bfloat16 (fp32's exponent range, so nothing
    underflows), which gives up an exact replay; the optimiser casts them back on load.
    """
    dead_first = all(group["betas"][0] == 0 for group in opt_state["param_groups"])

    def keep(name, value):
        if compact and torch.is_tensor(value) and value.is_floating_point() and value.ndim > 0:
            return value.to(torch.bfloat16)
        return value
    state = {k: {n: keep(n, v) for n, v in s.items() if not (dead_first and n == "exp_avg")}
             for k, s in opt_state["state"].items()}
    return {"state": state, "param_groups": opt_state["param_groups"]}


def _restore(opt_state: dict) -> dict:
    """Undo :func:`_compact`: a first moment left out comes back as zeros (overwritten before use)."""
    state = {k: ({**s, "exp_avg": torch.zeros_like(s["exp_avg_sq"])} if "exp_avg" not in s and "exp_avg_sq" in s else s)
             for k, s in opt_state["state"].items()}
    return {**opt_state, "state": state}


def export_network(snapshot_path, out_path, which: str = "G_ema", half: bool = True) -> Path:
    """Write one network of a snapshot (G_ema, G or D) as a psohead ``.safetensors`` file (fp16
    storage by default): the generator for inference, D to continue training or score renders."""
    from ..checkpoint.safetensors_io import save_network
    if which not in ("G_ema", "G", "D"):
        raise InputError(f"unknown network {which!r} in a snapshot (choose G_ema, G or D)")
    snap = load_snapshot(snapshot_path)
    meta = {}
    if which == "D":
        cfg = DiscriminatorConfig.from_dict(snap["D_config"])
        net = build_discriminator(cfg)
        meta = {"kind": "discriminator", "config": cfg.to_dict()}  # D keeps no .config to read them from
    else:
        net = build_generator(GeneratorConfig.from_dict(snap["G_config"]))
        net.neural_rendering_resolution = int(snap["neural_rendering_resolution"])
    net.load_state_dict(snap[which])
    kimg = snap["progress"]["cur_nimg"] / 1000
    return save_network(net, out_path, dtype=torch.float16 if half else torch.float32,
                        source=f"psohead train snapshot at {kimg:g} kimg", **meta)
