"""Inversion speed: seconds per stage-1 / stage-2 step, per photo at a preset, and peak memory.

Self-contained (random weights, the target is a render of the generator itself), so it needs no
checkpoint or data. The lead runs it on the GPU:

    python benchmarks/bench_inversion.py --device cuda --config official --precision fp32 tf32 bf16

On CPU use ``--config small``. Each (precision) row times ``--steps`` steps of each stage after
``--warmup`` untimed steps and extrapolates to the preset's step counts (official: 500 + 500).
Results go to benchmarks/results/bench_inversion.{json,md}. Runs in well under 5 minutes.

End to end (``--photo``): one whole ``psohead reconstruct`` of a photo (preprocessing, both
stages, every output) with a random network of the ``default`` training preset (or ``--network``),
per-stage seconds, CPU seconds and the machine load before/after, e.g. on the 2-core CPU:

    python benchmarks/bench_inversion.py --photo examples/man.jpg --preset fast --device cpu
    # -> benchmarks/results/bench_inversion_cpu.{json,md}

Loading once (``--reuse K``): K photos through one ``Reconstructor`` against K one-shot
``psohead.reconstruct`` calls (what ``reconstruct-batch`` workers did before they kept theirs);
the per-photo difference is what loading once saves:

    python benchmarks/bench_inversion.py --reuse 3 --photo examples/man.jpg --network default \
        --set stage1.steps=5 --set stage2.steps=5 --device cpu   # -> results/bench_reuse_cpu.{json,md}
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

from psohead.camera import back_label, label_from_yaw_pitch
from psohead.inversion.losses import build_perceptual
from psohead.inversion.pipeline import Reconstructor, reconstruct
from psohead.inversion.pivotal import PivotalConfig, tune
from psohead.inversion.presets import parse_assignments, resolve_preset
from psohead.inversion.projector import ProjectorConfig, latent_stats, project
from psohead.inversion.targets import BACK_WEIGHT, TargetView
from psohead.networks.config import GeneratorConfig
from psohead.networks.generator import TriGridGenerator

RESULTS = Path(__file__).resolve().parent / "results"


def make_generator(config: str, device) -> TriGridGenerator:
    cfg = GeneratorConfig.official() if config == "official" else GeneratorConfig.fixture_small()
    torch.manual_seed(0)
    return TriGridGenerator.from_config(cfg).to(device).eval()


RENDER = {"ray_start": 2.35}  # what inversion renders with


def sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def time_stage(fn, steps: int, warmup: int, device) -> float:
    """Seconds per step: a run of ``warmup`` steps and one of ``warmup + steps``; the difference
    leaves out each run's fixed costs (copying G, graph capture, first-call autotuning)."""
    def timed(n):
        sync(device)
        t = time.perf_counter()
        fn(n)
        sync(device)
        return time.perf_counter() - t
    fn(max(warmup, 1))  # process-level warm-up (CUDA context, kernels loaded)
    return (timed(warmup + steps) - timed(warmup)) / steps


def bench(G, device, precision: str, steps: int, warmup: int, perceptual: str, deterministic: bool,
          graphs: bool = True) -> dict:
    label = label_from_yaw_pitch(0.0).to(device)
    with torch.no_grad():
        z = torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(1)).to(device)
        image = G.synthesis(G.mapping(z, label), label, noise_mode="const")["image"].float()
    stats = latent_stats(G, 1000)
    back = back_label(label.cpu())
    views = [TargetView("front", image.cpu(), label.cpu(), 1.0),
             TargetView("back", image.flip(-1).cpu(), back, BACK_WEIGHT, None, "prior")]
    loss = build_perceptual(perceptual).to(device)
    if torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def stage1(n):
        project(G, views, loss, stats, ProjectorConfig(num_steps=n, deterministic=deterministic, cuda_graphs=graphs,
                                                       render_overrides=RENDER),
                progress=False, precision=precision)

    def stage2(n):
        tune(G, stats.w_avg.repeat(1, G.num_ws, 1), views, loss,
             PivotalConfig(num_steps=n, deterministic=deterministic, cuda_graphs=graphs, render_overrides=RENDER),
             progress=False, precision=precision)

    s1 = time_stage(stage1, steps, warmup, device)
    s2 = time_stage(stage2, steps, warmup, device)
    peak = torch.cuda.max_memory_allocated(device) / 2 ** 30 if torch.device(device).type == "cuda" else None
    return {"precision": precision, "cuda_graphs": graphs and torch.device(device).type == "cuda",
            "stage1_s_per_step": s1, "stage2_s_per_step": s2, "peak_mem_gib": peak}


def random_network(path: Path, config: str) -> Path:
    """A random network, fp16: the official config or the ``default`` training preset's (the bundled
    model's architecture)."""
    from psohead.checkpoint.safetensors_io import save_network
    from psohead.training.presets import preset as training_preset

    torch.manual_seed(0)
    cfg = GeneratorConfig.official() if config == "official" else training_preset("default")[0]
    save_network(TriGridGenerator.from_config(cfg), path, dtype=torch.float16)
    return path


def machine_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()


def _load() -> float:
    return os.getloadavg()[0]


def bench_photo(args) -> int:
    """One end-to-end reconstruction; per-stage seconds from its reconstruction.json."""
    with tempfile.TemporaryDirectory() as tmp:
        network = Path(args.network) if args.network else random_network(Path(tmp) / "G.safetensors", args.config)
        load_before = _load()
        dev = torch.device(args.device)
        cuda = dev.type == "cuda"
        if cuda:
            torch.cuda.reset_peak_memory_stats(args.device)
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        t = time.perf_counter()
        preset = resolve_preset(args.preset, parse_assignments(args.set), runtime_cuda_graphs=args.cuda_graphs[0] == "on")
        reconstruct(args.photo, Path(tmp) / "out", network=str(network), preset=preset, device=args.device,
                    progress=False)
        wall = time.perf_counter() - t
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        peak_gib = torch.cuda.max_memory_allocated(args.device) / 2 ** 30 if cuda else None
        summary = json.loads((Path(tmp) / "out" / "reconstruction.json").read_text())
    timings = {k: round(v, 2) for k, v in summary["timings"].items()}
    preset = summary["settings"]["preset"]
    row = {"photo": str(args.photo), "network": args.network or f"random {args.config}-config network",
           "preset": preset["name"], "steps": [preset["stage1"]["steps"], preset["stage2"]["steps"]],
           "s_per_step": [round(timings["stage1"] / max(preset["stage1"]["steps"], 1), 3),
                          round(timings["stage2"] / max(preset["stage2"]["steps"], 1), 3)],
           "total_s": round(wall, 1),
           "cpu_s": round(cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime, 1),
           "load_before": round(load_before, 2), "load_after": round(_load(), 2),
           "threads": torch.get_num_threads(), "timings": timings,
           "peak_gpu_gib": None if peak_gib is None else round(peak_gib, 2),
           "peak_rss_gib": round(cpu1.ru_maxrss / 2 ** 20, 2),
           "cuda_graphs": summary["settings"].get("cuda_graphs_used")}
    row.update(tag=args.tag, date=datetime.date.today().isoformat(), command="python " + " ".join(sys.argv))
    print(json.dumps(row), flush=True)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{args.name}.json"
    result = json.loads(path.read_text()) if path.is_file() else {"rows": {}}
    result.update(machine=machine_name(dev), device=dev.type, cores=os.cpu_count(), torch=torch.__version__)
    result["rows"][args.tag] = row
    path.write_text(json.dumps(result, indent=1) + "\n")
    write_photo_table(result, RESULTS / f"{args.name}.md")
    return 0


def bench_reuse(args) -> int:
    """Seconds per photo: K photos through one Reconstructor, and K one-shot reconstruct calls."""
    with tempfile.TemporaryDirectory() as tmp:
        network = args.network or str(random_network(Path(tmp) / "G.safetensors", args.config))
        preset = resolve_preset(args.preset, parse_assignments(args.set))
        runs = {}
        for mode in ("one-shot", "reused"):
            sync(args.device)
            t = time.perf_counter()
            pipeline = Reconstructor(network, device=args.device, preset=preset) if mode == "reused" else None
            for k in range(args.reuse):
                out = Path(tmp) / f"{mode}{k}"
                if pipeline is None:
                    reconstruct(args.photo, out, network=network, device=args.device, preset=preset, progress=False)
                else:
                    pipeline(args.photo, out, progress=False)
            sync(args.device)
            runs[mode] = (time.perf_counter() - t) / args.reuse
    dev = torch.device(args.device)
    row = {"photo": str(args.photo), "network": args.network or f"random {args.config}-config network",
           "photos": args.reuse, "preset": preset.name, "steps": [preset.stage1.steps, preset.stage2.steps],
           "one_shot_s_per_photo": round(runs["one-shot"], 2), "reused_s_per_photo": round(runs["reused"], 2),
           "saved_s_per_photo": round(runs["one-shot"] - runs["reused"], 2), "machine": machine_name(dev),
           "date": datetime.date.today().isoformat(), "command": "python " + " ".join(sys.argv)}
    print(json.dumps(row), flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(row, indent=1) + "\n")
    (RESULTS / f"{args.name}.md").write_text(
        f"# Loading once: {args.reuse} photos, {row['network']}, {dev.type}\n\n"
        f"{row['machine']}; {row['date']}; `{row['command']}`\n\n"
        "| one-shot reconstruct s/photo | one Reconstructor s/photo | saved s/photo |\n|---|---|---|\n"
        f"| {row['one_shot_s_per_photo']} | {row['reused_s_per_photo']} | {row['saved_s_per_photo']} |\n")
    return 0


PHOTO_STAGES = ("preprocess", "setup", "stage1", "pseudo_back", "stage2", "inversion_total", "write_views",
                "write_video", "write_mesh", "write_save")


def _peak(row: dict) -> str:
    """GPU memory (allocator peak) on CUDA, else the process's peak resident set; - if not recorded."""
    value = row.get("peak_gpu_gib") or row.get("peak_rss_gib")
    return "-" if value is None else f"{value:.2f}"


def write_photo_table(result: dict, path: Path) -> None:
    """The Markdown table of end-to-end rows (``result`` as bench_photo stores it)."""
    device = result.get("device", "cpu")
    lines = [f"# One photo end to end on {device.upper()} (`psohead reconstruct`, every output)", "",
             f"Machine: {result['machine']}, {result['cores']} cores; torch {result['torch']}. Wall seconds per "
             "stage from reconstruction.json (inversion_total = setup + both stages + pseudo back); peak = GPU "
             "allocator peak on CUDA, peak resident memory of the process on CPU; load = "
             "1-minute load average before / after (other processes share the cores: wall times scale with it).",
             "", "| run | date | preset | network | total s | CPU s | load | peak GiB | s/step (1, 2) | "
             + " | ".join(PHOTO_STAGES) + " |", "|" + "---|" * (9 + len(PHOTO_STAGES))]
    for tag, r in result["rows"].items():
        lines.append(f"| {tag} | {r['date']} | {r['preset']} {r['steps'][0]}+{r['steps'][1]} | {r['network']} | "
                     f"{r['total_s']} | {r['cpu_s']} | {r['load_before']} / {r['load_after']} | {_peak(r)} | "
                     f"{r['s_per_step'][0]}, {r['s_per_step'][1]} | "
                     + " | ".join(f"{r['timings'][k]:.1f}" if k in r["timings"] else "-" for k in PHOTO_STAGES)
                     + " |")
    lines += ["", "Commands: " + "; ".join(f"{tag}: `{r['command']}`" for tag, r in result["rows"].items())]
    path.write_text("\n".join(lines) + "\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--config", choices=("official", "small", "default"), default=None,
                    help="random network: official (step timing default), small, or default (the bundled "
                         "model's architecture; the --photo default)")
    ap.add_argument("--precision", nargs="+", default=["fp32"], choices=("fp32", "tf32", "bf16"))
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--perceptual", default="msssim", choices=("msssim", "none"))
    ap.add_argument("--deterministic", action="store_true", help="fixed ray samples (the fast preset's setting)")
    ap.add_argument("--cuda-graphs", nargs="+", default=["on"], choices=("on", "off"),
                    help="replay the steps as CUDA graphs (rows for each; --photo takes the first)")
    ap.add_argument("--preset", default=None, help="preset whose step counts give the per-photo time "
                                                   "(default: official; with --photo: auto)")
    ap.add_argument("--photo", default=None, help="time one whole reconstruction of this photo instead")
    ap.add_argument("--network", default=None, help="with --photo: network file (default: a random "
                                                    "network of the default training preset)")
    ap.add_argument("--tag", default="current", help="with --photo: row name in the results (e.g. before / after)")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                    help="with --photo: change a preset field, as on psohead reconstruct (repeatable)")
    ap.add_argument("--reuse", type=int, default=0, metavar="K",
                    help="with --photo: K photos through one Reconstructor against K one-shot reconstructs")
    ap.add_argument("--name", default=None, help="results file name (default bench_inversion, with --photo "
                                                 "bench_inversion_<device type>)")
    args = ap.parse_args(argv)
    if args.photo:
        args.preset = args.preset or "auto"
        args.config = args.config or "default"
        if args.config == "small":
            ap.error("--photo takes --config official or default")
        if args.reuse:
            args.name = args.name or f"bench_reuse_{torch.device(args.device).type}"
            return bench_reuse(args)
        args.name = args.name or f"bench_inversion_{torch.device(args.device).type}"
        return bench_photo(args)
    args.preset = args.preset or "official"
    args.config = args.config or "official"
    if args.config == "default":
        ap.error("step timing takes --config official or small")
    args.name = args.name or "bench_inversion"

    G = make_generator(args.config, args.device)
    preset = resolve_preset(args.preset)
    rows = []
    for precision, graphs in ((p, g) for p in args.precision for g in args.cuda_graphs):
        row = bench(G, args.device, precision, args.steps, args.warmup, args.perceptual, args.deterministic,
                    graphs == "on")
        row["per_photo_s"] = (row["stage1_s_per_step"] * preset.stage1.steps
                              + row["stage2_s_per_step"] * preset.stage2.steps)
        rows.append(row)
        print(json.dumps(row), flush=True)
    machine = machine_name(torch.device(args.device))
    result = {"date": datetime.date.today().isoformat(), "machine": machine, "torch": torch.__version__,
              "command": "python " + " ".join(sys.argv), "config": args.config, "preset": preset.to_dict(),
              "perceptual": args.perceptual, "views": 2, "rows": rows}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = [f"# Inversion speed ({args.config} config, random weights, front + back view)", "",
             f"Machine: {machine}; torch {torch.__version__}; {result['date']}; perceptual {args.perceptual}",
             f"Command: `{result['command']}`", "",
             f"| precision | CUDA graphs | stage 1 s/step | stage 2 s/step | per photo ({preset.stage1.steps}+"
             f"{preset.stage2.steps}) s | peak GiB |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        peak = "-" if r["peak_mem_gib"] is None else f"{r['peak_mem_gib']:.2f}"
        graphs = "on" if r["cuda_graphs"] else "off"
        lines.append(f"| {r['precision']} | {graphs} | {r['stage1_s_per_step']:.4f} | {r['stage2_s_per_step']:.4f} | "
                     f"{r['per_photo_s']:.1f} | {peak} |")
    (RESULTS / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
