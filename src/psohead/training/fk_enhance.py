"""FK-Enhance: back-of-head views rendered from random latents of a generator, filtered for
quality, plus optional real back photos, written as a standard psohead dataset.

Output ``OUT/`` (or ``OUT.zip``): ``images/render/<index>.png``, ``images/real/<stem>.png``,
``images/dataset.json`` (official label format), ``masks/...`` and ``fk_report.json`` (settings,
counts, per-item scores and decisions). It is what ``psohead reconstruct --back fk --fk-bank OUT``
and ``psohead finetune --fk OUT`` read.

Candidate ``i`` is a pure function of (seed, i): its latent, its camera (yaw pi + U(-j, j),
pitch U(-p, p)) and, with deterministic ray samples and constant noise, its render. Renders and
their measurements are cached in ``.OUT.fk-work/`` one chunk at a time (PNGs first, the chunk's
JSON last, each written to a temporary name and renamed), so a killed run resumes where it
stopped, and a rerun with other filter thresholds reuses every render. The dataset itself is
written under a temporary name and renamed when complete; the cache is then removed.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..atomic import write_image, write_json
from ..camera import HEAD_LOOKAT, apply_offset, label_from_yaw_pitch
from ..errors import InputError
from ..io.dataset import resize_square
from ..networks.sampling import map_latents
from ..io.images import list_images, read_image
from ..io.masks import border_matte, mask_beside
from ..io.dataset_writer import DatasetWriter
from .fk_filters import FACE_CHECKS, FACE_REASONS, MASK_REASONS, FaceDetector, FKFilters, available_detector, \
    mask_reasons, mask_stats, mirror_similarity

FORMAT = "psohead-fk-enhance/1"
REPORT = "fk_report.json"
D_GROUP = 4  # candidates scored together by D (its minibatch-std group in training)
REASONS = MASK_REASONS + FACE_REASONS + ("d_score",)


@dataclass
class FKEnhanceConfig:
    n: int = 1000                  # latents rendered (candidates); the dataset keeps those that pass
    seed: int = 0
    truncation: float = 0.7
    yaw_jitter_deg: float = 20.0   # yaw = 180 deg + U(-j, j)
    pitch_jitter_deg: float = 10.0  # pitch = U(-p, p)
    batch: int = 4                 # candidates rendered per forward pass
    face_check: str = "both"       # both | detector | mirror | none
    real_backs: str | None = None  # folder of real back-of-head photos
    real_yaw_deg: float = 180.0
    real_pitch_deg: float = 0.0
    filters: FKFilters = field(default_factory=FKFilters)

    def validate(self) -> None:
        if self.n < 1:
            raise InputError(f"--n {self.n}: must be at least 1")
        if self.batch < 1:
            raise InputError(f"--batch {self.batch}: must be at least 1")
        if not math.isfinite(self.truncation) or self.truncation < 0:
            raise InputError(f"--truncation {self.truncation}: must be a non-negative number")
        for name in ("yaw_jitter_deg", "pitch_jitter_deg"):
            v = getattr(self, name)
            if not (math.isfinite(v) and 0 <= v < 90):
                raise InputError(f"--{name[:-4].replace('_', '-')} {v}: must lie in [0, 90) degrees")
        if self.face_check not in FACE_CHECKS:
            raise InputError(f"--face-check {self.face_check!r}: choose one of {', '.join(FACE_CHECKS)}")
        if not (math.isfinite(self.real_yaw_deg) and math.isfinite(self.real_pitch_deg)
                and abs(self.real_pitch_deg) < 90):
            raise InputError("--real-yaw/--real-pitch: finite degrees, pitch strictly within (-90, 90)")
        self.filters.validate()


def candidate(seed: int, index: int, z_dim: int, cfg: FKEnhanceConfig) -> tuple[np.ndarray, float, float]:
    """(z [z_dim], yaw, pitch in radians) of candidate ``index``."""
    rng = np.random.default_rng([int(seed), int(index), 0xFC])
    z = rng.standard_normal(z_dim)
    yaw = math.pi + math.radians(rng.uniform(-cfg.yaw_jitter_deg, cfg.yaw_jitter_deg))
    pitch = math.radians(rng.uniform(-cfg.pitch_jitter_deg, cfg.pitch_jitter_deg))
    return z, yaw, pitch


# ---------------------------------------------------------------------------------------------
# Rendering and scoring

def _to_uint8(image: torch.Tensor, mask: torch.Tensor, res: int) -> tuple[np.ndarray, np.ndarray]:
    rgb = (image.float().permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8).cpu().numpy()
    m = F.interpolate(mask.float(), size=(res, res), mode="bilinear", align_corners=False).clamp(0, 1)
    return rgb, (m[:, 0] * 255).round().to(torch.uint8).cpu().numpy()


@torch.no_grad()
def render_candidates(G, D, z: torch.Tensor, yaw: torch.Tensor, pitch: torch.Tensor, truncation: float,
                      with_front: bool) -> dict:
    """Back views (and the front views at yaw -d for the mirror test) of latents z [B, z_dim].

    Latents are mapped with the frontal conditioning label and rendered with the generator's own
    camera offset, as ``psohead generate`` does; the stored label is the camera without offset,
    the one D is shown with generated images in training.
    """
    n, device = len(z), z.device
    ws, delta = map_latents(G, z, truncation_psi=truncation)
    back_c = label_from_yaw_pitch(yaw, pitch, lookat=HEAD_LOOKAT).to(device)
    cams = torch.cat([back_c, label_from_yaw_pitch(math.pi - yaw, pitch, lookat=HEAD_LOOKAT).to(device)]) if with_front else back_c
    k = len(cams) // n
    out = G.synthesis(ws.repeat(k, 1, 1), apply_offset(cams, delta.repeat(k, 1)), noise_mode="const",
                      deterministic=True)
    res = int(G.img_resolution)
    rgb, mask = _to_uint8(out["image"], out["image_mask"], res)
    result = {"rgb": rgb[:n], "mask": mask[:n], "label": back_c.cpu()}
    if with_front:
        result["front_rgb"], result["front_mask"] = rgb[n:], mask[n:]
    if D is not None:
        views = {key: out[key][:n].float() for key in ("image", "image_raw", "image_mask")}
        scores = [D({key: v[s:s + D_GROUP] for key, v in views.items()}, back_c[s:s + D_GROUP]).float().flatten()
                  for s in range(0, n, D_GROUP)]
        result["d_score"] = torch.cat(scores).cpu().tolist()
    return result


# ---------------------------------------------------------------------------------------------
# Cache of rendered candidates

def _open_cache(work: Path, settings: dict) -> None:
    meta = work / "settings.json"
    if meta.is_file():
        old = json.loads(meta.read_text())
        if old != settings:
            diff = ", ".join(f"{k}: {old.get(k)!r} -> {v!r}" for k, v in settings.items() if old.get(k) != v)
            raise InputError(f"{work} holds renders made with other settings ({diff}); delete it or choose another --out")
        return
    work.mkdir(parents=True, exist_ok=True)
    write_json(meta, settings)


def _chunk_path(work: Path, k: int) -> Path:
    return work / f"chunk{k:06d}.json"


def _cached_chunk(work: Path, k: int, indices: list[int]) -> list[dict] | None:
    path = _chunk_path(work, k)
    if not path.is_file():
        return None
    records = json.loads(path.read_text())
    return records if [r["index"] for r in records] == indices else None  # n changed: chunk differs


def _measure(i: int, yaw: float, pitch: float, label, rgb, mask, d_score, detector, front) -> dict:
    record = {"name": f"render/{i:06d}", "source": "render", "index": i,
              "yaw_deg": round(math.degrees(yaw), 4), "pitch_deg": round(math.degrees(pitch), 4),
              "label": [float(v) for v in label], "d_score": None if d_score is None else round(d_score, 5),
              **mask_stats(mask), "face_score": None, "mirror_similarity": None}
    if detector is not None:
        record["face_score"] = detector.score(rgb)
    if front is not None:
        record["mirror_similarity"] = mirror_similarity(rgb, mask, *front)
    return record


def _render_all(G, D, cfg: FKEnhanceConfig, work: Path, device, detector, with_mirror: bool, progress: bool):
    records = []
    chunks = [list(range(s, min(cfg.n, s + cfg.batch))) for s in range(0, cfg.n, cfg.batch)]
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=cfg.n, desc="fk-enhance", unit="img")
    for k, indices in enumerate(chunks):
        cached = _cached_chunk(work, k, indices)
        if cached is None:
            cams = [candidate(cfg.seed, i, G.z_dim, cfg) for i in indices]
            z = torch.from_numpy(np.stack([c[0] for c in cams])).float().to(device)
            yaw = torch.tensor([c[1] for c in cams])
            pitch = torch.tensor([c[2] for c in cams])
            out = render_candidates(G, D, z, yaw, pitch, cfg.truncation, with_mirror)
            cached = []
            for j, i in enumerate(indices):
                write_image(work / f"{i:06d}.png", out["rgb"][j], compress_level=1)
                write_image(work / f"{i:06d}_mask.png", out["mask"][j], compress_level=1)
                front = (out["front_rgb"][j], out["front_mask"][j]) if with_mirror else None
                d_score = out["d_score"][j] if "d_score" in out else None
                cached.append(_measure(i, cams[j][1], cams[j][2], out["label"][j], out["rgb"][j], out["mask"][j],
                                       d_score, detector, front))
            write_json(_chunk_path(work, k), cached)
        records += cached
        if bar is not None:
            bar.update(len(indices))
    if bar is not None:
        bar.close()
    return records


# ---------------------------------------------------------------------------------------------
# Real back photos

def _square(arr: np.ndarray) -> np.ndarray:
    h, w = arr.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return arr[top:top + s, left:left + s]


def real_back_files(folder) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"--real-backs {folder}: not a folder")
    files = list_images(folder, skip_masks=True)
    if not files:
        raise InputError(f"--real-backs {folder}: no images found (masks may lie beside them as <stem>_mask.png "
                         "or in mask/ or masks/)")
    return files


def import_real_backs(files: list[Path], res: int, cfg: FKEnhanceConfig, detector, progress: bool):
    """(records, {name: (rgb, mask)}): centre square crop, resized to ``res``; mask from a file
    beside the photo, else the border-colour matte."""
    label = label_from_yaw_pitch(math.radians(cfg.real_yaw_deg), math.radians(cfg.real_pitch_deg),
                                 lookat=HEAD_LOOKAT)[0]
    records, pixels = [], {}
    if progress:
        from tqdm import tqdm
        files = tqdm(files, desc="real backs", unit="img")
    for path in files:
        pil = read_image(path, "real back photo")
        beside = mask_beside(path)
        if beside is not None:
            mask = np.asarray(beside.resize(pil.size, Image.BILINEAR))
        else:
            mask = (border_matte(pil)[0, 0].numpy() * 255).astype(np.uint8)
        rgb = resize_square(np.ascontiguousarray(_square(np.asarray(pil))), res)
        mask = resize_square(np.ascontiguousarray(_square(mask)), res, mask=True)
        name = f"real/{path.stem}"
        records.append({"name": name, "source": "real", "file": str(path), "mask_source": "file" if beside else "border",
                        "yaw_deg": cfg.real_yaw_deg, "pitch_deg": cfg.real_pitch_deg, "label": [float(v) for v in label],
                        "d_score": None, **mask_stats(mask), "mirror_similarity": None,
                        "face_score": None if detector is None else detector.score(rgb)})
        pixels[name] = (rgb, mask)
    return records, pixels


# ---------------------------------------------------------------------------------------------
# Decisions and report

def decide(records: list[dict], filters: FKFilters, detector: FaceDetector | None, d_available: bool) -> dict:
    """Set ``failed`` (every failed check), ``reason`` (the first) and ``kept`` on every record;
    return the D-score summary."""
    for r in records:
        failed = mask_reasons(r, filters)
        if detector is not None and detector.is_face(r["face_score"], filters):
            failed.append("face_detected")
        if r["mirror_similarity"] is not None and r["mirror_similarity"] > filters.mirror_max:
            failed.append("front_copy")
        r["failed"] = failed
    summary = {"available": d_available}
    renders = [r for r in records if r["source"] == "render"]
    survivors = [r for r in renders if not r["failed"]]
    if d_available and renders:
        summary.update(keep_top=filters.keep_top, all=_spread([r["d_score"] for r in renders]), threshold=None)
        if survivors:
            keep = max(1, math.ceil(filters.keep_top * len(survivors)))
            ranked = sorted(survivors, key=lambda r: (-r["d_score"], r["index"]))
            for r in ranked[keep:]:
                r["failed"].append("d_score")
            summary["threshold"] = ranked[keep - 1]["d_score"]
            summary["kept"] = _spread([r["d_score"] for r in ranked[:keep]])
    for r in records:
        r["reason"] = r["failed"][0] if r["failed"] else None
        r["kept"] = not r["failed"]
    return summary


def _spread(values: list[float]) -> dict:
    v = np.asarray(values, dtype=np.float64)
    return {"min": round(float(v.min()), 5), "median": round(float(np.median(v)), 5), "max": round(float(v.max()), 5)}


def _counts(records: list[dict]) -> tuple[dict, dict, dict]:
    renders = [r for r in records if r["source"] == "render"]
    reals = [r for r in records if r["source"] == "real"]
    counts = {"rendered": len(renders), "rendered_kept": sum(r["kept"] for r in renders),
              "real": len(reals), "real_kept": sum(r["kept"] for r in reals),
              "kept": sum(r["kept"] for r in records)}
    rejected = {k: sum(r["reason"] == k for r in records) for k in REASONS}
    failed = {k: sum(k in r["failed"] for r in records) for k in REASONS}
    return counts, rejected, failed


# ---------------------------------------------------------------------------------------------
# Entry point

def _networks(network, discriminator, device):
    """(G, D or None, description) from paths or ready modules."""
    if isinstance(network, torch.nn.Module):
        if discriminator is not None and not isinstance(discriminator, torch.nn.Module):
            raise InputError("with a generator module, give the discriminator as a module too")
        return network.eval(), None if discriminator is None else discriminator.eval(), \
            {"network": f"<{type(network).__name__}>", "discriminator": None if discriminator is None
             else f"<{type(discriminator).__name__}>"}
    from .network_source import read_network_set
    nets = read_network_set(network, discriminator)
    size = os.path.getsize(nets.source) if os.path.isfile(nets.source) else None
    return nets.generator(device), nets.discriminator(device), \
        {"network": str(Path(nets.source).resolve()), "network_bytes": size,
         "discriminator": None if nets.D_source is None else str(Path(nets.D_source).resolve())}


def _detector(face_check: str) -> FaceDetector | None:
    if face_check in ("mirror", "none"):
        return None
    if face_check == "both" and available_detector() is None:
        warnings.warn("no face detector (dlib / mediapipe) importable: the face-leak check uses the mirror test "
                      "only (pip install psohead[preprocess] for both)", stacklevel=3)
        return None
    return FaceDetector()


def build_fk_enhance(network, out, cfg: FKEnhanceConfig | None = None, discriminator=None, device="auto",
                     progress: bool = True, keep_work: bool = False) -> dict:
    """Render, filter and write an FK-Enhance dataset to ``out`` (folder or .zip); return the report.

    ``network``: psohead .safetensors, official .pkl, training snapshot / run folder, or a
    generator module. ``discriminator``: a file (or module) holding D, else the network's own D
    if it has one; without a D the D-score filter is skipped.
    """
    from ..devices import resolve_device

    cfg = cfg or FKEnhanceConfig()
    cfg.validate()
    out = Path(out)
    real_files = real_back_files(cfg.real_backs) if cfg.real_backs is not None else []
    dev = resolve_device(device)
    G, D, source = _networks(network, discriminator, dev)
    detector = _detector(cfg.face_check)
    with_mirror = cfg.face_check in ("both", "mirror")
    res = int(G.img_resolution)
    settings = {**source, "resolution": res, "seed": cfg.seed, "truncation": cfg.truncation,
                "yaw_jitter_deg": cfg.yaw_jitter_deg, "pitch_jitter_deg": cfg.pitch_jitter_deg, "batch": cfg.batch,
                "face_detector": None if detector is None else detector.name, "mirror_test": with_mirror}
    work = out.with_name(f".{out.name}.fk-work")
    with DatasetWriter(out) as writer:  # refuses a non-empty out before any rendering
        _open_cache(work, {"format": FORMAT, **settings})
        records = _render_all(G, D, cfg, work, dev, detector, with_mirror, progress)
        real_records, real_pixels = import_real_backs(real_files, res, cfg, detector, progress) if real_files else ([], {})
        records += real_records
        d_summary = decide(records, cfg.filters, detector, D is not None)
        counts, rejected, failed = _counts(records)
        if counts["kept"] == 0:
            raise InputError(f"FK-Enhance: no image passed the filters (first failed check per image: "
                             + ", ".join(f"{k} {v}" for k, v in rejected.items() if v)
                             + f"); the renders stay cached in {work}: rerun with looser thresholds")
        for r in records:
            if not r["kept"]:
                continue
            if r["source"] == "render":
                rgb = np.asarray(Image.open(work / f"{r['index']:06d}.png").convert("RGB"))
                mask = np.asarray(Image.open(work / f"{r['index']:06d}_mask.png"))
            else:
                rgb, mask = real_pixels[r["name"]]
            writer.add(r["name"], rgb, mask, r["label"])
        report = {"format": FORMAT, "settings": {**settings, "n": cfg.n, "real_backs": cfg.real_backs,
                                                 "real_yaw_deg": cfg.real_yaw_deg, "real_pitch_deg": cfg.real_pitch_deg,
                                                 "face_check": cfg.face_check},
                  "filters": cfg.filters.to_dict(), "counts": counts, "rejected": rejected, "failed_checks": failed,
                  "d_score": d_summary, "items": [{k: v for k, v in r.items() if k != "label"} for r in records]}
        writer.add_file(REPORT, json.dumps(report, indent=1).encode())
    if not keep_work:
        shutil.rmtree(work, ignore_errors=True)
    return report


def config_from_dict(data: dict) -> FKEnhanceConfig:
    """FKEnhanceConfig from flat keyword values (CLI): filter fields go into ``filters``."""
    filter_names = {f.name for f in dataclasses.fields(FKFilters)}
    filters = FKFilters(**{k: v for k, v in data.items() if k in filter_names and v is not None})
    own = {f.name for f in dataclasses.fields(FKEnhanceConfig)} - {"filters"}
    return FKEnhanceConfig(**{k: v for k, v in data.items() if k in own and v is not None}, filters=filters)
