"""Progress of long work: tqdm bars for people at a terminal, or events for a program.

Every long loop takes ``progress``: ``True`` (bars), ``False``/``None`` (silent) or a callable
that receives a :class:`Progress` at the start of each stage and after every step. A callable
may stop the work by raising; the exception leaves the loop unchanged, so the caller's clean-up
(e.g. the atomic output folder) runs as for any other error.

Loops that render a picture of their work anyway (the inversion's stages render the photo's
camera every step) hand a callable a *preview* of it now and then: :meth:`Tracker.wants_preview`
says when (the first step, then at most once every ``preview_seconds``), :meth:`Tracker.show`
attaches it to the next event. Bars and silent runs never take one.
"""
from __future__ import annotations

from time import perf_counter
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Union

import numpy as np


@dataclass(frozen=True)
class Progress:
    """One progress event."""

    stage: str  # e.g. preprocess, stage1, pseudo_back, stage2, views, video, mesh, save, report
    step: int  # steps of the stage done so far (0 at its start)
    total: int  # steps of the stage (1 for one-shot stages)
    message: str = ""  # latest loss values or what is being done, for display
    preview: np.ndarray | None = None  # [H,W,3] uint8: what the work looks like now (module docstring), or None

    @property
    def fraction(self) -> float:
        return self.step / self.total if self.total else 1.0


ProgressLike = Union[bool, None, Callable[[Progress], object]]


class Tracker:
    """Iterate over ``iterable`` and report each step; :meth:`note` adds a message (bar postfix),
    :meth:`show` a preview. ``preview_seconds``: the least time between two previews (None: none)."""

    def __init__(self, iterable: Iterable, stage: str, total: int | None, progress: ProgressLike,
                 desc: str | None = None, unit: str = "step", preview_seconds: float | None = None):
        self.iterable, self.stage = iterable, stage
        if total is None:
            total = len(iterable) if hasattr(iterable, "__len__") else 0  # 0: not known in advance
        self.total = total
        self.callback = progress if callable(progress) else None
        self.bar = None
        if progress is True:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total or None, desc=desc or stage, unit=unit, leave=False)
        self.message = ""
        self.done = 0
        self.preview_seconds = preview_seconds if self.callback is not None else None
        self._preview: np.ndarray | None = None  # for the next event
        self._previewed_at: float | None = None  # perf_counter() of the last preview

    def __iter__(self) -> Iterator:
        self._emit()
        try:
            for item in self.iterable:
                yield item
                self.done += 1
                if self.bar is not None:
                    self.bar.update(1)
                self._emit()
        finally:
            if self.bar is not None:
                self.bar.close()

    def note(self, **values) -> None:
        """Show ``values`` (e.g. losses) beside the bar, or in the next event's message."""
        if self.bar is not None:
            self.bar.set_postfix(**values)
        self.message = ", ".join(f"{k} {v}" for k, v in values.items())

    def wants_preview(self) -> bool:
        """Whether the step now running should :meth:`show` a preview: only for a callable, at the
        first step and then once ``preview_seconds`` have passed since the last one (host time
        only: asking costs no device synchronisation)."""
        if self.preview_seconds is None:
            return False
        return self._previewed_at is None or perf_counter() - self._previewed_at >= self.preview_seconds

    def show(self, preview: np.ndarray) -> None:
        """Attach ``preview`` ([H,W,3] uint8) to the next event."""
        self._preview, self._previewed_at = preview, perf_counter()

    def _emit(self) -> None:
        if self.callback is not None:
            preview, self._preview = self._preview, None
            self.callback(Progress(self.stage, self.done, self.total, self.message, preview))


def track(iterable: Iterable, stage: str, progress: ProgressLike = True, total: int | None = None,
          desc: str | None = None, unit: str = "step", preview_seconds: float | None = None) -> Tracker:
    """``for x in track(items, "stage2", progress): ...`` reports every step (module docstring)."""
    return Tracker(iterable, stage, total, progress, desc, unit, preview_seconds)


def announce(progress: ProgressLike, stage: str, message: str = "", preview: np.ndarray | None = None) -> None:
    """A one-shot stage begins (no bar: only a callable hears of it), with a preview if given."""
    if callable(progress):
        progress(Progress(stage, 0, 1, message, preview))
