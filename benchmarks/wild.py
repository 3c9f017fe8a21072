"""Wild-photo benchmark: real photos in, one reconstruction each, metrics that need no ground truth
for the unseen side (issue 28).

    python benchmarks/wild.py                                  # every photo, default network and preset
    python benchmarks/wild.py --steps 20                       # quick run: 20 + 20 steps
    python benchmarks/wild.py --network PanoHead.pkl --device cuda --name wild_official

Photos: ``benchmarks/wild_photos/`` (public domain, see its README), ``examples/`` and the PanoHead
samples in ``../shared/data/panohead_samples/img`` (CC BY-NC-SA, read in place, skipped when absent),
or the files given with ``--photos``. Per photo and averaged:

* front fidelity: PSNR and SSIM of the render at the input camera against the crop, inside the mask;
* identity: cosine and Euclidean distance of dlib face descriptors (distance < 0.6: the same
  person by dlib's rule; unrelated faces still reach a cosine of ~0.85), input crop vs front
  render, and front render vs the renders at yaw +-30 and +-60 degrees (None where dlib finds no
  face);
* geometry of the mesh (marching cubes of the tuned density): cranial breadth/length ratio of the
  widest slab above the brows (real adult heads: 0.75-0.85), left-right mirror chamfer distance
  in % of the cranial breadth, head breadth over the biocular width and head length over the face
  height (brows, eye corners, nasion and chin are the crop's 68 landmarks lifted onto the front
  depth map);
* faces on the back: faces the detector of ``psohead.preprocess`` finds on the yaw-180 render;
* realism: the discriminator's logit at yaw 90 and 180 as a z-score against its logits on the
  generator's own samples (psi 1) at the same cameras;
* leakage: share of the back view's head area whose colour is the photo's background's
  (:func:`psohead.metrics.image.colour_leakage`).

Writes ``benchmarks/results/NAME.{json,md}`` after every photo and the contact sheet
(input crop | front | 90 | back | front depth, one row per photo) to ``--sheet``.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from psohead.api import load_discriminator, load_generator
from psohead.atomic import atomic_path
from psohead.camera import label_from_yaw_pitch
from psohead.export.mesh import extract_mesh
from psohead.export.views import save_grid, to_uint8, yaw_labels
from psohead.inversion.presets import parse_assignments
from psohead.inversion.pipeline import reconstruct
from psohead.metrics.geometry import MENTON_68, head_proportions, mirror_chamfer
from psohead.metrics.identity import IdentityModel
from psohead.metrics.image import colour_leakage, psnr, ssim
from psohead.errors import InputError
from psohead.preprocess.landmarks import detect_faces
from psohead.preprocess.mask import person_matte

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SAMPLES = ROOT.parent / "shared" / "data" / "panohead_samples" / "img"
DEFAULT_PHOTOS = (ROOT / "examples" / "astronaut.jpg", ROOT / "benchmarks" / "wild_photos" / "hopper.jpg",
                  ROOT / "benchmarks" / "wild_photos" / "obama.jpg", ROOT / "benchmarks" / "wild_photos" / "biden.jpg",
                  ROOT / "examples" / "man.jpg", SAMPLES / "000134.jpg", SAMPLES / "000157.jpg")
SIDE_YAWS = (30, -30, 60, -60)
ID_SIZE = 256  # renders and crops are compared at this size (dlib's HOG detector misses faces under ~80 px)
SHEET_CELL = 160
D_SAMPLES = 32


def run_reconstruction(photo: Path, args):
    """The one reconstruction call of the benchmark."""
    s1, s2 = args.steps if args.steps else (None, None)
    return reconstruct(str(photo), None, network=args.network, preset=args.preset, stage1_steps=s1,
                       stage2_steps=s2, device=args.device, progress=False, overrides=parse_assignments(args.set),
                       encoder=args.encoder)


def _resized(img, size: int, resample=Image.LANCZOS) -> np.ndarray:
    pil = img if isinstance(img, Image.Image) else Image.fromarray(img)
    return np.asarray(pil.resize((size, size), resample))


@torch.no_grad()
def _render(G, ws, labels: torch.Tensor) -> dict:
    out = G.synthesis(ws, labels.to(ws.device), noise_mode="const", deterministic=True)
    return {k: out[k].float().cpu() for k in ("image", "image_depth", "image_mask")}


@torch.no_grad()
def _surface_points(G, label: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
    """World points [r,r,3] where the front camera's rays meet the rendered (expected) depth."""
    r = depth.shape[-1]
    c = label.float().cpu()
    origins, dirs = G.ray_sampler.cpu()(c[:, :16].reshape(-1, 4, 4), c[:, 16:25].reshape(-1, 3, 3), r)
    return (origins + dirs * depth.reshape(1, -1, 1))[0].reshape(r, r, 3)


def lift_landmarks(lm_px: np.ndarray, size: int, points: torch.Tensor) -> np.ndarray:
    """68 crop-pixel landmarks (crop side ``size``) -> world points, bilinear on the surface map."""
    grid = torch.as_tensor(lm_px / size * 2 - 1, dtype=torch.float32).view(1, 1, -1, 2)
    out = F.grid_sample(points.permute(2, 0, 1)[None], grid, mode="bilinear", align_corners=False)
    return out[0, :, 0].T.double().numpy()


@torch.no_grad()
def discriminator_reference(network, device, yaws=(90, 180), n: int = D_SAMPLES) -> tuple:
    """(D, {yaw: (mean, std)} of D's logits on the generator's own samples at those yaws)."""
    try:
        D = load_discriminator(network, device=device)
    except Exception as err:  # a file without D: the realism column is left empty
        print(f"no discriminator in {network}: {err}", file=sys.stderr)
        return None, {}
    G = load_generator(network, device=device)
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(n, G.z_dim, generator=gen).to(device)
    cond = label_from_yaw_pitch(torch.zeros(n)).to(device)
    ws = G.mapping(z, cond)
    _, delta = G.apply_delta_c(z, cond)
    ref = {}
    for yaw in yaws:
        scores = []
        for i in range(n):
            lab = yaw_labels([math.radians(yaw)], delta=delta[i:i + 1].cpu()).to(device)
            out = G.synthesis(ws[i:i + 1], lab, noise_mode="const", deterministic=True)
            scores.append(float(D(out, lab)))
        ref[yaw] = (float(np.mean(scores)), float(np.std(scores)))
    return D, ref


def subject_mask(rec) -> Image.Image:
    """The reconstruction's mask, or for an aligned crop given without one, the subject's matte."""
    if rec.mask is not None:
        return rec.mask
    rgb = np.asarray(rec.crop.convert("RGB"))
    faces = detect_faces(rgb)
    return person_matte(rgb, faces[0].landmarks if faces else None)


def measure(rec, name: str, tools: dict, args) -> tuple[dict, list[np.ndarray]]:
    G, ws = rec.G, rec.ws
    res = int(G.img_resolution)
    crop = _resized(rec.crop, res)
    mask = _resized(subject_mask(rec), res)
    yaws = {y: yaw_labels([math.radians(y)], delta=rec.delta) for y in (*SIDE_YAWS, 90, 180)}
    front = _render(G, ws, rec.render_label)
    views = {y: _render(G, ws, lab) for y, lab in yaws.items()}
    front_u8 = to_uint8(front["image"])[0]
    view_u8 = {y: to_uint8(v["image"])[0] for y, v in views.items()}
    row = {"photo": name, "psnr_front": psnr(crop, front_u8, mask=mask), "ssim_front": ssim(crop, front_u8, mask=mask)}

    ident = tools["identity"]
    big = lambda a: _resized(a, ID_SIZE)  # noqa: E731
    d_front = ident.descriptor(big(front_u8))
    for key, other in [("input_front", big(np.asarray(rec.crop)))] + [(f"front_{y:+d}", big(view_u8[y]))
                                                                      for y in SIDE_YAWS]:
        d = ident.descriptor(other)
        both = d is not None and d_front is not None
        row[f"id_{key}"] = float(d @ d_front / (np.linalg.norm(d) * np.linalg.norm(d_front))) if both else None
        row[f"id_dist_{key}"] = float(np.linalg.norm(d - d_front)) if both else None

    back_faces = detect_faces(big(view_u8[180]))
    row["faces_on_back"] = len(back_faces)
    row["back_face_score"] = max((f.score for f in back_faces), default=None)

    D, ref = tools["D"], tools["D_ref"]
    if D is not None:
        for y in (90, 180):
            out = G.synthesis(ws, yaws[y].to(ws.device), noise_mode="const", deterministic=True)
            mean, std = ref[y]
            with torch.no_grad():
                row[f"d_z_{y}"] = (float(tools["D"](out, yaws[y].to(ws.device))) - mean) / max(std, 1e-6)

    back_mask = F.interpolate(views[180]["image_mask"], size=(res, res), mode="bilinear", align_corners=False)
    try:
        row["back_leakage"] = colour_leakage(view_u8[180], back_mask[0, 0].numpy(), crop, mask)
    except InputError:  # no background in the crop (or no head on the back): nothing to leak
        row["back_leakage"] = None

    mesh = extract_mesh(G, ws, resolution=args.mesh_res, colors=False, progress=False)
    faces = detect_faces(np.asarray(rec.crop))
    if faces:
        lm3d = lift_landmarks(faces[0].landmarks, rec.crop.size[0], _surface_points(G, rec.render_label,
                                                                                    front["image_depth"]))
        prop = head_proportions(mesh, lm3d)
        row.update(cranial_ratio=prop.cranium.ratio, cranial_breadth=prop.cranium.breadth,
                   cranial_length=prop.cranium.length, breadth_per_biocular=prop.breadth_per_biocular,
                   length_per_face_height=prop.length_per_face_height)
        import trimesh

        if args.keep is not None:
            args.keep.mkdir(parents=True, exist_ok=True)
            mesh.export(str(args.keep / f"{Path(name).stem}.ply"))
            np.save(args.keep / f"{Path(name).stem}_landmarks.npy", lm3d)
        pts = np.asarray(trimesh.sample.sample_surface(mesh, 100_000, seed=0)[0])
        head = pts[pts[:, 1] > lm3d[MENTON_68, 1]]  # above the chin: the torso's own turn is not asymmetry
        row["mirror_chamfer_pct"] = 100 * mirror_chamfer(head) / prop.cranium.breadth
    depth = front["image_depth"]
    head_px = front["image_mask"] > 0.5
    lo, hi = (float(depth[head_px].min()), float(depth[head_px].max())) if head_px.any() else (None, None)
    depth_u8 = to_uint8(depth.masked_fill(~head_px, hi or 0), "image_depth", (lo, hi) if lo is not None else None)[0]
    cells = [crop, front_u8, view_u8[90], view_u8[180], _resized(depth_u8, res)]
    return row, [_resized(c, SHEET_CELL) for c in cells]


COLUMNS = (("psnr_front", "PSNR front dB", "{:.2f}"), ("ssim_front", "SSIM front", "{:.3f}"),
           ("id_input_front", "ID cos in↔front", "{:.3f}"), ("id_dist_input_front", "ID dist in↔front", "{:.3f}"),
           ("id_front_30", "ID cos front↔±30°", "{:.3f}"), ("id_front_60", "ID cos front↔±60°", "{:.3f}"),
           ("side_faces", "side views with a face (of 4)", "{:d}"), ("cranial_ratio", "cranial ratio", "{:.3f}"),
           ("breadth_per_biocular", "breadth / ex-ex", "{:.2f}"), ("length_per_face_height", "length / n-gn", "{:.2f}"),
           ("mirror_chamfer_pct", "mirror chamfer % breadth", "{:.2f}"), ("faces_on_back", "faces on back", "{:d}"),
           ("d_z_90", "D z 90°", "{:+.2f}"), ("d_z_180", "D z 180°", "{:+.2f}"),
           ("back_leakage", "back leakage %", "{:.1f}"))


def _pair_mean(row: dict, y: int):
    vals = [row.get(f"id_front_{s:+d}") for s in (y, -y)]  # cosine of both sides, where dlib found both
    vals = [v for v in vals if v is not None]
    return float(np.mean(vals)) if vals else None


def summary(rows: list[dict]) -> tuple[list[dict], dict]:
    table = []
    for r in rows:
        t = {k: r.get(k) for k, _, _ in COLUMNS}
        t["id_front_30"], t["id_front_60"] = _pair_mean(r, 30), _pair_mean(r, 60)
        t["side_faces"] = sum(r.get(f"id_front_{y:+d}") is not None for y in SIDE_YAWS)
        t["back_leakage"] = None if r["back_leakage"] is None else 100 * r["back_leakage"]
        t["photo"] = r["photo"]
        table.append(t)
    mean = {}
    for k, _, _ in COLUMNS:
        vals = [t[k] for t in table if t.get(k) is not None]
        mean[k] = float(np.mean(vals)) if vals else None
        mean[f"{k}_n"] = len(vals)
    return table, mean


def markdown(result: dict) -> str:
    head = "| photo | " + " | ".join(c for _, c, _ in COLUMNS) + " |"
    changed = "".join(" --set " + a for a in result.get("set", []))
    lines = [f"Machine: {result['machine']}; date {result['date']}; command `{result['command']}`; "
             f"network {result['network']}, preset {result['preset']}{changed}, steps {result['steps'] or 'preset'}, "
             f"device {result['device']}.\n", head, "|" + "---|" * (len(COLUMNS) + 1)]

    def fmt(v, f):
        if v is None:
            return "–"
        return f.format(int(round(v))) if f == "{:d}" else f.format(v)
    for t in result["table"] + [dict(result["mean"], photo="**mean**")]:
        lines.append(f"| {t['photo']} | " + " | ".join(fmt(t.get(k), f if t["photo"] != "**mean**" or f != "{:d}"
                                                        else "{:.2f}") for k, _, f in COLUMNS) + " |")
    n = result["mean"]
    lines.append(f"\nIdentity means over the photos where dlib found both faces (in↔front {n['id_input_front_n']}, "
                 f"±30° {n['id_front_30_n']}, ±60° {n['id_front_60_n']} of {len(result['table'])}). "
                 f"Seconds per photo (reconstruction + metrics): "
                 + ", ".join(f"{r['photo']} {r['seconds']:.0f}" for r in result["photos"]) + ".\n")
    return "\n".join(lines)


def write_json(path: Path, data: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1) + "\n")


def parse_steps(text: str | None):
    if not text:
        return None
    parts = [int(p) for p in text.split(",")]
    return (parts[0], parts[0]) if len(parts) == 1 else (parts[0], parts[1])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--network", default="default")
    ap.add_argument("--preset", default="auto")
    ap.add_argument("--steps", type=parse_steps, default=None,
                    help="quick run: N (both stages) or S1,S2 steps instead of the preset's")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                    help="change a preset field, e.g. shape.weight=0 (repeatable)")
    ap.add_argument("--encoder", default=None, help="latent encoder of the network (default: the network's own)")
    ap.add_argument("--photos", nargs="*", type=Path, default=None, help="photos (default: the benchmark set)")
    ap.add_argument("--mesh-res", type=int, default=192, help="density grid side for the mesh metrics")
    ap.add_argument("--name", default="wild", help="results file stem in benchmarks/results/")
    ap.add_argument("--sheet", type=Path, default=ROOT / "docs" / "wild_contact_sheet.png")
    ap.add_argument("--keep", type=Path, default=None,
                    help="also write each photo's mesh (PLY) and lifted landmarks here, to look at")
    args = ap.parse_args(argv)
    photos = args.photos or [p for p in DEFAULT_PHOTOS if p.is_file()]
    missing = [str(p) for p in (args.photos or DEFAULT_PHOTOS) if not p.is_file()]
    if missing:
        print("skipped (missing): " + ", ".join(missing), file=sys.stderr)
    if not photos:
        sys.exit("no photos")
    from psohead.devices import resolve_device

    device = resolve_device(args.device)
    D, ref = discriminator_reference(args.network, device)
    tools = {"identity": IdentityModel(), "D": D, "D_ref": ref}
    result = {"date": datetime.date.today().isoformat(),
              "machine": f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {device}"
                         + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""),
              "command": "python benchmarks/wild.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "network": str(args.network), "preset": args.preset, "set": list(args.set),
              "steps": list(args.steps) if args.steps else None, "device": str(device),
              "discriminator_reference": {str(k): v for k, v in ref.items()}, "photos": []}
    cells = []
    for photo in photos:
        t0 = time.perf_counter()
        rec = run_reconstruction(photo, args)
        row, row_cells = measure(rec, photo.name, tools, args)
        row["seconds"] = time.perf_counter() - t0
        row["reconstruction_seconds"] = rec.timings.get("inversion_total")
        print(json.dumps(row), flush=True)
        result["photos"].append(row)
        cells += row_cells
        result["table"], result["mean"] = summary(result["photos"])
        write_json(RESULTS / f"{args.name}.json", result)
        with atomic_path(RESULTS / f"{args.name}.md") as tmp:
            tmp.write_text(markdown(result))
        save_grid(np.stack(cells), args.sheet, cols=5,
                  captions=[s for p in result["photos"] for s in (p["photo"], "front", "yaw 90", "back", "depth")])
    print(markdown(result))


if __name__ == "__main__":
    main()
