"""`psohead train` as users start it: two gloo processes under torchrun, and a SIGKILLed run resumed.

Every run is a subprocess with one intra-op thread (as torchrun gives each rank): on the shared
2-core machine two threads make a tiny step about 2x slower and the first one up to 30x, and the
same thread count keeps runs comparable bit for bit.
"""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import REPO
from psohead.atomic import MARKER, partial_path
from psohead.networks.config import DiscriminatorConfig, GeneratorConfig
from psohead.training.loop import build_discriminator, build_generator
from psohead.training.snapshot import LATEST, load_snapshot
from test_training_loop import _dataset

PROBE = REPO / "tests" / "train_probe.py"
NETS = ("G", "G_ema", "D")
RUN_FILES = {MARKER, "config.json", "log.jsonl", LATEST}  # + fakes<kimg>.png grids


def _env() -> dict:
    path = os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}


def _train_args(data, out, kimg: float, *extra) -> list[str]:
    # One step per tick (tiny preset: batch 4, a snapshot every tick); a grid only at the end.
    return ["--preset", "tiny", "--data", str(data), "--out", str(out), "--device", "cpu", "--workers", "0",
            "--no-progress", "--kimg", str(kimg), "--tick-kimg", "0.004", "--image-ticks", "1000", *extra]


def _run(cmd: list[str]) -> list[dict]:
    """Run to the end; the summaries the processes printed (one per rank)."""
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def _log(run) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def _assert_clean_run_folder(run) -> None:
    names = {p.name for p in run.iterdir()}
    grids = {n for n in names if n.startswith("fakes") and n.endswith(".png")}
    assert grids and names - grids == RUN_FILES, sorted(names)  # nothing hidden, temp or partial


def test_two_gloo_processes_train_in_lockstep(tmp_path):
    """torchrun, 2 CPU ranks, 2 steps: rank 0 alone writes the run; both end with identical
    networks; progress matches a 1-process run of the same total batch."""
    data = _dataset(tmp_path / "ds")
    args = _train_args(data, tmp_path / "ddp", 0.008, "--batch-gpu", "2")
    summaries = _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                      str(PROBE), str(tmp_path / "ranks"), *args])
    assert len(summaries) == 2 and all(s["complete"] and s["kimg"] == pytest.approx(0.008) for s in summaries)

    ranks = [torch.load(tmp_path / "ranks" / f"rank{r}.pt") for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2]
    assert ranks[0]["writes"] == {"snapshots": 2, "grids": 1}  # one snapshot per tick, a grid at the end
    assert ranks[1]["writes"] == {"snapshots": 0, "grids": 0}
    run = tmp_path / "ddp"
    _assert_clean_run_folder(run)
    log = _log(run)
    assert [r["kimg"] for r in log] == [0.004, 0.008]  # one record per tick: rank 1 appended nothing
    assert all(torch.isfinite(torch.tensor(v)) for r in log for k, v in r.items() if k.startswith("loss/"))

    snap = load_snapshot(run / LATEST)
    for net in NETS:  # parameters and buffers (w_avg included) bit-identical, and what rank 0 saved
        assert ranks[0][net].keys() == ranks[1][net].keys() == snap[net].keys()
        for name, t in ranks[0][net].items():
            assert torch.equal(t, ranks[1][net][name]), (net, name)
            assert torch.equal(t, snap[net][name]), (net, name)
    # Adam step counts from the schedule: 2 G steps; 2 D steps + the lazy R1 step at minibatch 0,
    # which skips D's output bias (a constant offset does not change the input gradient R1 sees).
    assert {float(s["step"]) for s in snap["opt_G"]["state"].values()} == {2.0}
    d_names = [n for n, _ in build_discriminator(DiscriminatorConfig.from_dict(snap["D_config"])).named_parameters()]
    d_steps = {d_names[i]: float(s["step"]) for i, s in snap["opt_D"]["state"].items()}
    assert d_steps == {n: 2.0 if n == "b4.out.bias" else 3.0 for n in d_names}
    assert len(snap["rng"]) == 2 and not torch.equal(snap["rng"][0]["torch"], snap["rng"][1]["torch"])

    # One process, same total batch: same progress and schedule, its own random streams.
    _run([sys.executable, str(PROBE), str(tmp_path / "single"), *_train_args(data, tmp_path / "one", 0.008,
                                                                               "--batch-gpu", "2")])
    one = load_snapshot(tmp_path / "one" / LATEST)
    for progress in (one["progress"], snap["progress"]):
        assert {k: progress[k] for k in ("cur_nimg", "cur_tick", "batch_idx")} == {"cur_nimg": 8, "cur_tick": 2,
                                                                                  "batch_idx": 2}
    assert len(one["rng"]) == 1 and {**one["options"], "out": ""} == {**snap["options"], "out": ""}
    keys = ("kimg", "blur_sigma", "gpc_prob", "density_noise", "rendering_resolution")
    assert [{k: r[k] for k in keys} for r in _log(tmp_path / "one")] == [{k: r[k] for k in keys} for r in log]


def test_sigkilled_run_resumes_from_its_snapshot(tmp_path):
    """SIGKILL after the first snapshot; `--resume RUN` continues from the snapshot's kimg to the
    end and ends with the weights of an uninterrupted run; a killed write's temp file is removed."""
    data = _dataset(tmp_path / "ds")
    run, target = tmp_path / "run", 0.012
    cmd = [sys.executable, "-m", "psohead", "train"]
    with open(tmp_path / "stderr.txt", "w") as err:
        proc = subprocess.Popen(cmd + _train_args(data, run, target), env=_env(), stdout=subprocess.DEVNULL,
                                stderr=err)
    try:
        deadline = time.monotonic() + 300
        while not (run / LATEST).is_file():
            assert proc.poll() is None, (tmp_path / "stderr.txt").read_text()[-2000:]
            assert time.monotonic() < deadline, "no snapshot within 300 s"
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    kept = load_snapshot(run / LATEST)["progress"]["cur_nimg"]
    assert 0 < kept < target * 1000
    n_logged = len(_log(run))
    # The kill cannot be timed to land inside a write: leave what such a kill leaves behind.
    (run / f".{LATEST}.tmp-{proc.pid}").write_bytes(b"half a snapshot")
    partial_path(run / "fakes000004.png").write_bytes(b"half a grid")

    (summary,) = _run(cmd + ["--resume", str(run)])  # data, options, device: from the snapshot
    assert summary["complete"] and summary["kimg"] == pytest.approx(target)
    resumed = [r["kimg"] for r in _log(run)[n_logged:]]
    expect = [round((kept + 4 * k) / 1000, 3) for k in range(1, round((target * 1000 - kept) / 4) + 1)]
    assert resumed == expect  # picked up after the snapshot, not from 0
    _assert_clean_run_folder(run)

    final = load_snapshot(run / LATEST)
    assert final["progress"]["cur_nimg"] == 12 and final["progress"]["batch_idx"] == 3
    G = build_generator(GeneratorConfig.from_dict(final["G_config"]))
    D = build_discriminator(DiscriminatorConfig.from_dict(final["D_config"]))
    G.load_state_dict(final["G_ema"])  # strict: the snapshot is complete
    D.load_state_dict(final["D"])

    _run(cmd + _train_args(data, tmp_path / "straight", target))
    straight = load_snapshot(tmp_path / "straight" / LATEST)
    for net in NETS:
        for name, t in straight[net].items():
            assert torch.equal(t, final[net][name]), (net, name)
