"""The app's job queue and upload checks, and a load test: 20 clients at once against a queue of 8."""
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from psohead.app.jobs import CANCELLED, DONE, Busy, JobQueue, QueueLimits
from psohead.app.uploads import accept_image
from psohead.errors import InputError


def test_queue_admits_its_limit_runs_one_at_a_time_and_cancels(tmp_path):
    jobs = JobQueue(tmp_path, QueueLimits(queue=3, concurrency=1, ttl=60))
    admitted = [jobs.admit() for _ in range(3)]
    with pytest.raises(Busy, match="try again"):
        jobs.admit()
    running, peak, gate = [], [], threading.Event()

    def work(job):
        running.append(job.id)
        peak.append(len(running))
        try:
            gate.wait(5)
            for step in range(100):
                job.report(("stage1", step))
                time.sleep(0.01)
            return job.id
        finally:
            running.remove(job.id)

    for job in admitted:
        jobs.start(job, work)
    time.sleep(0.3)
    assert jobs.ahead_of(admitted[2]) == 2  # one running, one waiting before it
    admitted[1].cancel()  # still waiting: never starts
    gate.set()
    time.sleep(0.2)
    admitted[0].cancel()  # running: stops at its next progress report
    assert all(j.wait(10) for j in admitted)
    assert [j.state for j in admitted] == [CANCELLED, CANCELLED, DONE]
    assert max(peak) == 1 and admitted[2].result == admitted[2].id
    assert not admitted[0].folder.exists() and not admitted[1].folder.exists()  # nothing of a cancelled run
    assert jobs.active == 0 and jobs.admit() is not None


def test_sweep_deletes_only_expired_idle_job_folders(tmp_path):
    jobs = JobQueue(tmp_path, QueueLimits(queue=4, ttl=10))
    old, live = jobs.admit(), jobs.admit()
    (old.folder / "head.glb").write_bytes(b"x" * 100)
    jobs.discard(old)
    assert not old.folder.exists()
    stale = tmp_path / "job-0123456789abcdef"  # left by an earlier server
    stale.mkdir()
    other = tmp_path / "keep-me"
    other.mkdir()
    assert jobs.sweep(now=time.time() + 100) == 1  # the running job's folder stays
    assert live.folder.exists() and not stale.exists() and other.exists()


def test_disk_budget_refuses_new_jobs(tmp_path):
    jobs = JobQueue(tmp_path, QueueLimits(queue=4, ttl=3600, max_disk_bytes=1000))
    job = jobs.admit()
    (job.folder / "big").write_bytes(b"x" * 2000)
    with pytest.raises(Busy, match="disk"):
        jobs.admit()


def test_uploads_are_checked_and_renamed(tmp_path):
    Image.fromarray(np.full((30, 40, 3), 200, np.uint8)).save(tmp_path / "in.jpg")
    out = accept_image(tmp_path / "in.jpg", tmp_path / "job" / "photo.png", 10_000, 10_000)
    assert out.name == "photo.png" and Image.open(out).size == (40, 30)
    with pytest.raises(InputError, match="limit is 0.001 MP"):
        accept_image(tmp_path / "in.jpg", tmp_path / "p.png", 10_000, 1000)
    with pytest.raises(InputError, match="MB"):
        accept_image(tmp_path / "in.jpg", tmp_path / "p.png", 10, 10_000)
    (tmp_path / "txt.png").write_text("hello")
    with pytest.raises(InputError, match="not a readable image"):
        accept_image(tmp_path / "txt.png", tmp_path / "p.png", 10_000, 10_000)
    assert not (tmp_path / "p.png").exists()


class FakePipeline:
    """Stands in for the network in the load test: a few progress steps, then small outputs."""

    has_encoder = False  # no first looks

    def __init__(self, sample: Path):
        self.sample = sample

    def __call__(self, image, out, *, preset, back, extra_views, progress):
        from psohead.app.pipeline import Progress

        for step in range(5):
            progress(Progress("stage1", step, 5))
            time.sleep(0.05)
        out.mkdir()
        for name in ("views.png", "front.png", "back.png"):
            Image.open(image).save(out / name)


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def test_twenty_clients_against_a_queue_of_eight(tmp_path, monkeypatch):
    pytest.importorskip("gradio")
    from gradio_client import Client, handle_file

    from psohead.app import AppConfig
    from psohead.app.page import start

    monkeypatch.setenv("GRADIO_TEMP_DIR", "")  # start() points it into the work dir; restored after
    photo = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(photo)
    work = tmp_path / "work"
    from test_app_browser import free_port

    server = start(AppConfig(port=free_port(), queue=8, ttl=6, work_dir=work, examples_dir=None), block=False,
                   pipeline=FakePipeline(photo))
    try:
        rss0 = _rss_mb()
        outcomes, errors = [], []

        def client():
            try:
                c = Client(server.url, verbose=False)
                result = c.predict(handle_file(str(photo)), "fast", "auto", None, None, 90, api_name="/reconstruct")
                outcomes.append(result[0])
            except Exception as err:  # recorded: the test fails on any
                errors.append(repr(err))

        threads = [threading.Thread(target=client) for _ in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert errors == [] and len(outcomes) == 20
        done = [o for o in outcomes if o.startswith("Done")]
        busy = [o for o in outcomes if o.startswith("⚠ busy")]
        assert len(done) + len(busy) == 20, outcomes
        assert len(done) >= 8 and len(busy) >= 1, (len(done), len(busy))
        # the server is still up and serves a new job once the queue has drained
        again = Client(server.url, verbose=False).predict(handle_file(str(photo)), "fast", "auto", None, None, 90,
                                                          api_name="/reconstruct")
        assert again[0].startswith("Done")
        assert _rss_mb() - rss0 < 300
        deadline = time.time() + 30
        while list(work.glob("job-*")) and time.time() < deadline:
            time.sleep(0.5)
        assert list(work.glob("job-*")) == []  # every job folder deleted after the TTL
    finally:
        server.close()
    assert os.environ.get("GRADIO_TEMP_DIR") is not None


class _Outputs:
    """A stand-in pipeline: writes a turntable and views for each call and reports one step."""

    def __init__(self, has_encoder=True):
        self.has_encoder, self.calls = has_encoder, []

    def __call__(self, image, out, *, preset, back="auto", extra_views=(), progress=None):
        from psohead.progress import Progress

        self.calls.append(preset)
        out.mkdir(parents=True)
        for name in ("turntable.mp4", "views.png", "front.png", "report.html"):
            (out / name).write_bytes(preset.encode())
        progress(Progress("stage1", 1, 2))


@pytest.mark.parametrize("preset, first_look, has_encoder, calls", [
    ("fast", True, True, ["preview", "fast"]),
    ("fast", False, True, ["fast"]),  # psohead app --no-first-look
    ("fast", True, False, ["fast"]),  # a network without an encoder
    ("preview", True, True, ["preview"]),  # the preview is the job itself
])
def test_first_look_is_the_preview_run_before_the_jobs_own(tmp_path, preset, first_look, has_encoder, calls):
    from psohead.app.config import AppConfig
    from psohead.app.page import JobRunner

    pipeline, jobs = _Outputs(has_encoder), JobQueue(tmp_path, QueueLimits(queue=2, ttl=60))
    runner = JobRunner(AppConfig(first_look=first_look), pipeline, jobs)
    job = jobs.admit()
    seen = []
    report = job.report
    job.report = lambda p: (seen.append(p.stage), report(p))
    result = runner.work(job, {"image": tmp_path / "photo.png", "back": "auto", "extra_views": ()}, preset)
    assert pipeline.calls == calls
    assert result.video.read_bytes() == preset.encode() and not result.first_look
    if calls[0] == "preview" and preset != "preview":
        look = job.first_look
        assert look.first_look and look.glb is None and look.downloads == []
        assert look.video == job.folder / "first-look" / "turntable.mp4" and look.video.read_bytes() == b"preview"
        assert seen[0] == "first_look" and seen[1] == "stage1"  # its steps are shown as the first look's
    else:
        assert job.first_look is None and "first_look" not in seen


def test_app_command_passes_the_first_look_and_encoder_options(monkeypatch):
    import psohead.app
    from psohead.cli import main

    seen = []
    monkeypatch.setattr(psohead.app, "serve", seen.append)
    assert main(["app", "--no-first-look", "--encoder", "enc.safetensors", "--preset", "preview"]) == 0
    assert main(["app"]) == 0
    (off, on) = seen
    assert (off.first_look, off.encoder, off.preset) == (False, "enc.safetensors", "preview")
    assert (on.first_look, on.encoder, on.preset) == (True, None, "fast")
