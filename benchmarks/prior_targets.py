"""How close is the prior back target to the truth, and would another target be closer? (issue 5)

    python benchmarks/prior_targets.py --network default --orbits DIR [--preset quality] [--heads 8]
        [--device cuda] [--name prior_targets]

For every held-out head (``psohead synth orbit`` folders, as for ``fidelity.py``) stage 1 of the
preset runs on the most frontal view and the prior targets are scored (PSNR dB) against the
ground-truth views at the prior's own cameras (the back and the +-augment views; the orbit's
view nearest each camera), before any tuning. Stage 2 then pulls the back towards its target,
so a closer target is the candidate for a better back. Targets:

* ``mean``         - what ``reconstruct`` uses with this preset before the blend towards the mean head (the
  members' mean, the photo's hair colour shifted onto it from the pivot's back);
* ``pivot``        - the first member alone (what ``fast`` gets);
* ``shift-mean``   - the members' mean with the colour shift measured on the mean's own back;
* ``shrink-L``     - the ``mean`` target blended with weight L towards the mean head's (the mean
  latent's) back in the photo's hair colour: shrinkage of an uncertain guess towards the
  population mean;
* ``trunc-P``      - every member moved to ``w_avg + P (w - w_avg)`` before rendering (the latent
  space's own shrinkage), colour shifted on its pivot's back;
* ``wmean``        - the render of the members' mean latent (one code), colour shifted on its back;
* ``vshrink-L``    - ``mean`` blended towards the mean head with a weight spread over the pixels by the
  members' disagreement there (mean weight L, at most 1): shrink most where the guess is least sure;
* ``eb-C``         - per-pixel empirical-Bayes blend of the members' mean towards the mean head's
  back: weight C v / (C v + d), v the members' variance, d the squared gap between the two
  (``back.shrink spread`` with ``back.shrink_amount = C``, ``inversion.back.prior.spread_weights``);
* ``pop-L``        - ``mean`` blended with weight L towards the mean of 16 random heads' views
  (the population's mean image rather than the mean latent's head), in the photo's hair colour.

``shipped`` is the target ``reconstruct`` used with the preset (read from its stage-2 views;
``eb-4`` for ``quality`` now, ``shrink-0.1`` before).

``front-pivot`` / ``front-wmean``: PSNR of the pivot's and the mean latent's front render against
the photo (the pivot stage 2 would start from). ``final``: the reconstruction (after stage 2) at
the same cameras, with its camera offset as ``fidelity.py`` renders it.

Writes benchmarks/results/NAME.{json,md}: per head, the mean over heads and each target's
per-head difference to ``shipped`` (mean +- standard error). ``final`` comes from the full preset
(its blend included).
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
from psohead.camera import apply_offset, split_label, yaw_pitch_from_label
from psohead.inversion.back.colour import shift_colour
from psohead.inversion.back.prior import (back_cameras, camera_labels, local_mean, member_renders, prior_colour,
                                          spread_weights)
from psohead.inversion.pipeline import Reconstructor
from psohead.inversion.presets import resolve_preset
from psohead.io.dataset import HeadDataset
from psohead.io.images import mask_tensor
from psohead.metrics.image import psnr

SHRINK = (0.05, 0.1, 0.15, 0.2)
TRUNC = (0.9,)
VSHRINK = (0.1, 0.2, 0.3)  # mean blend weight, spread over the pixels by the members' disagreement
EB = (0.25, 1.0, 4.0, 8.0, 16.0, 32.0)  # scale of the members' variance in the empirical-Bayes blend
POPULATION = 16  # random heads averaged for the population-mean target
POP = (0.1, 0.2)  # blend weights towards their mean image


def nearest_views(ds: HeadDataset, labels: torch.Tensor) -> tuple[list[int], float]:
    """Index of the orbit view whose camera position is nearest each label's, and the largest
    angle (degrees, seen from the origin) between a label's camera and its view's."""
    pos = split_label(ds.raw_labels)[0][:, :3, 3]
    idx, worst = [], 0.0
    for lab in labels:
        p = split_label(lab[None])[0][0, :3, 3]
        i = int((pos - p).norm(dim=1).argmin())
        cos = float(p @ pos[i] / (p.norm() * pos[i].norm()))
        idx.append(i)
        worst = max(worst, float(np.degrees(np.arccos(min(1.0, cos)))))
    return idx, worst


def score(images: torch.Tensor, ds: HeadDataset, idx: list[int]) -> float:
    """Mean PSNR of images [V,3,H,W] in [-1,1] against the orbit views ``idx`` (at their size)."""
    values = []
    for image, i in zip(images, idx):
        gt = ds[i][0].permute(1, 2, 0).numpy()
        pred = F.interpolate(image[None].float().cpu(), size=gt.shape[:2], mode="area")[0].permute(1, 2, 0)
        values.append(float(psnr((pred * 127.5 + 128).clamp(0, 255).byte().numpy(), gt)))
    return float(np.mean(values))


def population_renders(G, front_label: torch.Tensor, labels: torch.Tensor, mirror: bool, ro: dict
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean views (and masks) of POPULATION random heads (psi 1, conditioned on the photo's camera)."""
    z = torch.randn(POPULATION, G.z_dim, generator=torch.Generator().manual_seed(123)).to(labels.device)
    ws = G.mapping(z, front_label.expand(POPULATION, -1), truncation_psi=1)
    return mean_renders(G, ws, labels, mirror, ro)


def mean_renders(G, ws, labels, mirror, ro) -> tuple[torch.Tensor, torch.Tensor]:
    """Views [V,3,H,W] and masks of the latents ``ws`` averaged over the latents (and the mirror)."""
    images, masks = member_renders(G, ws, labels, mirror, ro)
    return images.mean(0), masks.mean(0)


def score_head(pipeline: Reconstructor, folder: Path) -> dict:
    ds = HeadDataset(folder)
    front_i = int(yaw_pitch_from_label(ds.raw_labels)[0].abs().argmin())
    img, mask, _ = ds[front_i]
    preset = pipeline.preset
    rec = pipeline(img.permute(1, 2, 0).numpy(), label=ds.raw_labels[front_i], mask=mask[0].numpy(), back="prior",
                   progress=False)
    dev = rec.ws.device
    G1, res = pipeline.G, int(pipeline.G.img_resolution)  # the loaded, untuned generator
    ro = rec.render_overrides  # render the candidates as reconstruct renders its targets
    labels = camera_labels(back_cameras(rec.label, preset.back.augment_degrees)).to(dev)
    idx, mismatch = nearest_views(ds, labels.cpu())
    front = next(v for v in rec.views if v.name == "front")
    photo_mask = mask_tensor(mask[0].numpy(), res)
    members = rec.ws if rec.members is None else rec.members
    w_avg = pipeline.latent_stats(preset).w_avg

    def shifted(images, masks):  # the photo's hair colour, measured on the back view (view 0)
        return prior_colour(front, photo_mask, images[:1], masks[:1]).apply(images, masks)

    mirror = preset.back.mirror_average
    pivot_im, pivot_m = mean_renders(G1, rec.ws, labels, mirror, ro)
    mean_im, mean_m = mean_renders(G1, members, labels, mirror, ro)
    base = mean_im  # the prior views as reconstruct makes them, before the blend towards the mean head
    if "prior_colour_shift" in rec.back:
        base = shift_colour(mean_im, mean_m, torch.tensor(rec.back["prior_colour_shift"]).to(dev))
    head_im, head_m = mean_renders(G1, w_avg.repeat(1, members.shape[1], 1), labels, mirror, ro)
    mean_head = shifted(head_im, head_m)
    shipped = torch.cat([v.image for v in rec.views if v.source == "prior"])  # camera order as labels
    out = {"shipped": score(shipped, ds, idx), "mean": score(base, ds, idx),
           "pivot": score(shifted(pivot_im, pivot_m), ds, idx), "shift-mean": score(shifted(mean_im, mean_m), ds, idx)}
    for lam in SHRINK:
        out[f"shrink-{lam:g}"] = score((1 - lam) * base + lam * mean_head, ds, idx)
    member_images = member_renders(G1, members, labels, mirror, ro)[0]
    spread = local_mean(member_images.var(0, unbiased=False).mean(1, keepdim=True), 7)
    for lam in VSHRINK:
        weight = (lam * spread / spread.mean()).clamp(max=1)
        out[f"vshrink-{lam:g}"] = score((1 - weight) * base + weight * mean_head, ds, idx)
    for c in EB:
        weight = spread_weights(member_images, base, mean_head, c)  # = back.shrink spread, shrink_amount c
        out[f"eb-{c:g}"] = score((1 - weight) * base + weight * mean_head, ds, idx)
    population = shifted(*population_renders(G1, rec.label.to(dev), labels, mirror, ro))
    for lam in POP:
        out[f"pop-{lam:g}"] = score((1 - lam) * base + lam * population, ds, idx)
    for psi in TRUNC:
        im, m = mean_renders(G1, w_avg + psi * (members - w_avg), labels, mirror, ro)
        pim, pm = mean_renders(G1, w_avg + psi * (rec.ws - w_avg), labels[:1], mirror, ro)
        shift = prior_colour(front, photo_mask, pim, pm).shift
        out[f"trunc-{psi:g}"] = score(shift_colour(im, m, shift.to(im.device)), ds, idx)
    out["final"] = score(rec.render(apply_offset(labels, rec.delta)), ds, idx)  # after stage 2, as fidelity.py
    w_mean = members.mean(0, keepdim=True)
    out["wmean"] = score(shifted(*mean_renders(G1, w_mean, labels, mirror, ro)), ds, idx)
    for name, ws in (("front-pivot", rec.ws), ("front-wmean", w_mean)):
        out[name] = score(mean_renders(G1, ws, front.label.to(dev), False, ro)[0], ds, [front_i])
    return out, mismatch


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--network", default="default")
    ap.add_argument("--orbits", required=True, type=Path)
    ap.add_argument("--preset", default="quality")
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--name", default="prior_targets")
    args = ap.parse_args(argv)
    pipeline = Reconstructor(load_generator(args.network, device="cpu"), device=args.device,
                             preset=resolve_preset(args.preset))
    heads = head_folders(args.orbits)[:args.heads]
    if not heads:
        raise SystemExit(f"no dataset folders under {args.orbits}")
    rows = {}
    meta = {"date": datetime.date.today().isoformat(), "command": "python " + " ".join(sys.argv),
            "network": args.network, "preset": args.preset, "device": args.device}
    for folder in heads:
        rows[folder.name], mismatch = score_head(pipeline, folder)
        if mismatch > 5:
            print(f"{folder.name}: an orbit view is {mismatch:.1f} degrees off a prior camera", flush=True)
        print(folder.name, json.dumps({k: round(v, 2) for k, v in rows[folder.name].items()}), flush=True)
        write(args.name, meta, rows)  # after every head: a run cut short keeps what it did
    return 0


def write(name: str, meta: dict, rows: dict) -> None:
    targets = list(next(iter(rows.values())))
    mean = {k: float(np.mean([r[k] for r in rows.values()])) for k in targets}
    diff = {}
    for k in [t for t in targets if not t.startswith("front-")]:  # back targets only
        d = np.array([r[k] - r["shipped"] for r in rows.values()])
        se = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan")
        diff[k] = {"mean": float(d.mean()), "se": se, "better": int((d > 0).sum())}
    with atomic_path(RESULTS / f"{name}.json") as tmp:
        tmp.write_text(json.dumps({**meta, "heads": rows, "mean": mean, "vs_shipped": diff}, indent=1) + "\n")
    lines = ["# Prior back targets against the ground truth at their cameras (PSNR dB, before tuning)", "",
             f"{meta['date']}; network {meta['network']}; preset {meta['preset']}; {len(rows)} heads; "
             f"`{meta['command']}`", "", "| head | " + " | ".join(targets) + " |", "|---" * (len(targets) + 1) + "|"]
    for head, r in [*rows.items(), ("mean", mean)]:
        lines.append(f"| {head} | " + " | ".join(f"{r[k]:.2f}" for k in targets) + " |")
    lines.append("| vs shipped | " + " | ".join(f"{diff[k]['mean']:+.2f} ± {diff[k]['se']:.2f} ({diff[k]['better']})"
                                             if k in diff else "–" for k in targets) + " |")
    with atomic_path(RESULTS / f"{name}.md") as tmp:
        tmp.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
