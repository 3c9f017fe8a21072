"""Write datasets in the psohead layout (folder or zip), atomically.

``images/<rel>.png`` + ``images/dataset.json`` + ``masks/<rel>.png``. The whole dataset is
written under a temporary name and renamed into place on ``close()``, so a crash never leaves a
half-written dataset behind.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import zipfile
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from ..camera import format_label, validate_label
from ..errors import InputError
from .dataset import check_dataset, decode_image, decode_mask, is_power_of_two, resize_square, scan_dataset, DatasetError


def _png_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


class DatasetWriter:
    """Collects (name, image, mask, label) and writes a folder or ``.zip`` dataset."""

    def __init__(self, out, overwrite: bool = False):
        self.out = Path(out)
        self.as_zip = self.out.suffix.lower() == ".zip"
        if self.out.exists() and not overwrite and (self.out.is_file() or any(self.out.iterdir())):
            raise InputError(f"{self.out} already exists and is not empty (choose another output)")
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.out.with_name(f".{self.out.name}.tmp-{os.getpid()}")
        self.labels: list[list] = []
        self._names: set[str] = set()
        if self.as_zip:
            self._zip = zipfile.ZipFile(self.tmp, "w", compression=zipfile.ZIP_STORED)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)
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
        if self.as_zip:
            self._zip.close()
        elif self.out.exists():
            shutil.rmtree(self.out)  # only reached when empty or overwrite was asked for
        os.replace(self.tmp, self.out)
        return self.out

    def abort(self) -> None:
        if self.as_zip:
            self._zip.close()
            self.tmp.unlink(missing_ok=True)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)


def pack_dataset(src, dst, seg_path=None, resolution: int | None = None, progress: bool = True) -> dict:
    """Check ``src`` (any accepted layout) and write it as a psohead-layout zip or folder.

    ``resolution`` resizes images (LANCZOS) and masks (bilinear) to a square power of two.
    """
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
    with DatasetWriter(dst) as writer:
        for e in entries:
            img = resize_square(decode_image(scan.images.read(e.image)), res)
            mask = resize_square(decode_mask(scan.masks.read(e.mask)), res, mask=True)
            writer.add(str(PurePosixPath(e.image).with_suffix("")), img, mask, e.label)
    return {**summary, "resolution": res, "out": str(dst)}
