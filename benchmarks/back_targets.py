"""How good is each pseudo back target, before any tuning? (issue 5, item 3)

    python benchmarks/back_targets.py --network default --orbits DIR [--heads 8] [--device cuda]

For every held-out head (``psohead synth orbit`` folders, as for ``fidelity.py``) the most frontal
view is projected (stage 1 of the ``fast`` preset) and the latent's back render is scored (PSNR)
against the ground-truth view nearest |yaw| = 180 degrees, as is and with each colour shift:

* ``prior``        - the stage-1 latent's back render unchanged;
* ``front-error``  - shifted by the colour error the latent makes on the photo's hair band
  (photo minus front render, median of the top quarter of the photo's mask): the shift ``fast``
  used before;
* ``hair``         - shifted so its head's median colour is the photo's hair-band colour (what
  ``fast`` ships, ``inversion.back.prior.prior_colour``);
* ``oracle``       - shifted so its head's median colour is the ground-truth back's: the ceiling
  of any single colour shift.

Writes benchmarks/results/NAME.{json,md} (``--name``, default back_targets).
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

from fidelity import RESULTS, head_folders
from psohead.api import load_generator
from psohead.atomic import atomic_path
from psohead.camera import back_label, yaw_pitch_from_label
from psohead.inversion.back.colour import hair_colour, shift_colour
from psohead.inversion.back.prior import prior_colour, render_prior
from psohead.inversion.pipeline import Reconstructor
from psohead.io.dataset import HeadDataset
from psohead.io.images import mask_tensor
from psohead.metrics.image import psnr

TARGETS = ("prior", "front-error", "hair", "oracle")


def score_head(pipeline: Reconstructor, folder: Path) -> dict:
    ds = HeadDataset(folder)
    yaws = yaw_pitch_from_label(ds.raw_labels)[0].rad2deg().abs()
    front_i, back_i = int(yaws.argmin()), int((yaws - 180).abs().argmin())
    img, mask, _ = ds[front_i]
    rec = pipeline(img.permute(1, 2, 0).numpy(), label=ds.raw_labels[front_i], mask=mask[0].numpy(), back="none",
                   stage2_steps=0, progress=False)
    G, res, ro = pipeline.G, int(pipeline.G.img_resolution), rec.render_overrides  # untuned, as inversion renders
    front = next(v for v in rec.views if v.name == "front")
    photo_mask = mask_tensor(mask[0].numpy(), res)
    back, back_mask = (t.cpu() for t in render_prior(G, rec.ws, back_label(rec.label).to(rec.ws.device), ro))
    render_front, _ = render_prior(G, rec.ws, front.label.to(rec.ws.device), ro)
    gt_img, gt_mask, _ = ds[back_i]
    gt = F.interpolate(gt_img[None].float() / 127.5 - 1, size=(res, res), mode="area")
    gt_m = F.interpolate(gt_mask[None].float() / 255, size=(res, res), mode="bilinear", align_corners=False)
    shifts = {"prior": torch.zeros(3),
              "front-error": hair_colour(front.image.cpu(), photo_mask) - hair_colour(render_front.cpu(), photo_mask),
              "hair": prior_colour(front, photo_mask, back, back_mask).shift.cpu(),
              "oracle": hair_colour(gt, gt_m, band=1.0) - hair_colour(back, back_mask, band=1.0)}
    gt_u8 = gt_img.permute(1, 2, 0).numpy()
    out = {}
    for name, shift in shifts.items():
        target = shift_colour(back, back_mask, shift)
        pred = F.interpolate(target, size=gt_u8.shape[:2], mode="area")[0].permute(1, 2, 0)
        out[name] = float(psnr((pred * 127.5 + 128).clamp(0, 255).byte().numpy(), gt_u8))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--network", default="default")
    ap.add_argument("--orbits", required=True, type=Path)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--name", default="back_targets")
    args = ap.parse_args(argv)
    pipeline = Reconstructor(load_generator(args.network, device="cpu"), device=args.device, preset="fast")
    heads = head_folders(args.orbits)[:args.heads]
    if not heads:
        raise SystemExit(f"no dataset folders under {args.orbits}")
    rows = {}
    for folder in heads:
        rows[folder.name] = score_head(pipeline, folder)
        print(folder.name, json.dumps({k: round(v, 2) for k, v in rows[folder.name].items()}), flush=True)
    mean = {k: float(np.mean([r[k] for r in rows.values()])) for k in TARGETS}
    meta = {"date": datetime.date.today().isoformat(), "command": "python " + " ".join(sys.argv),
            "network": args.network, "device": args.device, "heads": rows, "mean": mean}
    with atomic_path(RESULTS / f"{args.name}.json") as tmp:
        tmp.write_text(json.dumps(meta, indent=1) + "\n")
    lines = ["# Pseudo back targets against the ground-truth back (PSNR dB, before tuning)", "",
             f"{meta['date']}; network {args.network}; {len(rows)} heads; `{meta['command']}`", "",
             "| head | " + " | ".join(TARGETS) + " |", "|---" * (len(TARGETS) + 1) + "|"]
    for head, r in [*rows.items(), ("mean", mean)]:
        lines.append(f"| {head} | " + " | ".join(f"{r[k]:.2f}" for k in TARGETS) + " |")
    with atomic_path(RESULTS / f"{args.name}.md") as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
