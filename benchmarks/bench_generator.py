"""Generator throughput: images/s of the FULL official PanoHead config (random weights) at 512².

Each variant = batch size x deterministic rendering x precision (fp32 / TF32 / bf16 autocast) x
torch.compile. Timing: warm-up calls, then ``--iters`` timed calls with CUDA synchronisation; peak
memory is ``torch.cuda.max_memory_allocated`` on CUDA and the process peak RSS on CPU.

    python benchmarks/bench_generator.py --device cuda --tf32 --amp bf16 --compile \
        --out benchmarks/results/bench_generator.json
    python benchmarks/bench_generator.py --device cpu --quick      # smoke test: batch 1, 1 call

Writes JSON (all numbers) and a Markdown table next to it (same name, .md).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

from psohead.camera import label_from_yaw_pitch
from psohead.networks.config import GeneratorConfig
from psohead.networks.generator import TriGridGenerator


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch", default="1,8", help="comma-separated batch sizes (default 1,8)")
    p.add_argument("--deterministic", default="both", choices=("both", "on", "off"),
                   help="renderer determinism switch (fixed jitter / importance draws)")
    p.add_argument("--tf32", action="store_true", help="also run with TF32 matmul/conv (CUDA)")
    p.add_argument("--amp", choices=("bf16",), default=None, help="also run under bf16 autocast")
    p.add_argument("--compile", action="store_true", help="also run torch.compile'd (fp32 and, if given, bf16)")
    p.add_argument("--warmup", type=int, default=None, help="warm-up calls (default 3 CUDA, 1 CPU)")
    p.add_argument("--iters", type=int, default=None, help="timed calls (default 10 CUDA, 2 CPU)")
    p.add_argument("--max-seconds", type=float, default=270.0,
                   help="skip the remaining variants once this much time has passed (default 270)")
    p.add_argument("--quick", action="store_true", help="batch 1, deterministic off, 0 warm-up, 1 call")
    p.add_argument("--out", default=None, help="JSON path (default benchmarks/results/bench_generator_<device>.json)")
    return p.parse_args(argv)


def variants(args) -> list[dict]:
    batches = [int(b) for b in args.batch.split(",")]
    dets = {"both": [False, True], "on": [True], "off": [False]}[args.deterministic]
    precisions = ["fp32"] + (["tf32"] if args.tf32 else []) + (["bf16"] if args.amp else [])
    out = [dict(batch=b, deterministic=d, precision=p, compile=False) for b in batches for d in dets for p in precisions]
    if args.compile:  # last (compiling is slow), and only deterministic, to stay within the time budget
        out += [dict(batch=b, deterministic=True, precision=p, compile=True)
                for p in ["fp32"] + (["bf16"] if args.amp else []) for b in batches]
    return out


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def run_variant(G, v: dict, device: torch.device, warmup: int, iters: int) -> dict:
    torch.backends.cuda.matmul.allow_tf32 = v["precision"] == "tf32"
    torch.backends.cudnn.allow_tf32 = v["precision"] == "tf32"
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    fn = torch.compile(G) if v["compile"] else G
    n = v["batch"]
    gen = torch.Generator(device="cpu").manual_seed(0)
    z = torch.randn(n, G.z_dim, generator=gen).to(device)
    c = label_from_yaw_pitch(torch.linspace(-1.0, 1.0, n), 0.0).to(device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=v["precision"] == "bf16")

    def call():
        with torch.no_grad(), autocast:
            return fn(z, c, truncation_psi=0.7, noise_mode="const", deterministic=v["deterministic"])["image"]

    t0 = time.perf_counter()
    for _ in range(warmup):
        call()
    sync(device)
    warm_s = time.perf_counter() - t0
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        img = call()
        sync(device)
        times.append(time.perf_counter() - t)
    if not torch.isfinite(img.float()).all():
        raise RuntimeError(f"non-finite output in variant {v}")
    total = sum(times)
    return dict(v, images_per_s=n * iters / total, ms_per_call_median=1000 * statistics.median(times),
                ms_per_call_min=1000 * min(times), warmup_calls=warmup, warmup_s=warm_s, timed_calls=iters,
                peak_memory_mib=peak_memory_mib(device), output_shape=list(img.shape))


def machine(device: torch.device) -> dict:
    info = dict(python=platform.python_version(), torch=torch.__version__, platform=platform.platform(),
                cpu=platform.processor() or platform.machine(), cpu_count=os.cpu_count(),
                torch_threads=torch.get_num_threads())
    if device.type == "cuda":
        info.update(gpu=torch.cuda.get_device_name(device), cuda=torch.version.cuda,
                    cudnn=torch.backends.cudnn.version())
    return info


def write_markdown(path: Path, result: dict) -> None:
    m = result["machine"]
    lines = [f"# Generator throughput ({result['device']})", "",
             f"Full official PanoHead generator ({result['parameters']:,} parameters, random weights), "
             f"512² output, 64² neural rendering, 48+48 samples per ray, truncation 0.7, noise const.", "",
             f"* machine: {m.get('gpu', m['cpu'])}; torch {m['torch']}"
             + (f", CUDA {m['cuda']}" if "cuda" in m else f", {m['torch_threads']} threads"),
             f"* date: {result['date']}", f"* command: `{result['command']}`", "",
             "| batch | deterministic | precision | compile | images/s | ms/call (median) | peak memory MiB |",
             "|---:|:---:|:---:|:---:|---:|---:|---:|"]
    for r in result["runs"]:
        lines.append(f"| {r['batch']} | {'on' if r['deterministic'] else 'off'} | {r['precision']} | "
                     f"{'yes' if r['compile'] else 'no'} | {r['images_per_s']:.2f} | {r['ms_per_call_median']:.1f} | "
                     f"{r['peak_memory_mib']:.0f} |")
    for s in result["skipped"]:
        lines.append(f"| {s['batch']} | {'on' if s['deterministic'] else 'off'} | {s['precision']} | "
                     f"{'yes' if s['compile'] else 'no'} | skipped: {s['reason']} | | |")
    path.write_text("\n".join(lines) + "\n")


def main(argv=None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but CUDA is not available", file=sys.stderr)
        return 1
    if args.quick:
        args.batch, args.deterministic, args.tf32, args.amp, args.compile = "1", "off", False, None, False
        args.warmup, args.iters = 0, 1
    warmup = args.warmup if args.warmup is not None else (3 if device.type == "cuda" else 1)
    iters = args.iters if args.iters is not None else (10 if device.type == "cuda" else 2)
    out = Path(args.out or f"benchmarks/results/bench_generator_{device.type}.json")

    start = time.perf_counter()
    torch.manual_seed(0)
    G = TriGridGenerator.from_config(GeneratorConfig.official()).eval().requires_grad_(False).to(device)
    params = sum(p.numel() for p in G.parameters())
    runs, skipped = [], []
    for v in variants(args):
        elapsed = time.perf_counter() - start
        if elapsed > args.max_seconds:
            skipped.append(dict(v, reason=f"time budget ({args.max_seconds:.0f} s) used"))
            continue
        try:
            r = run_variant(G, v, device, warmup, iters)
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            skipped.append(dict(v, reason="out of memory"))
            continue
        except Exception as err:  # e.g. torch.compile unsupported here: record and go on
            skipped.append(dict(v, reason=f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"))
            continue
        runs.append(r)
        print(f"batch {r['batch']} det={'on' if r['deterministic'] else 'off'} {r['precision']}"
              f"{' compiled' if r['compile'] else ''}: {r['images_per_s']:.2f} img/s, "
              f"{r['ms_per_call_median']:.1f} ms/call, peak {r['peak_memory_mib']:.0f} MiB", flush=True)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False

    result = dict(benchmark="bench_generator", device=str(device), parameters=params,
                  date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                  command="python " + " ".join([Path(sys.argv[0]).as_posix()] + (argv or sys.argv[1:])),
                  machine=machine(device), total_s=time.perf_counter() - start, runs=runs, skipped=skipped)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=1) + "\n")
    os.replace(tmp, out)
    write_markdown(out.with_suffix(".md"), result)
    print(f"wrote {out} and {out.with_suffix('.md')} ({result['total_s']:.0f} s)")
    return 0 if runs else 1


if __name__ == "__main__":
    sys.exit(main())
