"""Where psohead may write, and write-then-rename so a killed run never leaves a file that looks complete.

The rules every verb follows for its output location:

* it is checked before any work starts (:func:`check_output_dir`, :func:`check_output_file`):
  writable, not a file where a folder is wanted (or the reverse);
* psohead writes only into a folder it created, an empty one, or one that holds a previous
  output of the same verb (the :data:`MARKER` file says which verb wrote it and which files are
  its own); a folder holding anything else is refused unless the caller passes ``overwrite``,
  and even then only files of the names psohead writes are replaced;
* nothing psohead did not write is ever moved or deleted;
* temporary names (``.NAME.partial-...``) carry the writer's host and process id, so the next run
  on the same target removes those whose writer is gone (killed by SIGKILL, say).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Iterator

from .errors import InputError

MARKER = ".psohead"  # in every output folder: {"verb", "version", "files"} of the psohead run that wrote it
PARTIAL_GLOB = ".*.partial*"  # what partial_path and atomic_dir name, for clean-up of writes killed half-way
_HOST = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:6]
# owner tag inside a partial name: host hash and pid (older psohead versions wrote no host, or no owner at all)
_OWNER = r"(?:(?P<host>[0-9a-f]{6})-)?(?P<pid>\d+)-[0-9a-f]{8}"


def _owner() -> str:
    return f"{_HOST}-{os.getpid()}-{secrets.token_hex(4)}"


def partial_path(path: Path) -> Path:
    """A fresh hidden temp name beside ``path`` that keeps its suffix (writers pick the format from it)."""
    return path.with_name(f".{path.stem}.{_owner()}.partial{path.suffix}")


def _partial_dir(path: Path) -> Path:
    return path.with_name(f".{path.name}.partial-{_owner()}")


def _writer_gone(match: re.Match) -> bool:
    """Whether the process that owns a partial name no longer runs (unknown owner: an old run's)."""
    if match["pid"] is None:
        return True
    if match["host"] not in (None, _HOST):
        return False  # another machine's, on a shared disk: it may still be writing
    pid = int(match["pid"])
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def remove_stale_partials(folder: str | os.PathLike, target: str | None = None) -> list[Path]:
    """Delete the temp files and folders of writes killed half-way in ``folder`` (only those of
    the entry named ``target`` when given) whose writer no longer runs; returns what went."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    if target is None:
        name = r".+"
        file_form = rf"\.(?P<stem>.+)\.{_OWNER}\.partial(?:\..*)?"
    else:
        stem, suffix = Path(target).stem, Path(target).suffix
        name = re.escape(target)
        file_form = rf"\.{re.escape(stem)}\.{_OWNER}\.partial{re.escape(suffix)}"
    dir_form = re.compile(rf"\.{name}\.partial-(?:{_OWNER}|[0-9a-f]{{8}})")
    file_form = re.compile(file_form)
    removed = []
    for entry in os.scandir(folder):
        m = dir_form.fullmatch(entry.name) if entry.is_dir(follow_symlinks=False) else file_form.fullmatch(entry.name)
        if m is None or not _writer_gone(m):
            continue
        path = Path(entry.path)
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


# ---------------------------------------------------------------------------------------------
# Checks made before any work starts

def check_writable(path: str | os.PathLike, what: str = "output") -> None:
    """Raise one-line InputError unless ``path`` (which may not exist yet) can be created or
    written: its nearest existing ancestor must be a folder this process may write into."""
    path = Path(path)
    probe = path if path.is_dir() else path.parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise InputError(f"{what} {path}: {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise InputError(f"{what} {path}: no permission to write in {probe}")
    try:  # also catches what access() does not see: a read-only file system, or root on one
        fd, name = tempfile.mkstemp(dir=probe, prefix=".psohead-probe-")
        os.close(fd)
        os.unlink(name)
    except OSError as err:
        raise InputError(f"{what} {path}: cannot write in {probe} ({err.strerror or err})") from None


def read_marker(folder: str | os.PathLike) -> dict | None:
    """What an earlier psohead run left in ``folder``: {"verb": ..., "files": [...] or None}, or
    None when the folder is not a psohead output."""
    folder = Path(folder)
    data = _json_or_none(folder / MARKER)
    if isinstance(data, dict) and isinstance(data.get("verb"), str):
        files = data.get("files")
        return {"verb": data["verb"], "files": files if isinstance(files, list) else None}
    # written before the marker existed: a reconstruction lists its files in its summary, a batch has its log
    data = _json_or_none(folder / "reconstruction.json")
    if isinstance(data, dict) and isinstance(data.get("files"), list):
        return {"verb": "reconstruct", "files": data["files"]}
    if (folder / "batch.jsonl").is_file() and (folder / ".claims").is_dir():
        return {"verb": "reconstruct-batch", "files": None}
    return None


def _json_or_none(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return None


def write_marker(folder: str | os.PathLike, verb: str, files: list[str] | None = None) -> Path:
    """The marker of a psohead output folder (``files``: the entries it wrote, for a later run
    to replace; None for folders that runs only add to)."""
    from . import __version__

    return write_json(Path(folder) / MARKER, {"written_by": f"psohead {verb}", "verb": verb, "version": __version__,
                                              "files": files})


def _foreign_entries(folder: Path) -> list[str]:
    """Entries of ``folder`` other than psohead's marker and temp names."""
    return sorted(e.name for e in os.scandir(folder)
                  if e.name != MARKER and not (e.name.startswith(".") and ".partial" in e.name))


def check_output_dir(path: str | os.PathLike, verb: str, *, overwrite: bool = False, replace: bool = False,
                     what: str = "output folder", offer_overwrite: bool = True) -> Path:
    """Refuse, before any work, an output folder ``psohead VERB`` may not write into (module
    docstring). ``replace``: the folder is written aside and renamed into place
    (:func:`atomic_dir`), so its parent must be writable too. ``offer_overwrite``: the command
    has an ``--overwrite`` option, which a refusal then names."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(f"{what} {path} is a file, not a folder; give a folder name")
    if path.is_dir() and not overwrite:
        previous = read_marker(path)
        if previous is None and _foreign_entries(path):
            raise InputError(f"{what} {path} holds files that psohead did not write; choose a new or empty folder"
                             + (", or pass --overwrite to write into it (only files of psohead's names are replaced)"
                                if offer_overwrite else ""))
        if previous is not None and previous["verb"] != verb:
            raise InputError(f"{what} {path} holds the output of `psohead {previous['verb']}`; choose another folder"
                             + (", or pass --overwrite to write into it" if offer_overwrite else ""))
    check_writable(path, what)
    if replace:
        check_writable(path.parent, what)
    return path


def check_output_file(path: str | os.PathLike, suffixes: tuple[str, ...] | None = None,
                      what: str = "output file") -> Path:
    """Refuse, before any work, an output file that cannot be written: a folder of that name, an
    unknown suffix (``suffixes``: the accepted ones, lower case with the dot) or an unwritable
    place. Stale temp files of earlier writes killed half-way to the same name are removed."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{what} {path} is a folder; give a file name"
                         + (f" ending in {', '.join(suffixes)}" if suffixes else ""))
    if suffixes is not None and path.suffix.lower() not in suffixes:
        raise InputError(f"{what} {path}: unknown file type {path.suffix or '(no suffix)'!r}; "
                         f"use one of {', '.join(suffixes)}")
    check_writable(path, what)
    remove_stale_partials(path.parent, path.name)
    return path


def claim_dir(path: str | os.PathLike, verb: str) -> Path:
    """Create (if needed) a folder that ``psohead VERB`` writes into file by file, mark it as its
    output and remove stale temp files there; call it after :func:`check_output_dir`, right before
    the first file is written, so a run that fails early leaves no folder behind."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    if read_marker(path) is None:
        write_marker(path, verb)
    remove_stale_partials(path)
    return path


# ---------------------------------------------------------------------------------------------
# Files

def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path`` (same suffix, so writers pick the same format);
    rename it onto ``path`` when the block succeeds, delete it when the block raises."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_path(path)
    try:
        yield tmp
        # Some writers (safetensors) create 0600 files; outputs get the mode a plain open() gives.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json(path: str | os.PathLike, obj) -> Path:
    return write_text(path, json.dumps(obj, indent=1) + "\n")


def write_image(path: str | os.PathLike, image, **save_options) -> Path:
    """A uint8 [H,W] or [H,W,3] array as an image file (format from the suffix, e.g. .png);
    ``save_options`` go to PIL (``compress_level=1`` for bulk dataset writing)."""
    import numpy as np
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(np.asarray(image)).save(tmp, **save_options)
    return Path(path)


# ---------------------------------------------------------------------------------------------
# Folders

def _files(folder: Path) -> list[str]:
    """Relative posix paths of every file under ``folder`` but the marker."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                  if not p.is_dir() and p.name != MARKER)


def _entries(folder: Path) -> list[str]:
    """Relative posix paths of every file and folder under ``folder`` but the marker."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.name != MARKER)


def _with_parents(files: list[str]) -> set[str]:
    out = set()
    for rel in files:
        parts = rel.split("/")
        out.update("/".join(parts[:i]) for i in range(1, len(parts) + 1))
    return out


class AtomicDir:
    """An output folder written aside (``.tmp``) and put in place by :meth:`commit`.

    The output is checked at once (:func:`check_output_dir`). On commit the new folder replaces
    the old one in one rename when the old one holds nothing but psohead's own files (or does not
    exist); when it holds other files too (allowed by ``overwrite``, or added by the user to an
    earlier output) psohead's new files are moved in one by one, in the order they were written
    (so a summary written last still marks completion), the earlier run's files are removed first,
    and nothing else is touched.
    """

    def __init__(self, path: str | os.PathLike, verb: str, overwrite: bool = False):
        self.path, self.verb, self.overwrite = Path(path), verb, overwrite
        check_output_dir(self.path, verb, overwrite=overwrite, replace=True)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_partials(self.path.parent, self.path.name)
        self.tmp = _partial_dir(self.path)
        self.tmp.mkdir()

    def commit(self) -> Path:
        try:
            # the folder may have changed during a long run
            check_output_dir(self.path, self.verb, overwrite=self.overwrite, replace=True)
            files = _files(self.tmp)
            write_marker(self.tmp, self.verb, files)
            previous = (read_marker(self.path) or {}).get("files") or [] if self.path.is_dir() else []
            if not self.path.exists():
                os.replace(self.tmp, self.path)
            elif set(_entries(self.path)) <= _with_parents(previous):  # nothing but psohead's own files
                old = _partial_dir(self.path)  # named as a partial: a kill right here leaves it for clean-up
                os.replace(self.path, old)
                os.replace(self.tmp, self.path)
                shutil.rmtree(old, ignore_errors=True)
            else:
                self._merge(files, previous)
        finally:
            self.abort()
        return self.path

    def _merge(self, files: list[str], old_files: list[str]) -> None:
        for rel in files:
            if (self.path / rel).is_dir():
                raise InputError(f"output folder {self.path}: a folder {rel} is in the way of psohead's file {rel}")
        write_marker(self.path, self.verb, sorted(set(files) | set(old_files)))  # a kill mid-way: all listed
        for rel in old_files:
            old = self.path / rel
            if old.is_file() or old.is_symlink():
                old.unlink()
                _remove_empty_parents(old.parent, self.path)
        for rel in sorted(files, key=lambda r: (self.tmp / r).stat().st_mtime_ns):
            (self.path / rel).parent.mkdir(parents=True, exist_ok=True)
            os.replace(self.tmp / rel, self.path / rel)
        write_marker(self.path, self.verb, files)

    def abort(self) -> None:
        if self.tmp.exists():
            shutil.rmtree(self.tmp, ignore_errors=True)


def _remove_empty_parents(folder: Path, root: Path) -> None:
    while folder != root and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
        folder = folder.parent


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, verb: str, overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty hidden sibling folder; on success it becomes ``path`` (:class:`AtomicDir`),
    on error it is removed."""
    out = AtomicDir(path, verb, overwrite)
    try:
        yield out.tmp
    except BaseException:
        out.abort()
        raise
    out.commit()
