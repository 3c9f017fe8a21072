"""Write a synthetic training set in the psohead layout, resumably and atomically.

Layout (same as :class:`psohead.io.dataset_writer.DatasetWriter`)::

    DIR/images/00000/img00000000.png   DIR/masks/00000/img00000000.png
    DIR/images/dataset.json            DIR/heads.jsonl     DIR/synth.json

Image ``i`` is a pure function of (seed, i): its identity, camera and scene. Every PNG is written
to a temporary name and renamed; the mask goes first, so an existing image means a finished
entry. A rerun with the same settings skips finished entries; ``dataset.json`` and
``heads.jsonl`` are written (atomically) only once every image exists.
"""
from __future__ import annotations

import json
import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from ..atomic import write_image, write_text
from ..camera import HEAD_LOOKAT, format_label, label_from_yaw_pitch
from ..errors import InputError
from .params import SCENE_KEYS, sample_head, sample_scene, stack
from .render import RenderConfig, render

YAW_DISTS = ("panohead", "uniform", "front")
FORMAT_VERSION = 1


def head_seed(seed: int, index: int) -> int:
    return int(np.random.SeedSequence([int(seed), int(index), 0x1D]).generate_state(1)[0])


def sample_camera(seed: int, index: int, yaw_dist: str = "panohead") -> tuple[float, float]:
    """(yaw, pitch) in radians. ``panohead``: full circle with frontal and back views up-weighted."""
    rng = np.random.default_rng([int(seed), int(index), 0xCA3])
    pitch = float(np.clip(rng.normal(0.0, 0.15), -0.45, 0.45))
    if yaw_dist == "uniform":
        yaw = rng.uniform(-math.pi, math.pi)
    elif yaw_dist == "front":
        yaw, pitch = float(np.clip(rng.normal(0.0, 0.35), -1.2, 1.2)), float(np.clip(rng.normal(0.0, 0.12), -0.35, 0.35))
    elif yaw_dist == "panohead":
        k = rng.uniform()
        if k < 0.45:
            yaw = rng.normal(0.0, 0.45)
        elif k < 0.65:
            yaw = rng.choice((-1, 1)) * rng.uniform(math.pi / 4, 3 * math.pi / 4)
        else:
            yaw = math.pi + rng.normal(0.0, 0.55)
    else:
        raise InputError(f"--yaw-dist {yaw_dist!r}: choose one of {', '.join(YAW_DISTS)}")
    yaw = (yaw + math.pi) % (2 * math.pi) - math.pi
    return float(yaw), pitch


def entry_name(index: int) -> str:
    return f"{index // 1000:05d}/img{index:08d}.png"


def _check_args(n: int, res: int, yaw_dist: str, workers: int) -> None:
    if n < 1:
        raise InputError(f"--n {n}: must be at least 1")
    if res < 4 or res & (res - 1):
        raise InputError(f"--res {res}: must be a power of two >= 4")
    if yaw_dist not in YAW_DISTS:
        raise InputError(f"--yaw-dist {yaw_dist!r}: choose one of {', '.join(YAW_DISTS)}")
    if workers < 1:
        raise InputError(f"--workers {workers}: must be at least 1")


def _prepare(out: Path, config: dict) -> None:
    meta = out / "synth.json"
    if meta.is_file():
        old = json.loads(meta.read_text())
        if old.get("n", 0) <= config["n"]:  # growing a set keeps every existing entry valid
            old["n"] = config["n"]
        if old != config:
            diff = ", ".join(f"{k}: {old.get(k)!r} -> {v!r}" for k, v in config.items() if old.get(k) != v)
            raise InputError(f"{out} holds a synthetic dataset made with other settings ({diff}); use another --out")
    elif out.exists() and (out.is_file() or any(out.iterdir())):
        raise InputError(f"{out} exists and is not a synthetic dataset to resume (choose another --out)")
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    write_text(meta, json.dumps(config, indent=1))


def default_batch(res: int, device: str) -> int:
    base = 512 if device.startswith("cuda") else 8
    return max(1, int(base * (128 / res) ** 2))


def generate_dataset(out, n: int, res: int = 128, seed: int = 0, yaw_dist: str = "panohead", device: str = "cpu",
                     batch: int | None = None, workers: int = 4, progress: bool = True) -> dict:
    """Render ``n`` images (one random identity, camera and scene each) into ``out``; resumes."""
    _check_args(n, res, yaw_dist, workers)
    out = Path(out)
    config = {"format": FORMAT_VERSION, "n": n, "res": res, "seed": seed, "yaw_dist": yaw_dist}
    _prepare(out, config)
    todo = [i for i in range(n) if not (out / "images" / entry_name(i)).is_file()
            or not (out / "masks" / entry_name(i)).is_file()]
    batch = batch or default_batch(res, device)
    cfg = RenderConfig(resolution=res)
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=n, initial=n - len(todo), desc="synth", unit="img")
    with ThreadPoolExecutor(workers) as pool:
        pending = []
        for start in range(0, len(todo), batch):
            idx = todo[start:start + batch]
            heads, scenes, labels = _records(seed, idx, yaw_dist)
            r = render(labels.to(device), stack(heads, device=device), stack(scenes, SCENE_KEYS, device=device), cfg)
            rgb = (r.rgb.permute(0, 2, 3, 1) * 255 + 0.5).clamp(0, 255).to(torch.uint8).cpu().numpy()
            mask = (r.mask * 255 + 0.5).clamp(0, 255).to(torch.uint8).cpu().numpy()
            for pending_job in pending:
                pending_job.result()
            pending = [pool.submit(_write_entry, out, i, rgb[j], mask[j]) for j, i in enumerate(idx)]
            if bar is not None:
                bar.update(len(idx))
        for job in pending:
            job.result()
    if bar is not None:
        bar.close()
    _finish(out, n, seed, yaw_dist)
    return {"out": str(out), "n": n, "res": res, "rendered": len(todo)}


def _write_entry(out: Path, i: int, rgb: np.ndarray, mask: np.ndarray) -> None:
    write_image(out / "masks" / entry_name(i), mask, compress_level=1)
    write_image(out / "images" / entry_name(i), rgb, compress_level=1)


def _records(seed: int, idx: list[int], yaw_dist: str):
    heads = [sample_head(head_seed(seed, i)) for i in idx]
    scenes = [sample_scene(seed, i) for i in idx]
    cams = [sample_camera(seed, i, yaw_dist) for i in idx]
    labels = label_from_yaw_pitch(torch.tensor([c[0] for c in cams]), torch.tensor([c[1] for c in cams]),
                                 lookat=HEAD_LOOKAT)
    return heads, scenes, labels


def _finish(out: Path, n: int, seed: int, yaw_dist: str) -> None:
    labels, lines = [], []
    for start in range(0, n, 4096):
        idx = list(range(start, min(n, start + 4096)))
        heads, scenes, lab = _records(seed, idx, yaw_dist)
        for j, i in enumerate(idx):
            labels.append([entry_name(i), format_label(lab[j])])
            yaw, pitch = sample_camera(seed, i, yaw_dist)
            lines.append(json.dumps({"image": entry_name(i), "yaw": yaw, "pitch": pitch, "head": heads[j], "scene": scenes[j]}))
    write_text(out / "heads.jsonl", "\n".join(lines) + "\n")
    write_text(out / "images" / "dataset.json", json.dumps({"labels": labels}))
