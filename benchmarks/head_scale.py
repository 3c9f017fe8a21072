"""Metres per generator world unit, measured on heads (the mesh exports' ``scale``).

    python benchmarks/head_scale.py [--heads 16] [--seeds 16]

Head breadth and length are the largest left-right (x) and front-back (z) extents of horizontal
slices of the surface between y = 0.02 and 0.12 world units: above the ears and below the crown
(the PanoHead framing puts the eyes near y = 0). Measured on (a) SynthHeads ground-truth heads
without hair volume (styles bald and buzz: the skull the procedural heads are built on) and
(b) the bundled model's heads (its mean head and random seeds at truncation 0.7), whose hair makes
them larger. A real adult head is about 15 cm wide and 19.5 cm long (anthropometric surveys);
the scale is the mean of 0.15 / breadth and 0.195 / length over the ground-truth heads.
Writes benchmarks/results/head_scale.{json,md}.
"""
from __future__ import annotations

import argparse
import datetime
import json
import platform
from pathlib import Path

import numpy as np
import torch

from psohead.api import load_generator
from psohead.atomic import write_json, write_text
from psohead.camera import label_from_yaw_pitch
from psohead.export.mesh import extract_mesh
from psohead.synth.orbit import head_mesh
from psohead.synth.params import sample_head

BAND = (0.02, 0.12)
SLICE = 0.01
BREADTH_M, LENGTH_M = 0.15, 0.195
RESULTS = Path(__file__).resolve().parent / "results"


def breadth_length(vertices: np.ndarray) -> tuple[float, float]:
    """Largest x and z extents of the surface's slices in BAND (world units)."""
    b = l = 0.0
    for y in np.arange(BAND[0], BAND[1], SLICE):
        s = vertices[(vertices[:, 1] >= y) & (vertices[:, 1] < y + SLICE)]
        if len(s):
            b = max(b, float(np.ptp(s[:, 0])))
            l = max(l, float(np.ptp(s[:, 2])))
    return b, l


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--heads", type=int, default=16, help="SynthHeads ground-truth heads (bald and buzz)")
    ap.add_argument("--seeds", type=int, default=16, help="random heads of the bundled model")
    ap.add_argument("--grid", type=int, default=128)
    args = ap.parse_args()
    rows = []
    seed = 0
    while sum(r["source"] == "synthheads" for r in rows) < args.heads:
        rec = sample_head(seed)
        seed += 1
        if rec["style"] not in ("bald", "buzz"):
            continue
        v, _, _ = head_mesh(rec, grid=args.grid)
        b, l = breadth_length(v)
        rows.append({"source": "synthheads", "id": rec["seed"], "style": rec["style"], "breadth": b, "length": l})
    G = load_generator("default")
    c = label_from_yaw_pitch(0.0)
    with torch.no_grad():
        codes = [("mean head", G.mapping(torch.zeros(1, G.z_dim), c, truncation_psi=0.0))]
        for s in range(args.seeds):
            z = torch.from_numpy(np.random.RandomState(s).randn(1, G.z_dim)).float()
            codes.append((f"seed {s}", G.mapping(z, c, truncation_psi=0.7)))
    for name, ws in codes:
        v = np.asarray(extract_mesh(G, ws, resolution=args.grid, colors=False, progress=False).vertices)
        b, l = breadth_length(v)
        rows.append({"source": "default model", "id": name, "breadth": b, "length": l})
    for r in rows:
        r["scale"] = (BREADTH_M / r["breadth"] + LENGTH_M / r["length"]) / 2
    summary = {}
    for source in ("synthheads", "default model"):
        sel = [r for r in rows if r["source"] == source]
        summary[source] = {k: {"mean": float(np.mean([r[k] for r in sel])), "std": float(np.std([r[k] for r in sel]))}
                           for k in ("breadth", "length", "scale")} | {"n": len(sel)}
    out = {"date": datetime.date.today().isoformat(), "machine": platform.processor() or platform.machine(),
           "command": "python benchmarks/head_scale.py " + f"--heads {args.heads} --seeds {args.seeds} --grid {args.grid}",
           "band_y": BAND, "real_breadth_m": BREADTH_M, "real_length_m": LENGTH_M,
           "summary": summary, "rows": rows}
    RESULTS.mkdir(exist_ok=True)
    write_json(RESULTS / "head_scale.json", out)
    lines = ["| heads | n | breadth (world) | length (world) | metres per unit |", "|---|---|---|---|---|"]
    for source, s in summary.items():
        lines.append(f"| {source} | {s['n']} | {s['breadth']['mean']:.3f} ± {s['breadth']['std']:.3f} | "
                     f"{s['length']['mean']:.3f} ± {s['length']['std']:.3f} | "
                     f"{s['scale']['mean']:.3f} ± {s['scale']['std']:.3f} |")
    write_text(RESULTS / "head_scale.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
