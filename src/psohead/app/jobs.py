"""The app's jobs: a bounded queue, a few device slots, one private folder per job that is
deleted after a time-to-live, and a disk budget for the whole work folder.

A job runs in its own thread; the page polls :attr:`Job.state`, :attr:`Job.progress` and
:attr:`Job.preview` (the last picture of the head being fitted). Cancelling
sets a flag that the pipeline's progress callback (:meth:`Job.report`) turns into
:class:`Cancelled` at its next call, so a run stops between two steps.
"""
from __future__ import annotations

import logging
import os
import secrets
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import PsoheadError

log = logging.getLogger(__name__)
JOB_PREFIX = "job-"
WAITING, RUNNING, DONE, FAILED, CANCELLED = "waiting", "running", "done", "failed", "cancelled"


class Busy(PsoheadError):
    """The queue is full or the disk budget is used up: the person should try again later."""


class Cancelled(PsoheadError):
    """Raised inside a job whose cancel button was pressed."""


@dataclass
class QueueLimits:
    queue: int = 8  # jobs admitted at once, running + waiting
    concurrency: int = 1  # jobs running at once
    ttl: float = 3600.0  # seconds a job folder lives after its job finished
    max_disk_bytes: int = 4 << 30  # budget of the work folder (job folders and the upload cache)


class Job:
    """One reconstruction request: its folder, state, last progress report and result."""

    def __init__(self, folder: Path):
        self.id = folder.name[len(JOB_PREFIX):]
        self.folder = folder
        self.created = time.time()
        self.state = WAITING
        self.progress = None  # the last object the pipeline reported (stage, step, total, message)
        self.preview = None  # the last preview it carried ([H,W,3] uint8; earlier ones are dropped)
        self.result = None
        self.first_look = None  # the results of a quick preview shown while the full run goes on, if any
        self.error: BaseException | None = None
        self._cancel = threading.Event()
        self._finished = threading.Event()

    def report(self, progress) -> None:
        """The pipeline's progress callback: records the report and its preview, if any; stops
        the run once cancelled."""
        if self._cancel.is_set():
            raise Cancelled("cancelled")
        self.progress = progress
        preview = getattr(progress, "preview", None)
        if preview is not None:
            self.preview = preview

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """True once the job has finished (done, failed or cancelled)."""
        return self._finished.wait(timeout)


class JobQueue:
    """Admits at most ``limits.queue`` jobs at once and runs ``limits.concurrency`` of them."""

    def __init__(self, work_dir: Path, limits: QueueLimits, cache_dirs: tuple[Path, ...] = ()):
        self.work_dir = Path(work_dir)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.limits = limits
        self.cache_dirs = cache_dirs  # other folders inside work_dir whose old files the sweep deletes
        self._lock = threading.Lock()
        self._active: dict[str, Job] = {}  # admitted, not finished
        self._order: list[str] = []  # admitted ids in arrival order (for queue positions)
        self._slots = threading.Semaphore(limits.concurrency)
        self._stop = threading.Event()
        self._sweeper: threading.Thread | None = None

    # -- admission and running -------------------------------------------------------------
    def admit(self) -> Job:
        """A new job with its own empty folder, or :class:`Busy`."""
        with self._lock:
            if len(self._active) >= self.limits.queue:
                raise Busy(f"busy: {len(self._active)} reconstructions are already queued or running "
                           "(the limit); please try again in a few minutes")
        if self.disk_usage() >= self.limits.max_disk_bytes:
            self.sweep()
            if self.disk_usage() >= self.limits.max_disk_bytes:
                raise Busy("busy: the server's disk budget for results is used up; please try again later")
        with self._lock:
            if len(self._active) >= self.limits.queue:  # filled while the disk was measured
                raise Busy("busy: the queue filled up just now; please try again in a few minutes")
            folder = self.work_dir / f"{JOB_PREFIX}{secrets.token_hex(8)}"
            folder.mkdir()
            job = Job(folder)
            self._active[job.id] = job
            self._order.append(job.id)
        return job

    def start(self, job: Job, fn: Callable[[Job], object]) -> None:
        """Run ``fn(job)`` in a thread once a device slot is free; its return value is the result."""
        threading.Thread(target=self._run, args=(job, fn), name=f"psohead-job-{job.id}", daemon=True).start()

    def _run(self, job: Job, fn) -> None:
        try:
            while not self._slots.acquire(timeout=0.2):
                if job.cancelled:
                    raise Cancelled("cancelled")
            try:
                if job.cancelled:
                    raise Cancelled("cancelled")
                job.state = RUNNING
                job.result = fn(job)
                job.state = DONE
            finally:
                self._slots.release()
        except Cancelled as err:
            job.error, job.state = err, CANCELLED
        except BaseException as err:  # reported to the page as one line; the traceback goes to the log
            if not isinstance(err, PsoheadError):
                log.exception("job %s failed", job.id)
            job.error, job.state = err, FAILED
        finally:
            if job.state == CANCELLED:  # nothing of a cancelled run is kept
                shutil.rmtree(job.folder, ignore_errors=True)
            elif job.folder.is_dir():  # the time-to-live counts from when the results exist
                os.utime(job.folder)
            with self._lock:
                self._active.pop(job.id, None)
                self._order.remove(job.id)
            job._finished.set()

    def discard(self, job: Job) -> None:
        """Give up a job that never started: its queue place and its folder go at once."""
        with self._lock:
            if self._active.pop(job.id, None) is not None:
                self._order.remove(job.id)
        shutil.rmtree(job.folder, ignore_errors=True)
        job.state = CANCELLED
        job._finished.set()

    def ahead_of(self, job: Job) -> int:
        """How many admitted jobs must start before this one can (0 once it may run)."""
        with self._lock:
            if job.id not in self._order:
                return 0
            waiting_before = [i for i in self._order[:self._order.index(job.id)]
                              if self._active[i].state == WAITING]
            running = sum(1 for j in self._active.values() if j.state == RUNNING)
        return max(0, len(waiting_before) + running - self.limits.concurrency + 1)

    def cancel(self, job_id: str | None) -> bool:
        with self._lock:
            job = self._active.get(job_id or "")
        if job is None:
            return False
        job.cancel()
        return True

    @property
    def active(self) -> int:
        with self._lock:
            return len(self._active)

    # -- disk ---------------------------------------------------------------------------------
    def disk_usage(self) -> int:
        """Bytes of every file under the work folder."""
        total = 0
        for p in self.work_dir.rglob("*"):
            try:
                if p.is_file() and not p.is_symlink():
                    total += p.stat().st_size
            except OSError:  # deleted while walking
                pass
        return total

    def sweep(self, now: float | None = None) -> int:
        """Delete job folders (and cache entries) older than the TTL that no running job owns;
        returns how many were deleted."""
        now = time.time() if now is None else now
        with self._lock:
            busy = {j.folder.name for j in self._active.values()}
        deleted = 0
        for folder in self.work_dir.glob(f"{JOB_PREFIX}*"):
            try:
                old = now - folder.stat().st_mtime > self.limits.ttl
            except OSError:
                continue
            if old and folder.name not in busy:
                shutil.rmtree(folder, ignore_errors=True)
                deleted += 1
        for cache in self.cache_dirs:
            for entry in cache.glob("*") if cache.is_dir() else ():
                try:
                    if now - entry.stat().st_mtime > self.limits.ttl:
                        shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink()
                        deleted += 1
                except OSError:
                    pass
        return deleted

    def start_sweeper(self, interval: float | None = None) -> None:
        """Sweep in a background thread every ``interval`` seconds (default: a quarter of the TTL, 1-60 s)."""
        every = interval or min(60.0, max(1.0, self.limits.ttl / 4))

        def loop():
            while not self._stop.wait(every):
                try:
                    self.sweep()
                except Exception:  # a failed sweep must not end the loop: log it, try next time
                    log.exception("sweeping %s failed", self.work_dir)

        self._sweeper = threading.Thread(target=loop, name="psohead-sweeper", daemon=True)
        self._sweeper.start()

    def stop(self) -> None:
        self._stop.set()
