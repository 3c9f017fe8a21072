"""Inversion quality on a head with a known answer: invert a render of the generator itself.

A random network of the ``default`` training preset renders a random latent from the front; that
image (and its camera) is inverted with a preset; the tuned head is then compared with the true
head from the front (against the input) and from the back (against the true latent's back view,
which the method never sees). Run it on two code versions with different ``--tag`` to compare:

    PYTHONPATH=/path/to/old/src python benchmarks/inversion_quality.py --tag before
    python benchmarks/inversion_quality.py --tag after
    # -> benchmarks/results/inversion_quality_cpu.{json,md}

Takes a few minutes on 2 CPU cores (the fast preset).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from pathlib import Path

import torch

from psohead.camera import back_label, label_from_yaw_pitch
from psohead.inversion.pipeline import reconstruct
from psohead.networks.generator import TriGridGenerator
from psohead.training.presets import preset as training_preset

RESULTS = Path(__file__).resolve().parent / "results"


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of images in [-1, 1] (peak-to-peak 2)."""
    mse = ((a.clamp(-1, 1) - b.clamp(-1, 1)) / 2).square().mean()
    return float(-10 * torch.log10(mse))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tag", required=True, help="row name, e.g. before / after")
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--seed", type=int, default=1, help="seed of the true latent")
    ap.add_argument("--yaw", type=float, default=20.0, help="yaw of the input view in degrees")
    ap.add_argument("--name", default="inversion_quality_cpu")
    args = ap.parse_args(argv)

    torch.manual_seed(0)
    G = TriGridGenerator.from_config(training_preset("default")[0]).eval().requires_grad_(False)
    ro = {"ray_start": 2.35}  # what inversion renders with
    label = label_from_yaw_pitch(torch.tensor(args.yaw).deg2rad().item())
    z = torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(args.seed))
    with torch.no_grad():
        ws = G.mapping(z, label)
        target = G.synthesis(ws, label, noise_mode="const", deterministic=True, render_overrides=ro)["image"]
        true_back = G.synthesis(ws, back_label(label), noise_mode="const", deterministic=True,
                                render_overrides=ro)["image"]
    load = os.getloadavg()[0]
    t = time.perf_counter()
    rec = reconstruct(target, None, label=label[0], network=G, preset=args.preset, back="prior", device="cpu",
                      progress=False)
    seconds = time.perf_counter() - t
    row = {"front_psnr": round(psnr(rec.render(rec.render_label), target), 3),
           "back_psnr": round(psnr(rec.render(rec.back_label()), true_back), 3),
           "pivot_back_psnr": round(psnr(rec.pivot_back, true_back), 3),
           "stage1_s": round(rec.timings["stage1"], 1), "stage2_s": round(rec.timings["stage2"], 1),
           "inversion_s": round(seconds, 1), "load": round(load, 2), "preset": rec.preset.name,
           "views": [v.name for v in rec.views]}
    print(json.dumps({args.tag: row}), flush=True)

    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{args.name}.json"
    data = json.loads(path.read_text()) if path.is_file() else {"rows": {}}
    data.update(date=datetime.date.today().isoformat(), torch=torch.__version__, seed=args.seed, yaw=args.yaw)
    data["rows"][args.tag] = row
    path.write_text(json.dumps(data, indent=1) + "\n")
    lines = ["# Inversion quality: a render of the generator inverted, compared with the truth", "",
             f"Random `default`-preset network, true latent seed {args.seed}, input at yaw {args.yaw} deg, "
             f"back compared with the true latent's back view (never seen). {data['date']}, torch {torch.__version__}.",
             "Seconds are from a shared machine (load = 1-min load average at the start); for speed see "
             "bench_inversion_cpu.md.",
             "", "| code | preset | front PSNR dB | back PSNR dB | pivot back PSNR dB | stage 1 s | stage 2 s | load |",
             "|---|---|---|---|---|---|---|---|"]
    for tag, r in data["rows"].items():
        lines.append(f"| {tag} | {r['preset']} | {r['front_psnr']} | {r['back_psnr']} | {r['pivot_back_psnr']} | "
                     f"{r['stage1_s']} | {r['stage2_s']} | {r['load']} |")
    (RESULTS / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
