"""Time of the textured head mesh (``write_head_meshes`` with default options), per phase.

    python benchmarks/mesh_speed.py --config default|official [--device cpu|cuda] [--repeats 3]
        [--resolution 256] [--name NAME]

``default``: the bundled model on random heads (seeds 0, 1, ...). ``official``: the released
PanoHead configuration (512² renders, 128² neural rendering, 48 + 48 samples per ray) with random
weights, which have no head to mesh, so its density is replaced by the bundled model's head (seed
0) while every cost stays the official network's: its tri-grid and decoder are evaluated on every
density point, its renders (512²) feed the bake. Each repeat is a fresh head through the whole
``write_head_meshes`` (density, geometry, vertex colours, unwrap, bake, files); the first repeat
includes warm-up. Writes benchmarks/results/NAME.json (default mesh_speed_CONFIG_DEVICE).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from psohead.api import load_generator
from psohead.atomic import write_json
from psohead.camera import label_from_yaw_pitch
from psohead.export.mesh import MeshOptions, write_head_meshes

RESULTS = Path(__file__).resolve().parent / "results"


class OfficialCostDefaultShape:
    """The official-configuration generator ``G`` whose density is ``shape``'s head (code ``shape_ws``):
    the mesh code sees the official network's planes, decoder features and renders."""

    def __init__(self, G, shape, shape_ws):
        self.G, self.shape, self.shape_ws = G, shape, shape_ws
        self.rendering_kwargs, self.img_resolution = G.rendering_kwargs, G.img_resolution
        self.torgb, self.decoder, self.renderer = G.torgb, G.decoder, self
        self.num_ws, self.w_dim = G.num_ws, G.w_dim
        self._shape_planes = shape.planes(shape_ws, noise_mode="const")

    def planes(self, ws, noise_mode="const"):
        return self.G.planes(ws, noise_mode=noise_mode)

    def run_model(self, planes, decoder, coords, dirs, options, deterministic=True):
        out = self.G.renderer.run_model(planes, decoder, coords, dirs, options, deterministic=deterministic)
        shape = self.shape.renderer.run_model(self._shape_planes, self.shape.decoder, coords, dirs,
                                              self.shape.rendering_kwargs, deterministic=True)
        return {**out, "sigma": shape["sigma"]}

    def synthesis(self, ws, c, **kwargs):
        return self.G.synthesis(ws, c, **kwargs)


def head_code(G, seed: int, device):
    z = torch.from_numpy(np.random.RandomState(seed).randn(1, G.z_dim)).float().to(device)
    c = label_from_yaw_pitch(0.0).to(device)
    with torch.no_grad():
        return G.mapping(z, c, truncation_psi=0.7)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", choices=("default", "official"), default="default")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--resolution", type=int, default=None,
                    help="density grid (default: 128 for default, the fast preset's; 256 for official)")
    ap.add_argument("--name", default=None)
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    default = load_generator("default", device=device)
    if args.config == "official":
        from psohead.networks.config import GeneratorConfig
        from psohead.networks.generator import TriGridGenerator

        torch.manual_seed(0)
        G = TriGridGenerator.from_config(GeneratorConfig.official()).eval().requires_grad_(False).to(device)
        subject = OfficialCostDefaultShape(G, default, head_code(default, 0, device))
    else:
        G = subject = default
    resolution = args.resolution or (256 if args.config == "official" else 128)
    options = MeshOptions(resolution=resolution)
    runs = []
    for k in range(args.repeats):
        ws = head_code(G, k, device)
        with tempfile.TemporaryDirectory() as tmp:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t = time.perf_counter()
            info = write_head_meshes(subject, ws, tmp, options, progress=False)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            info["seconds"]["total"] = round(time.perf_counter() - t, 3)
        runs.append(info)
        print(json.dumps(info["seconds"]), info["faces"], info["texture_size"], json.dumps(info["files"]), flush=True)
    later = runs[1:] or runs
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads"
    if device.type == "cuda":
        machine += ", " + torch.cuda.get_device_name(device)
    out = {"date": datetime.date.today().isoformat(), "command": "python " + " ".join(sys.argv), "machine": machine,
           "device": str(device), "config": args.config, "options": options.__dict__,
           "median_seconds_after_first": {k: float(np.median([r["seconds"][k] for r in later]))
                                          for k in later[0]["seconds"]},
           "runs": runs}
    name = args.name or f"mesh_speed_{args.config}_{device.type}"
    RESULTS.mkdir(exist_ok=True)
    write_json(RESULTS / f"{name}.json", out)
    print(json.dumps(out["median_seconds_after_first"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
