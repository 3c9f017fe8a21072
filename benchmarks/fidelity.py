"""Reconstruction fidelity all round the head against ground-truth orbits (issue 5 item 7).

    python benchmarks/fidelity.py --network default --orbits DIR [--backs none prior fk]
        [--presets fast official] [--fk-bank DIR] [--heads 10] [--device cuda]

``DIR`` holds one dataset folder per held-out head, as ``psohead synth orbit --ids ... --out DIR``
writes them (``images/`` + ``masks/`` + ``images/dataset.json`` with every view's label, and
``depth/<view>.npy`` ground-truth camera-space depth); or DIR itself is one such folder. Each
head is reconstructed from its most frontal view only; every other view is rendered from the
result at its ground-truth camera (with the reconstruction's camera offset, as the video does)
and compared: PSNR, SSIM, mask IoU, depth error (mean |z| error in world units where both the
ground truth and the render see the head) and identity similarity (dlib face descriptor, cosine;
only where dlib finds a face in both). Rows are averaged per |yaw| bucket for every (back strategy, preset).
Writes benchmarks/results/NAME.{json,md} (``--name``, default fidelity) after every head, so a run
cut short keeps what it finished (the table says how many heads a row has). ``--stage1-steps/--stage2-steps`` override the presets'
step counts (``--stage2-steps 0`` scores the stage-1 latent alone) and ``--set section.field=value`` any preset field, as
on ``psohead reconstruct``. Goal: prior beats none by >= 1.5 dB PSNR on back buckets without losing > 0.3 dB on the front.
"""
from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from psohead.api import load_generator
from psohead.atomic import atomic_path
from psohead.camera import FOCAL, apply_offset, yaw_pitch_from_label
from psohead.inversion.pipeline import Reconstructor
from psohead.inversion.presets import parse_assignments, resolve_preset
from psohead.io.dataset import HeadDataset
from psohead.metrics.geometry import depth_error
from psohead.metrics.image import mask_iou, psnr, ssim

# SynthHeads-360 ids of the two fidelity sets: every preset sweep so far used the first; the second
# is for reporting only and must never be used to choose a setting.
SPLITS = {"tuning": (900001, 900048), "report": (950001, 950999)}
BUCKETS = ((0, 30), (30, 60), (60, 90), (90, 135), (135, 181))
RESULTS = Path(__file__).resolve().parent / "results"


def head_folders(root: Path) -> list[Path]:
    def is_head(p: Path) -> bool:
        return (p / "images" / "dataset.json").is_file()
    if is_head(root):
        return [root]
    return sorted(p for p in root.iterdir() if is_head(p))


def camera_z(ray_depth: torch.Tensor, res: int, focal: float = FOCAL) -> np.ndarray:
    """Distance along each pixel's ray [1,1,r,r] -> camera-space z at ``res``² (what the GT holds)."""
    d = F.interpolate(ray_depth.float().cpu(), size=(res, res), mode="nearest")[0, 0]
    u = (torch.arange(res) + 0.5) / res - 0.5
    x, y = torch.meshgrid(u / focal, u / focal, indexing="ij")
    return (d / torch.sqrt(1 + x ** 2 + y ** 2)).numpy()


_IDENTITY = None


def identity_similarity(a: np.ndarray, b: np.ndarray) -> float | None:
    """Cosine similarity of dlib face descriptors of two uint8 images, None if either has no face
    or dlib is not installed."""
    global _IDENTITY
    try:
        from psohead.metrics.identity import IdentityModel

        _IDENTITY = _IDENTITY or IdentityModel()
    except ImportError:
        return None
    return _IDENTITY.similarity(a, b)


def front_view(folder: Path):
    """(dataset, index of its most frontal view, that view as uint8 [H,W,3], its mask [1,H,W])."""
    ds = HeadDataset(folder)
    front_i = int(yaw_pitch_from_label(ds.raw_labels)[0].abs().argmin())
    img, mask, _ = ds[front_i]
    return ds, front_i, img.permute(1, 2, 0).numpy(), mask


def detect_landmarks(heads: list[Path], path: Path) -> None:
    """Write {head: 68 dlib landmarks of its front view} to ``path``, for machines without dlib."""
    from psohead.preprocess.landmarks import detect_faces

    found = {}
    for folder in heads:
        faces = detect_faces(np.ascontiguousarray(front_view(folder)[2]))
        found[folder.name] = faces[0].landmarks.tolist() if faces else None
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(found) + "\n")
    print(f"{path}: landmarks of {sum(v is not None for v in found.values())} of {len(found)} heads")


def evaluate_head(pipeline: Reconstructor, folder: Path, back: str, seed: int = 666,
                  landmarks=None) -> list[dict]:
    ds, front_i, front, mask = front_view(folder)
    labels = ds.raw_labels
    yaws = yaw_pitch_from_label(labels)[0].rad2deg()
    rec = pipeline(front, label=labels[front_i], mask=mask[0].numpy(), landmarks=landmarks, back=back, seed=seed,
                   progress=False)
    rows = []
    for i in range(len(ds)):
        if i == front_i:
            continue
        gt_img, gt_mask, _ = ds[i]
        lab = apply_offset(labels[i:i + 1], rec.delta)
        with torch.no_grad():
            out = rec.G.synthesis(rec.ws, lab.to(rec.ws.device), noise_mode="const", deterministic=True)
        res = gt_img.shape[-1]
        pred = F.interpolate(out["image"].float().cpu(), size=(res, res), mode="area")
        pred_u8 = ((pred[0].permute(1, 2, 0) * 127.5 + 128).clamp(0, 255)).byte().numpy()
        pred_mask = F.interpolate(out["image_mask"].float().cpu(), size=(res, res), mode="bilinear",
                                  align_corners=False)[0, 0].numpy()
        gt_u8 = gt_img.permute(1, 2, 0).numpy()
        depth_file = folder / "depth" / Path(ds.names[i]).with_suffix(".npy")
        depth_err = None
        if depth_file.is_file():
            gt_z = np.load(depth_file)
            both = (gt_z > 0) & (pred_mask > 0.5)
            if both.any():
                depth_err = float(depth_error(camera_z(out["image_depth"], res), gt_z, both))
        rows.append({"head": folder.name, "seed": seed, "yaw": float(yaws[i]), "psnr": float(psnr(pred_u8, gt_u8)),
                     "depth_err": depth_err,
                     "ssim": float(ssim(pred_u8, gt_u8)),
                     "mask_iou": float(mask_iou(pred_mask, gt_mask[0].numpy().astype(np.float32) / 255)),
                     "identity": identity_similarity(np.ascontiguousarray(pred_u8), np.ascontiguousarray(gt_u8))})
    return rows


def bucket_table(rows: list[dict]) -> dict:
    table = {}
    for lo, hi in BUCKETS:
        sel = [r for r in rows if lo <= abs(r["yaw"]) < hi]
        if not sel:
            continue
        ids = [r["identity"] for r in sel if r["identity"] is not None]
        depths = [r["depth_err"] for r in sel if r.get("depth_err") is not None]
        table[f"{lo}-{min(hi, 180)}"] = {"n": len(sel), "psnr": float(np.mean([r["psnr"] for r in sel])),
                                         "ssim": float(np.mean([r["ssim"] for r in sel])),
                                         "mask_iou": float(np.mean([r["mask_iou"] for r in sel])),
                                         "depth_err": float(np.mean(depths)) if depths else None,
                                         "identity": float(np.mean(ids)) if ids else None}
    return table


def head_means(rows: list[dict], bucket: tuple[int, int]) -> dict[str, float]:
    """Each head's PSNR in one |yaw| bucket, averaged over its views and runs."""
    lo, hi = bucket
    per: dict[str, list[float]] = {}
    for r in rows:
        if lo <= abs(r["yaw"]) < hi:
            per.setdefault(r["head"], []).append(r["psnr"])
    return {h: float(np.mean(v)) for h, v in per.items()}


def gains(results: dict) -> dict:
    """Every strategy against PTI (back ``none``) of the same preset: per-head PSNR differences in
    the front (0-30) and back (135-180) buckets, mean and standard error over the heads both have."""
    out = {}
    for key, res in results.items():
        back, tag = key.split("/", 1)
        base = results.get(f"none/{tag}")
        if back == "none" or base is None:
            continue
        row = {}
        for name, bucket in (("front", BUCKETS[0]), ("back", BUCKETS[-1])):
            a, b = head_means(res["rows"], bucket), head_means(base["rows"], bucket)
            d = np.array([a[h] - b[h] for h in a if h in b])
            if len(d):
                row[name] = {"mean": float(d.mean()), "se": float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1
                             else None, "heads": len(d), "better": int((d > 0).sum())}
        out[key] = row
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--network", default="default")
    ap.add_argument("--orbits", required=True, type=Path)
    ap.add_argument("--backs", nargs="+", default=["none", "prior"])
    ap.add_argument("--presets", nargs="+", default=["fast", "official"])
    ap.add_argument("--fk-bank", default=None)
    ap.add_argument("--encoder", default=None, help="latent encoder of the network (for stage1.init=encoder)")
    ap.add_argument("--heads", type=int, default=10)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--name", default="fidelity")
    ap.add_argument("--stage1-steps", type=int, default=None, help="override every preset's stage-1 steps")
    ap.add_argument("--stage2-steps", type=int, default=None, help="override every preset's stage-2 steps "
                                                                   "(0: score the stage-1 latent alone)")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                    help="override a preset field, e.g. --set back.colour_match=true (repeatable)")
    ap.add_argument("--runs", type=int, default=1,
                    help="reconstructions per head and strategy, seeds 666, 667, ... (averaged; "
                         "several PTI runs make a steadier baseline)")
    ap.add_argument("--split", choices=sorted(SPLITS), default=None,
                    help="refuse heads outside this set's ids: tune presets on 'tuning' only, "
                         "report on 'report'")
    ap.add_argument("--landmarks", type=Path, default=None,
                    help="JSON {head: 68 landmarks of its front view} (from --detect-landmarks) for the "
                         "geometric pseudo-label where dlib is not installed")
    ap.add_argument("--detect-landmarks", type=Path, default=None, metavar="JSON",
                    help="only write the front views' dlib landmarks to this file and stop")
    args = ap.parse_args(argv)
    if args.runs < 1:
        raise SystemExit("--runs must be at least 1")
    overrides = parse_assignments(args.set)

    G = load_generator(args.network, device="cpu")
    heads = head_folders(args.orbits)[:args.heads]
    if not heads:
        raise SystemExit(f"no dataset folders under {args.orbits}")
    if args.split:
        lo, hi = SPLITS[args.split]
        outside = [h.name for h in heads if not (h.name.isdigit() and lo <= int(h.name) <= hi)]
        if outside:
            raise SystemExit(f"heads {', '.join(outside)} are not in the {args.split} set (ids {lo}..{hi})")
    meta = {"date": datetime.date.today().isoformat(), "command": "python " + " ".join(sys.argv),
            "network": args.network, "heads": [h.name for h in heads], "runs": args.runs,
            "split": args.split, "device": args.device}
    if args.detect_landmarks:
        detect_landmarks(heads, args.detect_landmarks)
        return 0
    known = json.loads(args.landmarks.read_text()) if args.landmarks else {}
    results = {}
    for name in args.presets:
        preset = resolve_preset(name, overrides, stage1_steps=args.stage1_steps, stage2_steps=args.stage2_steps)
        steps = (preset.stage1.steps, preset.stage2.steps)
        base = resolve_preset(name)
        tag = name if steps == (base.stage1.steps, base.stage2.steps) else f"{name}[{steps[0]}+{steps[1]}]"
        tag += "".join(f",{k}={v}" for k, v in overrides.items())
        pipeline = Reconstructor(G, device=args.device, preset=preset, fk_bank=args.fk_bank, encoder=args.encoder)
        for back in args.backs:
            rows = []
            for folder in heads:
                for run in range(args.runs):
                    rows += evaluate_head(pipeline, folder, back, seed=666 + run, landmarks=known.get(folder.name))
                results[f"{back}/{tag}"] = {"buckets": bucket_table(rows), "rows": rows}
                write_results(args.name, meta, results)  # after every head: a run cut short keeps what it did
                print(f"{back}/{tag}: {folder.name} done", flush=True)
            print(back, tag, json.dumps(results[f"{back}/{tag}"]["buckets"]), flush=True)
    return 0


def write_results(name: str, meta: dict, results: dict) -> None:
    summary = gains(results)
    with atomic_path(RESULTS / f"{name}.json") as tmp:
        tmp.write_text(json.dumps({**meta, "gains_over_pti": summary, "results": results}, indent=1) + "\n")
    lines = ["# Reconstruction fidelity by |yaw| bucket", "", f"{meta['date']}; network {meta['network']}; "
             f"{len(meta['heads'])} heads, {meta['runs']} run(s) each; device {meta['device']}; "
             f"`{meta['command']}`", "",
             "| back / preset | yaw | n | PSNR | SSIM | mask IoU | depth err | identity |",
             "|---|---|---|---|---|---|---|---|"]
    for key, res in results.items():
        done = len({r["head"] for r in res["rows"]})
        if done < len(meta["heads"]):
            key = f"{key} ({done} of {len(meta['heads'])} heads)"
        for bucket, m in res["buckets"].items():
            ident = "-" if m["identity"] is None else f"{m['identity']:.3f}"
            depth = "-" if m["depth_err"] is None else f"{m['depth_err']:.3f}"
            lines.append(f"| {key} | {bucket} | {m['n']} | {m['psnr']:.2f} | {m['ssim']:.3f} | "
                         f"{m['mask_iou']:.3f} | {depth} | {ident} |")
    if summary:
        lines += ["", "Gain over PTI (same preset, back `none`), per head, mean ± standard error:", "",
                  "| strategy | front 0-30 dB | back 135-180 dB | heads better on the back |", "|---|---|---|---|"]
        for key, g in summary.items():
            def cell(m):
                return "-" if m is None else f"{m['mean']:+.2f}" + ("" if m["se"] is None else f" ± {m['se']:.2f}")
            back = g.get("back")
            lines.append(f"| {key} | {cell(g.get('front'))} | {cell(back)} | "
                         f"{'-' if back is None else str(back['better']) + ' of ' + str(back['heads'])} |")
    with atomic_path(RESULTS / f"{name}.md") as tmp:
        tmp.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
