"""Write datasets in the psohead layout (folder or zip), atomically.

``images/<rel>.png`` + ``images/dataset.json`` + ``masks/<rel>.png``. The whole dataset is
written under a temporary name and renamed into place on ``close()``, so a crash never leaves a
half-written dataset behind. A folder output follows :mod:`psohead.atomic`'s rules: it must be
new, empty or an earlier output of the same verb (``overwrite``: other files are kept).
"""
from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from ..atomic import AtomicDir, check_output_dir, check_output_file, partial_path
from ..camera import format_label, validate_label
from ..errors import InputError
from .dataset import check_dataset, decode_image, decode_mask, is_power_of_two, resize_square, scan_dataset, DatasetError


def _png_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


PACK_VERB = "dataset pack"  # the marker of a packed dataset folder


def check_dataset_output(out, verb: str, overwrite: bool = False, offer_overwrite: bool = True) -> Path:
    """Refuse, before any work, a dataset output that DatasetWriter(out, overwrite, verb) would
    refuse (``offer_overwrite``: as in :func:`~psohead.atomic.check_output_dir`)."""
    out = Path(out)
    if out.suffix.lower() != ".zip":
        return check_output_dir(out, verb, overwrite=overwrite, replace=True, offer_overwrite=offer_overwrite)
    check_output_file(out, (".zip",), "output dataset")
    if out.exists() and not overwrite:
        raise InputError(f"{out} already exists (choose another output)")
    return out


class DatasetWriter:
    """Collects (name, image, mask, label) and writes a folder or ``.zip`` dataset; ``verb`` is
    the command whose output it is (the folder's marker)."""

    def __init__(self, out, overwrite: bool = False, verb: str = PACK_VERB):
        self.out = Path(out)
        self.as_zip = self.out.suffix.lower() == ".zip"
        self.labels: list[list] = []
        self._names: set[str] = set()
        if self.as_zip:
            check_dataset_output(self.out, verb, overwrite)
            self.out.parent.mkdir(parents=True, exist_ok=True)
            self.tmp = partial_path(self.out)
            self._zip = zipfile.ZipFile(self.tmp, "w", compression=zipfile.ZIP_STORED)
        else:
            self._dir = AtomicDir(self.out, verb, overwrite=overwrite)
            self.tmp = self._dir.tmp
            (self.tmp / "images").mkdir(parents=True)
            (self.tmp / "masks").mkdir(parents=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *_):
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def _put(self, rel: str, data: bytes) -> None:
        if self.as_zip:
            self._zip.writestr(rel, data)
        else:
            path = self.tmp / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)

    def add(self, name: str, image: np.ndarray, mask: np.ndarray, label) -> None:
        """image uint8 HxWx3, mask uint8 HxW (255 = head), label 25 numbers; name without extension."""
        rel = str(PurePosixPath(name).with_suffix(".png"))
        if rel in self._names:
            raise InputError(f"duplicate dataset entry {rel}")
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise InputError(f"{rel}: image must be uint8 HxWx3, got {image.dtype} {image.shape}")
        if mask.dtype != np.uint8 or mask.shape != image.shape[:2]:
            raise InputError(f"{rel}: mask must be uint8 {image.shape[:2]}, got {mask.dtype} {mask.shape}")
        label = validate_label(np.asarray(label, dtype=np.float64).reshape(-1), what=f"{rel}: label")
        self._names.add(rel)
        self._put(f"images/{rel}", _png_bytes(image))
        self._put(f"masks/{rel}", _png_bytes(mask))
        self.labels.append([rel, format_label(label)])

    def add_file(self, rel: str, data: bytes) -> None:
        """Another file at the dataset root (e.g. a report), written with the rest."""
        self._put(rel, data)

    def close(self) -> Path:
        data = json.dumps({"labels": self.labels}, indent=0).encode()
        self._put("images/dataset.json", data)
        if not self.as_zip:
            return self._dir.commit()
        self._zip.close()
        os.replace(self.tmp, self.out)
        return self.out

    def abort(self) -> None:
        if self.as_zip:
            self._zip.close()
            self.tmp.unlink(missing_ok=True)
        else:
            self._dir.abort()


def pack_dataset(src, dst, seg_path=None, resolution: int | None = None, progress: bool = True) -> dict:
    """Check ``src`` (any accepted layout) and write it as a psohead-layout zip or folder.

    ``resolution`` resizes images (LANCZOS) and masks (bilinear) to a square power of two.
    """
    check_dataset_output(dst, PACK_VERB, offer_overwrite=False)
    summary = check_dataset(src, seg_path, progress=False)
    if resolution is not None and not is_power_of_two(resolution):
        raise InputError(f"--resolution {resolution}: must be a power of two >= 4")
    res = resolution or summary["resolution"]
    scan = scan_dataset(src, seg_path)
    if scan.problems:  # check_dataset raised already; kept for a changing source
        raise DatasetError(str(src), scan.problems)
    entries = scan.entries
    if progress:
        from tqdm import tqdm
        entries = tqdm(entries, desc="packing", unit="img")
    with DatasetWriter(dst, verb=PACK_VERB) as writer:
        for e in entries:
            img = resize_square(decode_image(scan.images.read(e.image)), res)
            mask = resize_square(decode_mask(scan.masks.read(e.mask)), res, mask=True)
            writer.add(str(PurePosixPath(e.image).with_suffix("")), img, mask, e.label)
    return {**summary, "resolution": res, "out": str(dst)}
