"""Many photos over several devices: one worker process per device entry, every photo done once.

Layout of the output folder OUT (see docs/reconstruct.md):

* ``OUT/<stem>/``            the photo's outputs, written atomically by a ``Reconstructor``; a folder
                             with a ``reconstruction.json`` is complete and is skipped by reruns.
                             OUT and each OUT/<stem> must be new, empty or psohead's own output
                             (``overwrite`` lets psohead write beside other files, never over them
                             but for files of its own names).
* ``OUT/.claims/<stem>``     claim of the process working on the photo. The claim is an exclusive
                             ``flock`` on that file: the kernel drops it when the holder exits or is
                             killed, so a claim is never stale and two processes never hold one.
* ``OUT/batch.jsonl``        event log, one JSON line per start / done / failed.
* ``OUT/batch_summary.json`` photo -> status, seconds, device (rewritten at the end of each run).

A photo that fails is recorded (``failed`` in the claim file, the log and the summary) and the
batch carries on; the next run retries it. Each worker loads the network once and keeps it for
all its photos.
"""
from __future__ import annotations

import json
import math
import multiprocessing
import os
import queue as queue_module
import secrets
import shutil
import socket
import time
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path

from ..atomic import check_output_dir, claim_dir, remove_stale_partials
from ..errors import InputError, PsoheadError
from ..io.images import IMAGE_SUFFIXES, list_images

BATCH_VERB = "reconstruct-batch"  # the marker of OUT (each OUT/<stem> is a "reconstruct" folder)
SUMMARY_NAME = "batch_summary.json"
LOG_NAME = "batch.jsonl"
CLAIMS_DIR = ".claims"
PIPELINE_OPTIONS = ("perceptual", "vgg16", "lpips_linear", "fk_bank", "encoder")  # what the Reconstructor loads once
PER_PHOTO_OPTIONS = ("label", "mask", "extra_views")  # they describe one photo: a batch cannot share them
WORKER_EXIT_S = 60  # a worker with no photo left returns at once; this only bounds a hung exit


class BatchWarning(UserWarning):
    """A warning of a worker process (about one photo, or the network it loaded), told again by
    the coordinator so that it prints where the batch was started."""


@dataclass(frozen=True)
class BatchJob:
    photo: Path
    name: str  # output folder name inside OUT


def collect_photos(inputs) -> list[BatchJob]:
    """Image files given directly or lying directly in given folders (sorted; masks are skipped)."""
    jobs: list[BatchJob] = []
    for item in [inputs] if isinstance(inputs, (str, os.PathLike)) else inputs:
        path = Path(item)
        if path.is_dir():
            found = list_images(path, skip_masks=True)
            if not found:
                raise InputError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in folder {path}")
            jobs += [BatchJob(p, p.stem) for p in found]
        elif path.is_file():
            jobs.append(BatchJob(path, path.stem))
        else:
            raise InputError(f"input not found: {path}")
    if not jobs:
        raise InputError("no input photos given")
    seen: dict[str, Path] = {}
    for job in jobs:
        if job.name in seen:
            raise InputError(f"{seen[job.name]} and {job.photo} would both write to the output folder "
                             f"{job.name!r}; rename one of them")
        seen[job.name] = job.photo
    return jobs


def is_complete(folder: Path) -> bool:
    return (folder / "reconstruction.json").is_file()


def resolve_devices(devices="auto", procs_per_device: int = 1) -> list[str]:
    """Device of every worker: ``auto`` = each visible GPU, else one CPU; each ``procs_per_device`` times."""
    import torch

    from ..devices import resolve_device

    if procs_per_device < 1:
        raise InputError(f"--procs must be >= 1, got {procs_per_device}")
    names = devices.split(",") if isinstance(devices, str) else list(devices)
    names = [str(n).strip() for n in names if str(n).strip()]
    if names in ([], ["auto"]):
        names = [f"cuda:{i}" for i in range(torch.cuda.device_count())] or ["cpu"]
    out = []
    for name in names:
        out += [str(resolve_device(name))] * procs_per_device
    return out


# ---------------------------------------------------------------------------------------------
# Claims

class Claims:
    """Exclusive per-photo claims held as ``flock`` locks on ``OUT/.claims/<name>`` (POSIX)."""

    def __init__(self, out: Path, run: str):
        self.dir = out / CLAIMS_DIR
        self.dir.mkdir(parents=True, exist_ok=True)
        self.run = run

    def acquire(self, name: str, info: dict) -> int | None:
        """An open, locked descriptor of the claim, or None if another process holds it or it
        failed earlier in this run."""
        import fcntl

        path = self.dir / name
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return None
            try:  # the holder before us may have unlinked the file between our open and lock
                same = os.fstat(fd).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        previous = _read_json_fd(fd)
        if previous.get("status") == "failed" and previous.get("run") == self.run:
            os.close(fd)
            return None
        _write_json_fd(fd, {**info, "status": "running", "run": self.run})
        return fd

    def release(self, name: str, fd: int) -> None:
        """Done (or nothing to do): remove the claim, then unlock it."""
        try:
            (self.dir / name).unlink()
        except FileNotFoundError:
            pass
        os.close(fd)

    def fail(self, fd: int, record: dict) -> None:
        """Keep the claim file, marked failed for this run (the next run retries), and unlock it."""
        _write_json_fd(fd, {**record, "status": "failed", "run": self.run})
        os.close(fd)


def _read_json_fd(fd: int) -> dict:
    os.lseek(fd, 0, os.SEEK_SET)
    data = b""
    while chunk := os.read(fd, 65536):
        data += chunk
    try:
        value = json.loads(data.decode() or "{}")
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


def _write_json_fd(fd: int, value: dict) -> None:
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, (json.dumps(value) + "\n").encode())


def _log(out: Path, event: dict) -> None:
    """One line appended to OUT/batch.jsonl (single O_APPEND write: lines never interleave)."""
    line = (json.dumps({"time": round(time.time(), 3), **event}) + "\n").encode()
    fd = os.open(out / LOG_NAME, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------------
# Worker process

def _worker(index: int, device: str, jobs: list[BatchJob], out: Path, options: dict, run: str,
            threads: int | None, results) -> None:
    """Take unclaimed, incomplete photos one at a time until none is left; the network is loaded
    once, when the first photo is claimed."""
    import torch

    from .pipeline import Reconstructor

    if threads:
        torch.set_num_threads(threads)
    if device.startswith("cuda"):
        torch.cuda.set_device(torch.device(device))
    per_photo = {k: options.pop(k) for k in ("back", "seed", "overwrite") if k in options}
    pipeline = None
    claims = Claims(out, run)
    me = {"pid": os.getpid(), "host": socket.gethostname(), "device": device, "worker": index}
    while True:
        job, fd = _next_job(jobs, out, claims, me)
        if job is None:
            return
        for stale in out.glob(f".{job.name}.partial-*"):  # left by a killed run; we hold the claim
            shutil.rmtree(stale, ignore_errors=True)
        _log(out, {"event": "start", "photo": job.name, **me})
        start = time.perf_counter()
        # this process prints nothing: its warnings go to the coordinator, which warns once per photo
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                if pipeline is None:
                    pipeline = Reconstructor(device=device, **options)
                pipeline(job.photo, out / job.name, progress=False, **per_photo)
                err = None
            except Exception as error:  # noqa: BLE001 - one bad photo must not stop the batch
                err = error
        seconds = time.perf_counter() - start
        notes = {"warnings": list(dict.fromkeys(str(w.message) for w in caught))} if caught else {}
        if err is not None:
            # psohead's own errors are one clear line already; anything else names its exception
            message = str(err) if isinstance(err, PsoheadError) else f"{type(err).__name__}: {err}"
            record = {**me, "photo": job.name, "seconds": seconds, "error": message,
                      "traceback": "".join(traceback.format_exception(err, limit=20))}
            claims.fail(fd, record)
            _log(out, {"event": "failed", "photo": job.name, "seconds": round(seconds, 3), "error": message,
                       **me})
            results.put({"photo": job.name, "status": "failed", "seconds": seconds, "device": device,
                         "error": message, **notes})
            continue
        _log(out, {"event": "done", "photo": job.name, "seconds": round(seconds, 3), **me})
        claims.release(job.name, fd)
        results.put({"photo": job.name, "status": "done", "seconds": seconds, "device": device, **notes})


def _next_job(jobs: list[BatchJob], out: Path, claims: Claims, me: dict):
    for job in jobs:
        if is_complete(out / job.name):
            continue
        fd = claims.acquire(job.name, {**me, "photo": job.name, "started": time.time()})
        if fd is None:
            continue
        if is_complete(out / job.name):  # finished by another process just before we claimed it
            claims.release(job.name, fd)
            continue
        return job, fd
    return None, None


# ---------------------------------------------------------------------------------------------
# Coordinator

@dataclass
class BatchResult:
    out: Path
    photos: dict  # name -> {"input", "status", "seconds", "device", ("error")}
    seconds: float
    devices: list[str]

    @property
    def done(self) -> int:
        return sum(1 for p in self.photos.values() if p["status"] == "done")

    @property
    def photos_per_minute(self) -> float:
        return self.done / (self.seconds / 60) if self.seconds > 0 else 0.0

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for p in self.photos.values():
            counts[p["status"]] = counts.get(p["status"], 0) + 1
        return counts


def _check_options(options: dict, devices: list[str]) -> None:
    """Fail before starting any worker on what would make every photo fail."""
    from .back import STRATEGIES, plan_back
    from .precision import check_precision
    from .presets import resolve_preset

    back = str(options.get("back", "auto"))
    if back not in STRATEGIES:
        raise InputError(f"batch reconstruction: --back must be one of {', '.join(STRATEGIES)}, got {back!r}")
    fk_bank = options.get("fk_bank")
    if fk_bank is not None and not Path(fk_bank).exists():
        raise InputError(f"FK-Enhance bank not found: {fk_bank}")
    plan_back(back, has_bank=fk_bank is not None)
    preset = resolve_preset(options.get("preset", "auto"), options.get("overrides"))
    for dev in devices:
        check_precision(preset.runtime.precision, dev)
    network = options.get("network", "default")
    if not isinstance(network, (str, os.PathLike)):
        raise InputError("batch reconstruction needs the network as a file path or 'default'")
    if str(network) != "default" and not Path(network).is_file():
        raise InputError(f"network file not found: {network}")


def _cpu_threads(devices: list[str]) -> int | None:
    """Torch threads per CPU worker: the cores shared out evenly (at least one each)."""
    n_cpu = sum(1 for d in devices if d == "cpu")
    if not n_cpu:
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // n_cpu)


def reconstruct_batch(inputs, out: str | os.PathLike, *, network="default", devices="auto",
                      procs_per_device: int = 1, preset="auto", overrides: dict | None = None, back: str = "auto",
                      seed: int = 666, progress: bool = True, overwrite: bool = False, **options) -> BatchResult:
    """Reconstruct every photo of ``inputs`` (files and/or folders) into ``out/<stem>/``.

    One worker process per entry of ``devices`` (``"cpu,cpu"``, ``["cuda:0", "cuda:1"]``, ``auto``),
    ``procs_per_device`` each, and one :class:`~.pipeline.Reconstructor` per worker. ``preset``
    (``auto`` = fast) takes ``overrides`` (e.g. ``{"outputs.video_frames": 24}``) and keyword
    overrides (``stage1_steps=60``); the options perceptual, vgg16, lpips_linear, fk_bank and encoder go to
    the Reconstructor. Aligned crops take their labels from a dataset.json beside them. Photos
    already complete in ``out`` are skipped, so a rerun resumes a killed batch. ``overwrite``:
    ``out`` and its photo folders may hold other files (they are kept).
    """
    from tqdm.auto import tqdm

    bad = [k for k in PER_PHOTO_OPTIONS if options.get(k)]
    if bad:
        raise InputError(f"batch reconstruction takes no per-photo option ({', '.join(bad)}); "
                         "crops get their labels from a dataset.json beside them")
    jobs = collect_photos(inputs)
    workers = resolve_devices(devices, procs_per_device)
    pipeline = {k: options.pop(k) for k in PIPELINE_OPTIONS if k in options}
    merged = {k: v for k, v in {**(overrides or {}), **options}.items() if v is not None}
    options = {**pipeline, "network": network, "preset": preset, "back": back, "seed": seed, "overrides": merged,
               "overwrite": overwrite}
    _check_options(options, workers)
    out = claim_dir(check_output_dir(out, BATCH_VERB, overwrite=overwrite), BATCH_VERB)
    run = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"
    photos = {j.name: {"input": str(j.photo), "status": "skipped" if is_complete(out / j.name) else "not run"}
              for j in jobs}
    todo = sum(1 for p in photos.values() if p["status"] == "not run")
    threads = _cpu_threads(workers)
    ctx = multiprocessing.get_context("spawn")  # CUDA and torch threads do not survive fork
    results = ctx.Queue()
    start = time.perf_counter()
    procs = [ctx.Process(target=_worker, args=(i, dev, jobs, out, options, run,
                                               threads if dev == "cpu" else None, results),
                         name=f"psohead-batch-{i}", daemon=True) for i, dev in enumerate(workers)]
    bar = tqdm(total=todo, desc=f"photos ({len(workers)} workers)", unit="photo", disable=not progress or not todo)
    try:
        if todo:
            for p in procs:
                p.start()
        received = 0
        while received < todo and (any(p.is_alive() for p in procs) or not results.empty()):
            try:
                msg = results.get(timeout=0.5)
            except queue_module.Empty:
                continue
            received += 1
            entry = photos[msg.pop("photo")]
            entry.update(msg)
            bar.update(1)
            for note in msg.get("warnings", ()):
                warnings.warn(note, BatchWarning)
            if msg["status"] == "failed":
                bar.write(f"failed: {entry['input']} ({msg['error']})")
        for p in procs:  # every photo is accounted for: the workers are on their way out
            if p.pid is not None:
                p.join(timeout=WORKER_EXIT_S)
    finally:
        bar.close()
        for p in procs:
            if p.is_alive():  # only on an interrupt (or a worker hung on exit): stop our own workers
                p.terminate()
            if p.pid is not None:
                p.join(timeout=10)
        for job in jobs:  # what the stopped workers were writing
            remove_stale_partials(out, job.name)
        for name, entry in photos.items():  # finished meanwhile by another batch on the same folder
            if entry["status"] == "not run" and is_complete(out / name):
                entry["status"] = "skipped"
        result = BatchResult(out, photos, time.perf_counter() - start, workers)
        _write_summary(result, run)
    crashed = [p.name for p in procs if p.exitcode not in (0, None)]
    if crashed:
        warnings.warn(f"worker(s) {', '.join(crashed)} exited abnormally; rerun to finish their photos")
    return result


def _write_summary(result: BatchResult, run: str) -> None:
    summary = {"version": 1, "run": run, "devices": result.devices, "seconds": round(result.seconds, 3),
               "counts": result.counts(), "photos_per_minute": round(result.photos_per_minute, 3),
               "photos": {k: {kk: (round(vv, 3) if isinstance(vv, float) and math.isfinite(vv) else vv)
                              for kk, vv in v.items()} for k, v in result.photos.items()}}
    from ..atomic import atomic_path

    with atomic_path(result.out / SUMMARY_NAME) as tmp:
        tmp.write_text(json.dumps(summary, indent=1) + "\n")

