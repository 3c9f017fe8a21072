"""Quality, speed and size of the exported head meshes (issue 25 item 4).

    python benchmarks/mesh_quality.py [--seeds 0 1 2 3] [--recs DIR ...] [--orbits DIR --heads N]
        [--network default] [--resolution 128] [--variants vertex baked photo] [--faces N ...]
        [--texture-sizes N ...] [--device cpu] [--name mesh_quality]

Each head is meshed with ``psohead.export.mesh.build_head_mesh`` in several variants (``vertex``:
vertex colours of the feature field, the untextured export; ``baked``: the UV texture baked from
the network's renders, the default; ``photo``: baked with ``texture_from_photo``, where a photo
exists; ``--faces`` / ``--texture-sizes`` / ``--bake-views`` / ``--angle-powers`` / ``--rings`` add
baked variants with other face counts, texture sizes, bake views, view weights, bake rings). Every variant is written once (file sizes) and rendered with psohead's rasteriser
(``psohead.export.raster``, unlit, 2x2 supersampled) at evaluation cameras that are never bake
cameras, composited over the network's own render, and compared with the network's render at the
same camera: PSNR and SSIM inside the network's mask (mask > 0.5), per |yaw| bucket.

Heads: ``--seeds`` (random heads of ``--network``, truncation 0.7), ``--recs`` (reconstruct output
folders: generator.safetensors, latent.safetensors, crop.png, label.json; rendered with the preset's
ray_start 2.35 as reconstruct renders them), ``--orbits`` (SynthHeads ground-truth orbits as
``psohead synth orbit`` writes them: each head is reconstructed from its most frontal view like
benchmarks/fidelity.py does, then its mesh and its network are both scored against the ground
truth at every other view; the photo variant uses the input view). Evaluation cameras for seeds
and reconstructions: 24 yaws 7.5 deg + k 15 deg at pitch 0 and 8 yaws 22.5 deg + k 45 deg at
pitch +15 and -10 deg. Writes benchmarks/results/NAME.{json,md}; times are the mesh's own phases
(``info['seconds']``) on this process's device; ``chamfer_mm`` is the symmetric chamfer distance
of the exported surface (smoothed, decimated) to the raw marching-cubes surface of the same grid.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import json
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import trimesh

from psohead.api import load_generator
from psohead.atomic import write_json, write_text
from psohead.camera import HEAD_LOOKAT, apply_offset, label_from_yaw_pitch, yaw_pitch_from_label
from psohead.export import texture
from psohead.export.latent import load_latent
from psohead.export.mesh import MeshOptions, build_head_mesh, mesh_from_grid, read_photo, sample_head_density
from psohead.export.raster import Camera, render_mesh
from psohead.metrics.geometry import chamfer_distance
from psohead.metrics.image import psnr, ssim

BUCKETS = ((0, 30), (30, 60), (60, 90), (90, 135), (135, 181))  # as benchmarks/fidelity.py
RESULTS = Path(__file__).resolve().parent / "results"
RAY_START = {"ray_start": 2.35}  # the fast preset's, as reconstruct renders


def eval_labels() -> torch.Tensor:
    """Evaluation cameras (no bake camera among them): [40,25], looking at the head centre."""
    cams = [(7.5 + 15 * k, 0.0) for k in range(24)]
    cams += [(22.5 + 45 * k, p) for p in (15.0, -10.0) for k in range(8)]
    return torch.cat([label_from_yaw_pitch(math.radians(y), math.radians(p), lookat=HEAD_LOOKAT) for y, p in cams])


def render_variant(head, label: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
    """The mesh (world units) at camera ``label`` over ``background`` [3,H,W] in [0,1]."""
    cam = Camera.from_label(label, tuple(background.shape[-2:]))
    if head.atlas is not None:
        a = head.atlas
        tex = torch.from_numpy(head.texture).permute(2, 0, 1).float() / 255
        img, _ = render_mesh(torch.from_numpy(a.vertices), torch.from_numpy(a.faces), cam,
                             uv=torch.from_numpy(a.uv), texture=tex, background=background)
    else:
        img, _ = render_mesh(torch.from_numpy(head.vertices), torch.from_numpy(head.faces), cam,
                             colors=torch.from_numpy(head.colors[:, :3]).float() / 255, background=background)
    return img


def score(pred: torch.Tensor, ref: torch.Tensor, mask: torch.Tensor | None) -> tuple[float, float]:
    return float(psnr(pred, ref, data_range=1.0, mask=mask)), float(ssim(pred, ref, data_range=1.0, mask=mask))


def variants(args) -> dict[str, dict]:
    base = dict(resolution=args.resolution)
    out = {}
    for v in args.variants:
        if v == "vertex":
            out[v] = dict(base, texture=False)
        elif v == "baked":
            out[v] = dict(base)
        elif v == "photo":
            out[v] = dict(base, texture_from_photo=True)
    for n in args.faces:
        out[f"baked faces={n}"] = dict(base, faces=n)
    for n in args.texture_sizes:
        out[f"baked texture={n}"] = dict(base, texture_size=n)
    for n in args.bake_views:
        out[f"baked views={n}"] = dict(base, bake_views=n)
    for a in args.angle_powers:
        out[f"baked angle_power={a:g}"] = dict(base, study={"angle_power": a})
    for name in args.rings:
        out[f"baked rings={name}"] = dict(base, study={"rings": RINGS[name]})
    return out


# bake-ring layouts to compare with texture.BAKE_RINGS: (pitch deg, share of the level ring, weight)
RINGS = {"level": ((0.0, 1.0, 1.0),), "equal": ((0.0, 1.0, 1.0), (25.0, 1 / 3, 1.0), (-20.0, 1 / 3, 1.0)),
         "high": ((0.0, 1.0, 1.0), (40.0, 1 / 3, 0.3), (-20.0, 1 / 3, 0.3))}


@contextlib.contextmanager
def studied(study: dict):
    """Bake with another angle power or ring layout than texture's defaults (for this variant only)."""
    saved = texture.bake_texture, texture.bake_views
    if "angle_power" in study:
        texture.bake_texture = functools.partial(saved[0], angle_power=study["angle_power"])
    if "rings" in study:
        texture.bake_views = functools.partial(saved[1], rings=study["rings"])
    try:
        yield
    finally:
        texture.bake_texture, texture.bake_views = saved


def evaluate(subject: dict, opts: dict, grid, labels: torch.Tensor, refs: dict, gt: list | None, full=None):
    """Rows per camera for one variant, the mesh's info (with file sizes) and the mesh."""
    G, ws = subject["G"], subject["ws"]
    opts = dict(opts)
    with studied(opts.pop("study", {})):
        t = time.perf_counter()
        head = build_head_mesh(G, ws, MeshOptions(**opts), delta=subject["delta"],
                               render_overrides=subject["overrides"], photo=subject.get("photo"), grid=grid,
                               progress=False)
        total = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        sizes = {}
        for name in ("head.glb", "head.obj", "head.ply"):
            for p in head.write(Path(tmp) / name):
                sizes[p.name] = p.stat().st_size
        write = time.perf_counter() - t
    info = dict(head.info, files=sizes, seconds=dict(head.info["seconds"], write=round(write, 3),
                                                     total_without_density=round(total + write, 3)))
    if full is not None:  # geometric error of smoothing + decimation against the raw marching cubes
        mesh = trimesh.Trimesh(head.vertices, head.faces, process=False)
        info["chamfer_mm"] = round(chamfer_distance(mesh, full) * head.scale * 1000, 4)
    rows = []
    for i in range(len(labels)):
        net, mask = refs["image"][i], refs["mask"][i]
        img = render_variant(head, labels[i], net)
        yaw, pitch, _ = yaw_pitch_from_label(labels[i:i + 1])
        row = {"yaw": float(yaw.rad2deg()), "pitch": float(pitch.rad2deg())}
        row["psnr_vs_net"], row["ssim_vs_net"] = score(img, net, mask)
        if gt is not None:
            row["psnr_vs_gt"], row["ssim_vs_gt"] = score(img, gt[i], None)
            row["net_psnr_vs_gt"], row["net_ssim_vs_gt"] = score(net, gt[i], None)
        rows.append(row)
    return rows, info, head


def shaded(head, label: torch.Tensor, size: int) -> torch.Tensor:
    """Grey Lambert shading of the geometry with a light at the camera, over white [3,H,W]."""
    cam = Camera.from_label(label, size)
    v = torch.from_numpy(head.vertices)
    n = torch.from_numpy(head.normals)
    light = F.normalize(cam.origin.float() - v, dim=-1)
    grey = (0.15 + 0.85 * (n * light).sum(-1).clamp_min(0))[:, None].expand(-1, 3)
    img, _ = render_mesh(v, torch.from_numpy(head.faces), cam, colors=grey, background=1.0)
    return img


def picture(subject: dict, heads: dict, path: Path, cell: int = 256) -> None:
    """Rows: the network's renders, each variant's mesh, the shaded geometry; columns: cameras."""
    from PIL import Image, ImageDraw

    cams = [(0, 0), (35, 0), (90, 0), (180, 0), (270, 0), (20, 25)]
    labels = torch.cat([label_from_yaw_pitch(math.radians(y), math.radians(p), lookat=HEAD_LOOKAT) for y, p in cams])
    refs = network_refs(subject, labels)
    lab = labels if subject["delta"] is None else apply_offset(labels, subject["delta"].cpu())
    rows = [("network render", list(refs["image"]))]
    for name, head in heads.items():
        rows.append((f"mesh: {name}", [render_variant(head, lab[i], torch.ones_like(refs["image"][i]))
                                       for i in range(len(cams))]))
    rows.append(("mesh geometry", [shaded(next(iter(heads.values())), lab[i], refs["image"].shape[-1])
                                   for i in range(len(cams))]))
    sheet = Image.new("RGB", (cell * len(cams), cell * len(rows)), "white")
    draw = ImageDraw.Draw(sheet)
    for r, (name, images) in enumerate(rows):
        for c, img in enumerate(images):
            tile = Image.fromarray((img.permute(1, 2, 0).clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8))
            sheet.paste(tile.resize((cell, cell), Image.LANCZOS), (c * cell, r * cell))
        draw.text((5, r * cell + 4), name, fill=(0, 0, 0))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)


@torch.no_grad()
def network_refs(subject: dict, labels: torch.Tensor, size: int | None = None) -> dict:
    """The network's renders at the cameras (with the offset): image [N,3,H,W] in [0,1], mask > 0.5."""
    G, ws = subject["G"], subject["ws"]
    lab = labels if subject["delta"] is None else apply_offset(labels, subject["delta"].cpu())
    images, masks = [], []
    for s in range(0, len(lab), 4):
        out = G.synthesis(ws, lab[s:s + 4].to(ws.device), noise_mode="const", deterministic=True,
                          render_overrides=subject["overrides"])
        img = ((out["image"].float().cpu() + 1) / 2).clamp(0, 1)
        m = F.interpolate(out["image_mask"].float().cpu(), size=img.shape[-2:], mode="bilinear", align_corners=False)
        if size is not None and img.shape[-1] != size:
            img = F.interpolate(img, size=(size, size), mode="area")
            m = F.interpolate(m, size=(size, size), mode="area")
        images.append(img)
        masks.append((m > 0.5).float())
    return {"image": torch.cat(images), "mask": torch.cat(masks)}


def seed_subject(G, seed: int, device) -> dict:
    z = torch.from_numpy(np.random.RandomState(seed).randn(1, G.z_dim)).float().to(device)
    c = label_from_yaw_pitch(0.0).to(device)
    with torch.no_grad():
        ws = G.mapping(z, c, truncation_psi=0.7)
        delta = G.apply_delta_c(z, c, truncation_psi=0.7)[1] if hasattr(G, "apply_delta_c") else None
    return {"name": f"seed {seed}", "kind": "seed", "G": G, "ws": ws, "delta": delta, "overrides": None}


def rec_subject(folder: Path, device) -> dict:
    lat = load_latent(folder / "latent.safetensors")
    return {"name": folder.name, "kind": "reconstruction", "G": load_generator(folder / "generator.safetensors", device=device),
            "ws": lat.ws.to(device), "delta": lat.delta, "overrides": RAY_START, "photo": read_photo(folder)}


def orbit_subjects(G, root: Path, heads: int, steps: tuple, device):
    """Reconstructions of ground-truth orbit heads from their most frontal view (as fidelity.py)."""
    from PIL import Image

    from psohead.inversion.reconstruct import reconstruct
    from psohead.training.dataset import HeadDataset

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from fidelity import head_folders

    for folder in head_folders(root)[:heads]:
        ds = HeadDataset(folder)
        labels = ds.raw_labels
        front_i = int(yaw_pitch_from_label(labels)[0].abs().argmin())
        img, mask, _ = ds[front_i]
        front = img.permute(1, 2, 0).numpy()
        rec = reconstruct(front, None, label=labels[front_i], mask=mask[0].numpy(), network=G, preset="fast",
                          device=device, stage1_steps=steps[0], stage2_steps=steps[1], progress=False)
        others = [i for i in range(len(ds)) if i != front_i]
        gt = [ds[i][0].float() / 255 for i in others]
        yield {"name": folder.name, "kind": "orbit", "G": rec.G, "ws": rec.ws, "delta": rec.delta,
               "overrides": RAY_START, "photo": (Image.fromarray(front), labels[front_i:front_i + 1]),
               "labels": labels[others], "gt": gt}


def bucket_means(rows: list[dict]) -> dict:
    out = {}
    for lo, hi in BUCKETS:
        sel = [r for r in rows if lo <= abs(r["yaw"]) < hi]
        if sel:
            out[f"{lo}-{min(hi, 180)}"] = {k: float(np.mean([r[k] for r in sel])) for k in sel[0] if k not in ("yaw", "pitch")} | {"n": len(sel)}
    return out


def write_results(name: str, meta: dict, results: list[dict]) -> None:
    write_json(RESULTS / f"{name}.json", {**meta, "results": results})
    lines = [f"# Mesh quality ({meta['date']}, {meta['machine']}, device {meta['device']})", "",
             f"`{meta['command']}`", "",
             "PSNR / SSIM of the mesh render against the network's render inside its mask, per |yaw| bucket "
             "(orbit heads: also against the ground truth, the network's own in brackets).", "",
             "| head | variant | " + " | ".join(f"{lo}-{min(hi, 180)}" for lo, hi in BUCKETS)
             + " | faces | chamfer mm | texture | mesh s (density s) | glb MB | obj+mtl+png MB | ply MB |",
             "|---|---|" + "---|" * len(BUCKETS) + "---|---|---|---|---|---|---|"]
    for r in results:
        cells = []
        for lo, hi in BUCKETS:
            b = r["buckets"].get(f"{lo}-{min(hi, 180)}")
            if b is None:
                cells.append("-")
                continue
            cell = f"{b['psnr_vs_net']:.2f} / {b['ssim_vs_net']:.3f}"
            if "psnr_vs_gt" in b:
                cell += f"; GT {b['psnr_vs_gt']:.2f} ({b['net_psnr_vs_gt']:.2f})"
            cells.append(cell)
        info = r["info"]
        sec = info["seconds"]
        f = info["files"]
        obj = sum(v for k, v in f.items() if k != "head.glb" and k != "head.ply") / 1e6
        lines.append(f"| {r['head']} | {r['variant']} | " + " | ".join(cells)
                     + f" | {info['faces']} | {info.get('chamfer_mm', '-')} | {info['texture_size'] or '-'} | {sec['total_without_density'] + sec['density']:.1f}"
                     f" ({sec['density']:.1f})"
                     f" | {f['head.glb'] / 1e6:.2f} | {obj:.2f} | {f['head.ply'] / 1e6:.2f} |")
    write_text(RESULTS / f"{name}.md", "\n".join(lines) + "\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--network", default="default")
    ap.add_argument("--seeds", type=int, nargs="*", default=[])
    ap.add_argument("--recs", type=Path, nargs="*", default=[])
    ap.add_argument("--orbits", type=Path, default=None)
    ap.add_argument("--heads", type=int, default=2)
    ap.add_argument("--stage1-steps", type=int, default=None)
    ap.add_argument("--stage2-steps", type=int, default=None)
    ap.add_argument("--resolution", type=int, default=128, help="density grid (the fast preset's 128)")
    ap.add_argument("--variants", nargs="+", default=["vertex", "baked", "photo"])
    ap.add_argument("--faces", type=int, nargs="*", default=[])
    ap.add_argument("--texture-sizes", type=int, nargs="*", default=[])
    ap.add_argument("--bake-views", type=int, nargs="*", default=[], help="baked variants with these bake views")
    ap.add_argument("--angle-powers", type=float, nargs="*", default=[],
                    help="baked variants with these view-weight powers (texture.ANGLE_POWER)")
    ap.add_argument("--rings", nargs="*", default=[], choices=sorted(RINGS),
                    help="baked variants with these bake-ring layouts instead of texture.BAKE_RINGS")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--name", default="mesh_quality")
    ap.add_argument("--picture", type=Path, default=None,
                    help="also draw the first head's network renders, meshes and geometry side by side")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    meta = {"date": datetime.date.today().isoformat(), "command": "python " + " ".join(sys.argv),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
                       f"{torch.get_num_threads()} threads", "device": str(device), "network": args.network}
    if device.type == "cuda":
        meta["machine"] += ", " + torch.cuda.get_device_name(device)
    subjects = []
    if args.seeds:
        G = load_generator(args.network, device=device)
        subjects += [seed_subject(G, s, device) for s in args.seeds]
    subjects += [rec_subject(f, device) for f in args.recs]
    if args.orbits is not None:
        G = load_generator(args.network, device=device)
        subjects += list(orbit_subjects(G, args.orbits, args.heads, (args.stage1_steps, args.stage2_steps), device))
    results = []
    subjects = list(subjects)
    first, shown = subjects[0], {}
    for subject in subjects:
        labels = subject.get("labels", eval_labels())
        gt = subject.get("gt")
        refs = network_refs(subject, labels, size=None if gt is None else gt[0].shape[-1])
        t = time.perf_counter()
        grid = sample_head_density(subject["G"], subject["ws"], args.resolution, progress=False)
        density_s = time.perf_counter() - t
        lab = labels if subject["delta"] is None else apply_offset(labels, subject["delta"].cpu())
        full = mesh_from_grid(grid)
        for name, opts in variants(args).items():
            if name == "photo" and "photo" not in subject:
                continue
            rows, info, head = evaluate(subject, opts, grid, lab, refs, gt, full)
            if args.picture is not None and subject is first:
                shown[name] = head
            info["seconds"]["density"] = round(density_s, 3)
            results.append({"head": subject["name"], "kind": subject["kind"], "variant": name, "options": opts,
                            "buckets": bucket_means(rows), "info": info, "rows": rows})
            print(subject["name"], name, json.dumps(results[-1]["buckets"]), json.dumps(info["seconds"]), flush=True)
            write_results(args.name, meta, results)
        if args.picture is not None and subject is first:
            picture(subject, shown, args.picture)
            print(f"wrote {args.picture}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
