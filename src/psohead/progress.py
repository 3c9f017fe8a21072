"""Progress of long work: tqdm bars for people at a terminal, or events for a program.

Every long loop takes ``progress``: ``True`` (bars), ``False``/``None`` (silent) or a callable
that receives a :class:`Progress` at the start of each stage and after every step. A callable
may stop the work by raising; the exception leaves the loop unchanged, so the caller's clean-up
(e.g. the atomic output folder) runs as for any other error.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Union


@dataclass(frozen=True)
class Progress:
    """One progress event."""

    stage: str  # e.g. preprocess, stage1, pseudo_back, stage2, views, video, mesh, save, report
    step: int  # steps of the stage done so far (0 at its start)
    total: int  # steps of the stage (1 for one-shot stages)
    message: str = ""  # latest loss values or what is being done, for display

    @property
    def fraction(self) -> float:
        return self.step / self.total if self.total else 1.0


ProgressLike = Union[bool, None, Callable[[Progress], object]]


class Tracker:
    """Iterate over ``iterable`` and report each step; :meth:`note` adds a message (bar postfix)."""

    def __init__(self, iterable: Iterable, stage: str, total: int | None, progress: ProgressLike,
                 desc: str | None = None, unit: str = "step"):
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

    def _emit(self) -> None:
        if self.callback is not None:
            self.callback(Progress(self.stage, self.done, self.total, self.message))


def track(iterable: Iterable, stage: str, progress: ProgressLike = True, total: int | None = None,
          desc: str | None = None, unit: str = "step") -> Tracker:
    """``for x in track(items, "stage2", progress): ...`` reports every step (module docstring)."""
    return Tracker(iterable, stage, total, progress, desc, unit)


def announce(progress: ProgressLike, stage: str, message: str = "") -> None:
    """A one-shot stage begins (no bar: only a callable hears of it)."""
    if callable(progress):
        progress(Progress(stage, 0, 1, message))
