"""Head proportions of SynthHeads-360's ground-truth heads, measured like the wild benchmark's
meshes (issue 28): cranial breadth/length ratio of the widest slab above the brows, breadth and
length in cm, face height, biocular width, ear length, neck breadth.

    python benchmarks/synth_proportions.py [--n 200] [--grid 128] [--name synth_proportions]

Each head: marching cubes of its SDF (``psohead.synth.orbit.head_mesh``), its 68 landmarks from
``psohead.synth.head.face_landmarks``. World units are turned into cm with the face mesh's own
scale (``head.CM`` world units per cm, times the head's ``scale``). Writes
benchmarks/results/NAME.{json,md}: per hair style group the mean and 5-95 % range of each measure.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
from pathlib import Path

import numpy as np

from psohead.metrics.geometry import EYE_OUTER_68, MENTON_68, NASION_68, head_proportions
from psohead.synth import head as H
from psohead.synth.orbit import head_mesh
from psohead.synth.params import sample_head

RESULTS = Path(__file__).resolve().parent / "results"
SHORT = ("bald", "buzz")  # hair adds (almost) nothing to the cranium's outline


def measure(seed: int, grid: int) -> dict:
    import trimesh

    rec = sample_head(seed)
    verts, faces, _ = head_mesh(rec, grid=grid)
    mesh = trimesh.Trimesh(verts, faces, process=False)
    lm = H.face_landmarks(rec).numpy()
    p = head_proportions(mesh, lm)
    cm = 1 / (H.CM * rec["scale"])  # cm per world unit of this head
    # neck breadth: x extent of the surface in a slab half-way between chin and collar, under the jaw
    y_neck = lm[MENTON_68, 1] - 0.06 * rec["scale"]
    slab = verts[(np.abs(verts[:, 1] - y_neck) < 0.004) & (np.abs(verts[:, 0]) < 0.2)]
    return {"seed": seed, "style": rec["style"], "cranial_ratio": p.cranium.ratio,
            "breadth_cm": p.cranium.breadth * cm, "length_cm": p.cranium.length * cm,
            "face_height_cm": float(np.linalg.norm(lm[NASION_68] - lm[MENTON_68])) * cm,
            "biocular_cm": float(np.linalg.norm(lm[EYE_OUTER_68[0]] - lm[EYE_OUTER_68[1]])) * cm,
            "ear_length_cm": 2 * H.EAR_RY * rec["ear"] / H.CM,
            "neck_breadth_cm": float(np.ptp(slab[:, 0])) * cm if len(slab) else None,
            "breadth_per_biocular": p.breadth_per_biocular, "length_per_face_height": p.length_per_face_height}


KEYS = ("cranial_ratio", "breadth_cm", "length_cm", "face_height_cm", "biocular_cm", "ear_length_cm",
        "neck_breadth_cm", "breadth_per_biocular", "length_per_face_height")


def stats(rows: list[dict]) -> dict:
    out = {"n": len(rows)}
    for k in KEYS:
        v = np.array([r[k] for r in rows if r[k] is not None])
        out[k] = {"mean": float(v.mean()), "p5": float(np.percentile(v, 5)), "p95": float(np.percentile(v, 95))}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--grid", type=int, default=128)
    ap.add_argument("--name", default="synth_proportions")
    args = ap.parse_args()
    rows = [measure(s, args.grid) for s in range(args.n)]
    groups = {"bald + buzz": [r for r in rows if r["style"] in SHORT], "all styles": rows}
    result = {"date": datetime.date.today().isoformat(), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
              "command": f"python benchmarks/synth_proportions.py --n {args.n} --grid {args.grid} --name {args.name}",
              "groups": {k: stats(v) for k, v in groups.items()}, "heads": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(result, indent=1) + "\n")
    md = [f"Machine: {result['machine']}; date {result['date']}; command `{result['command']}`.\n",
          "| heads | n | " + " | ".join(KEYS) + " |", "|---|---|" + "---|" * len(KEYS)]
    for g, s in result["groups"].items():
        md.append(f"| {g} | {s['n']} | " + " | ".join(f"{s[k]['mean']:.2f} ({s[k]['p5']:.2f}–{s[k]['p95']:.2f})"
                                                    for k in KEYS) + " |")
    (RESULTS / f"{args.name}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
