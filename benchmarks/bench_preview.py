"""Preview speed: seconds per photo of ``--preset preview`` (the encoder's latent and its refining stage-1
steps) end to end through one ``Reconstructor``: the crop and its label in, every preview output
written (views, turntable, report), as a person waiting for a first look would see it.

    python benchmarks/bench_preview.py --device cuda --network default official
    python benchmarks/bench_preview.py --device cpu --network default

``default`` is the bundled model with its bundled encoder; ``official`` the full official
generator config with random weights and a random encoder of the official input size (timing
only: what it draws is noise). The photo is the network's own frontal render, given as an aligned
crop with its label, so no face preprocessing runs (it is the same for every preset). One warm-up
call, then ``--repeats`` timed calls; the median is reported, with and without writing outputs.
Results: benchmarks/results/bench_preview_<device>.{json,md}.
"""
from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from psohead.api import generator_digest, load_generator, save_encoder
from psohead.atomic import atomic_path
from psohead.camera import HEAD_LOOKAT, label_from_yaw_pitch
from psohead.io.images import to_uint8
from psohead.inversion.pipeline import Reconstructor
from psohead.inversion.presets import parse_assignments
from psohead.networks.config import GeneratorConfig
from psohead.networks.encoder import LatentEncoder
from psohead.networks.generator import TriGridGenerator

RESULTS = Path(__file__).resolve().parent / "results"
OFFICIAL_ENCODER_INPUT = 256  # the encoder's input side for a 512² generator


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def network_and_encoder(name: str, device: torch.device, work: Path) -> tuple[torch.nn.Module, str]:
    """(generator, encoder file): the bundled pair, or a random official-config pair."""
    if name == "default":
        return load_generator("default", device=device), "default"
    G = TriGridGenerator.from_config(GeneratorConfig.official()).to(device).eval().requires_grad_(False)
    E = LatentEncoder(num_ws=G.num_ws, w_dim=G.w_dim, img_resolution=OFFICIAL_ENCODER_INPUT)
    path = work / "official_encoder.safetensors"
    save_encoder(E, path, generator_digest(G), half=False)
    return G, str(path)


def own_render(G, device: torch.device) -> tuple[np.ndarray, torch.Tensor]:
    """A frontal render of the generator's mean-ish head (uint8 [H,W,3]) and its label [25]."""
    label = label_from_yaw_pitch(0.0, 0.05, lookat=HEAD_LOOKAT).to(device)
    with torch.no_grad():
        z = torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(3)).to(device)
        image = G(z, label, truncation_psi=0.7, noise_mode="const")["image"]
    return to_uint8(image)[0], label[0].cpu()


def time_calls(fn, repeats: int, device: torch.device) -> list[float]:
    fn()  # warm-up: kernels chosen, caches filled
    times = []
    for _ in range(repeats):
        sync(device)
        t = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t)
    return times


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--network", nargs="+", default=["default"], choices=("default", "official"))
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--tf32", action="store_true", help="TF32 matmul/conv on CUDA")
    ap.add_argument("--no-outputs", action="store_true", help="time the reconstruction alone, write nothing "
                                                                 "(where no video encoder is installed)")
    ap.add_argument("--out", type=Path, default=None, help="JSON path (default results/bench_preview_<device>.json)")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                    help="change a field of the preview preset (repeatable)")
    args = ap.parse_args(argv)
    overrides = parse_assignments(args.set)
    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = args.tf32
    machine = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name in args.network:
            G, encoder = network_and_encoder(name, device, work)
            R = Reconstructor(G, device=device, preset="preview", encoder=encoder)
            image, label = own_render(G, device)
            bare = time_calls(lambda: R(image, label=label, progress=False, overrides=overrides), args.repeats,
                              device)
            written = [float("nan")]
            if not args.no_outputs:
                outs = iter(range(10 ** 6))
                written = time_calls(lambda: R(image, work / f"out{next(outs)}", label=label, progress=False,
                                               overrides=overrides), args.repeats, device)
            rows.append({"network": name, "resolution": int(G.img_resolution),
                         "inversion_s": statistics.median(bare), "with_outputs_s": statistics.median(written),
                         "inversion_runs": bare, "with_outputs_runs": written})
            print(f"{name}: preview {rows[-1]['inversion_s']:.3f} s, with every output written "
                  f"{rows[-1]['with_outputs_s']:.3f} s", flush=True)
    result = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
              "machine": machine, "torch": torch.__version__, "tf32": args.tf32,
              "command": "python benchmarks/bench_preview.py " + " ".join(argv or sys.argv[1:]), "rows": rows}
    out = args.out or RESULTS / f"bench_preview_{device.type}.json"
    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps(result, indent=1) + "\n")
    lines = [f"# Preview speed ({device.type})", "", f"* machine: {machine}; torch {torch.__version__}; "
             f"tf32 {args.tf32}", f"* date: {result['date']}", f"* command: `{result['command']}`", "",
             "| network | output | preview, s per photo (median) | with every preview output written, s |",
             "|---|---:|---:|---:|"]
    lines += [f"| {r['network']} | {r['resolution']}² | {r['inversion_s']:.3f} | "
              f"{'–' if r['with_outputs_s'] != r['with_outputs_s'] else format(r['with_outputs_s'], '.3f')} |"
              for r in rows]
    with atomic_path(out.with_suffix(".md")) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
