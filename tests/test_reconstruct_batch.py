"""reconstruct-batch: claims, each photo once over 2 CPU workers, rerun skips, killed run resumes."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from psohead.errors import InputError
from psohead.inversion.batch import LOG_NAME, SUMMARY_NAME, Claims, collect_photos, reconstruct_batch
from psohead.inversion.presets import Outputs, Preset, Rays, Stage1, Stage2

NAMES = ["a", "b", "c", "d"]
# The cheapest complete run: 1 + 1 steps, 2 video frames, a 16^3 mesh grid.
FAST = dict(stage1_steps=1, stage2_steps=1, back="none")
OVERRIDES = {"outputs.video_frames": 2, "outputs.mesh_resolution": 16}
PRESET = Preset("test", Stage1(steps=1, w_avg_samples=200), Stage2(steps=1), Rays(deterministic=True),
                outputs=Outputs(video_frames=2, video_fps=2, mesh_resolution=16, render_batch=2))


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Four aligned crops of random tiny-G heads (labels in a dataset.json) and the network file."""
    from inversion_tiny import rendered_target, tiny_generator

    from psohead.checkpoint.safetensors_io import save_network

    root = tmp_path_factory.mktemp("batch")
    G = tiny_generator()
    net = root / "tiny.safetensors"
    save_network(G, net)
    folder = root / "photos"
    folder.mkdir()
    labels = []
    for i, name in enumerate(NAMES):
        image, label, _ = rendered_target(G, seed=i + 1)
        arr = ((image[0].permute(1, 2, 0).clamp(-1, 1) + 1) * 127.5).round().byte().numpy()
        Image.fromarray(arr).save(folder / f"{name}.png")
        labels.append([f"{name}.png", label[0].tolist()])
    (folder / "dataset.json").write_text(json.dumps({"labels": labels}))
    return folder, net


def _events(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / LOG_NAME).read_text().splitlines()]


def _done_counts(out: Path) -> dict[str, int]:
    counts = {n: 0 for n in NAMES}
    for e in _events(out):
        if e["event"] == "done":
            counts[e["photo"]] += 1
    return counts


def test_claims_are_exclusive_released_by_close_and_failed_ones_skipped(tmp_path):
    a, b = Claims(tmp_path, "run1"), Claims(tmp_path, "run1")
    fd = a.acquire("x", {"pid": 1})
    assert fd is not None and b.acquire("x", {"pid": 2}) is None  # held: nobody else gets it
    os.close(fd)  # what the kernel does when the holder dies, even on SIGKILL
    fd = b.acquire("x", {"pid": 2})
    assert fd is not None
    b.fail(fd, {"error": "boom"})
    assert a.acquire("x", {}) is None  # failed in this run: not retried by this run's workers
    fd = Claims(tmp_path, "run2").acquire("x", {})  # a later run retries it
    assert fd is not None
    Claims(tmp_path, "run2").release("x", fd)
    assert not (tmp_path / ".claims" / "x").exists()


def test_collect_photos_and_bad_options(photos, tmp_path):
    folder, net = photos
    assert [j.name for j in collect_photos([folder])] == NAMES  # dataset.json is not an image
    (tmp_path / "a.jpg").write_bytes(b"")
    with pytest.raises(InputError, match="both write"):
        collect_photos([folder, tmp_path / "a.jpg"])
    with pytest.raises(InputError, match="not found"):
        collect_photos([tmp_path / "missing"])
    with pytest.raises(InputError, match="--back"):
        reconstruct_batch([folder], tmp_path / "out", devices="cpu", network=net, back=str(folder / "a.png"))
    with pytest.raises(InputError, match="per-photo"):
        reconstruct_batch([folder], tmp_path / "out", devices="cpu", network=net, label=[0.0] * 25)
    assert not (tmp_path / "out").exists()


def test_two_workers_do_each_photo_once_and_rerun_does_nothing(photos, tmp_path):
    folder, net = photos
    out = tmp_path / "out"
    # One photo cannot be reconstructed: it is recorded and the others still get done.
    bad = tmp_path / "broken.png"
    bad.write_text("not an image")
    res = reconstruct_batch([folder, bad], out, devices="cpu,cpu", preset=PRESET, network=str(net),
                            progress=False, **FAST)
    assert res.devices == ["cpu", "cpu"]
    assert {n: p["status"] for n, p in res.photos.items()} == {**{n: "done" for n in NAMES}, "broken": "failed"}
    assert "not a readable image" in res.photos["broken"]["error"]
    assert _done_counts(out) == {n: 1 for n in NAMES}
    for n in NAMES:
        assert (out / n / "reconstruction.json").is_file() and (out / n / "turntable.mp4").is_file()
    summary = json.loads((out / SUMMARY_NAME).read_text())
    assert summary["counts"] == {"done": 4, "failed": 1} and summary["photos_per_minute"] > 0
    assert all(summary["photos"][n]["device"] == "cpu" and summary["photos"][n]["seconds"] > 0 for n in NAMES)

    before = len(_events(out))
    again = reconstruct_batch([folder], out, devices="cpu,cpu", preset=PRESET, network=str(net),
                              progress=False, **FAST)
    assert {p["status"] for p in again.photos.values()} == {"skipped"}
    assert len(_events(out)) == before  # no worker started, nothing redone


def test_killed_run_resumes(photos, tmp_path):
    folder, net = photos
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "psohead", "reconstruct-batch", str(folder), "--out", str(out), "--devices",
           "cpu,cpu", "--network", str(net), "--preset", "fast", "--stage1-steps", "1", "--stage2-steps", "1",
           "--set", "outputs.video_frames=2", "--set", "outputs.mesh_resolution=16", "--back", "none", "--quiet"]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:  # kill the whole batch (coordinator and workers) once the first photo is complete
        deadline = time.monotonic() + 120
        while not ((out / LOG_NAME).is_file() and any(e["event"] == "done" for e in _events(out))):
            assert proc.poll() is None and time.monotonic() < deadline, "batch ended before it could be killed"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    first = {n for n, c in _done_counts(out).items() if c}
    assert first and first != set(NAMES)

    res = reconstruct_batch([folder], out, devices="cpu,cpu", network=str(net), preset="fast",
                            overrides=OVERRIDES, progress=False, **FAST)
    assert {n for n, p in res.photos.items() if p["status"] == "skipped"} == first
    assert {n for n, p in res.photos.items() if p["status"] == "done"} == set(NAMES) - first
    assert _done_counts(out) == {n: 1 for n in NAMES}  # every photo completed exactly once overall
    assert not list(out.glob(".*.partial-*"))  # killed half-written outputs were cleared
