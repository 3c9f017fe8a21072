"""Images per second of the procedural head renderer (psohead.synth), self-contained.

    python benchmarks/bench_synth.py --device cuda            # 128^2 and 512^2, < 2 min on a GPU
    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_synth.py --device cpu --threads 2 --count 64

Renders random identities/cameras/scenes exactly as ``psohead synth dataset`` does (no PNG
encoding) and writes benchmarks/results/bench_synth_<device>.json/.md.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

from psohead.export.atomic import atomic_path
from psohead.synth.dataset import _records, default_batch
from psohead.synth.params import SCENE_KEYS, stack
from psohead.synth.render import RenderConfig, render


def _sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def bench(res: int, device: str, count: int, batch: int) -> dict:
    cfg = RenderConfig(resolution=res)
    heads, scenes, labels = _records(0, list(range(batch)), "panohead")
    args = (labels.to(device), stack(heads, device=device), stack(scenes, SCENE_KEYS, device=device), cfg)
    render(*args)  # warm-up (texture upload, kernels)
    _sync(device)
    n, t0 = 0, time.perf_counter()
    while n < count:
        render(*args)
        n += batch
    _sync(device)
    dt = time.perf_counter() - t0
    return {"res": res, "batch": batch, "images": n, "seconds": round(dt, 3), "img_per_s": round(n / dt, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--res", type=int, nargs="+", default=[128, 512])
    ap.add_argument("--count", type=int, default=None, help="images per resolution (default: 2048 GPU, 8 CPU)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    gpu = args.device.startswith("cuda")
    load_before = os.getloadavg()[0]  # the CPU is shared: say how busy it was
    rows = []
    for res in args.res:
        batch = default_batch(res, args.device)
        count = args.count or max(batch, int((2048 if gpu else 8) * (128 / res) ** 2))
        rows.append(bench(res, args.device, count, min(batch, count)))
        print(json.dumps(rows[-1]), flush=True)
    machine = torch.cuda.get_device_name() if gpu else f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    load = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    wait = os.environ.get("OMP_WAIT_POLICY")  # spinning OpenMP workers collapse on a busy CPU (docs/synth.md)
    prefix = [f"OMP_WAIT_POLICY={wait}"] if wait else []
    command = " ".join(prefix + ["python", "benchmarks/bench_synth.py", *sys.argv[1:]])
    result = {"device": args.device, "machine": machine, "torch": torch.__version__,
              "date": datetime.date.today().isoformat(), "command": command, "load_1min_before_after": load,
              "results": rows}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = f"bench_synth_{'cuda' if gpu else 'cpu'}"
    with atomic_path(out / f"{name}.json") as tmp:
        tmp.write_text(json.dumps(result, indent=1))
    lines = [f"# bench_synth ({machine}, {result['date']})", "",
             f"Command: `{command}`; 1-minute load average {load[0]} before, {load[1]} after.", "",
             "| resolution | batch | images | seconds | images/s |", "|---|---|---|---|---|"]
    lines += [f"| {r['res']}² | {r['batch']} | {r['images']} | {r['seconds']} | {r['img_per_s']} |" for r in rows]
    with atomic_path(out / f"{name}.md") as tmp:
        tmp.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
