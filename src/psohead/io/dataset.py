"""Labelled head datasets with masks, as folders or zips (spec 3.4-3.5).

Layouts accepted (``path`` is a folder or an uncompressed/deflated zip):

* psohead layout: ``path/images/<rel>.<ext>`` + ``path/images/dataset.json`` +
  ``path/masks/<rel>.png`` (what ``psohead dataset pack``, SynthHeads-360 and FK-Enhance write);
* official layout: an image root holding ``dataset.json`` (``--img_data``) plus a separate mask
  root (``seg_path``, the official ``--seg_data``), each a folder or a zip.

Masks are matched to images by relative path without extension. Items are
``(image uint8 [3,R,R], mask uint8 [1,R,R], label float32 [25])``.
"""
from __future__ import annotations

import io
import json
import math
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from PIL import Image

from ..camera import LABEL_DIM, flip_label, parse_label, yaw_pitch_from_label
from ..errors import InputError, LabelError
from .images import IMAGE_SUFFIXES, read_array, read_mask

MAX_LISTED = 12  # offending entries named in a one-line error


class DatasetError(InputError):
    """A dataset is missing files or holds inconsistent entries; ``problems`` lists them all."""

    def __init__(self, where: str, problems: list[str]):
        self.problems = list(problems)
        shown = "; ".join(self.problems[:MAX_LISTED])
        more = len(self.problems) - MAX_LISTED
        tail = f"; ... and {more} more (run `psohead dataset check`)" if more > 0 else ""
        super().__init__(f"dataset {where}: {len(self.problems)} problem(s): {shown}{tail}")


# --------------------------------------------------------------------------------------------
# Sources: a folder or a zip, seen through a path prefix.

class Source:
    """Read-only file tree rooted at a folder or at a prefix inside a zip."""

    def __init__(self, path: str | os.PathLike, prefix: str = ""):
        self.path = Path(path)
        self.prefix = prefix
        self.is_zip = self.path.is_file()
        self._zip = None
        self._zip_pid = None

    def __repr__(self) -> str:
        return f"{self.path}{'::' + self.prefix if self.prefix else ''}"

    def _zipfile(self) -> zipfile.ZipFile:
        # A ZipFile handle must not cross a fork (DataLoader workers), so reopen per process.
        if self._zip is None or self._zip_pid != os.getpid():
            self._zip = zipfile.ZipFile(self.path)
            self._zip_pid = os.getpid()
        return self._zip

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_zip"] = state["_zip_pid"] = None
        return state

    def names(self) -> list[str]:
        """Sorted relative posix paths of all files but hidden ones (dot names: the temp files of
        writes killed half-way, which keep their image suffix, and the like of .DS_Store)."""
        if self.is_zip:
            n = len(self.prefix)
            out = [name[n:] for name in self._zipfile().namelist()
                   if name.startswith(self.prefix) and not name.endswith("/")]
        else:
            root = self.path / self.prefix if self.prefix else self.path
            out = [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()]
        return sorted(n for n in out if not any(part.startswith(".") for part in n.split("/")))

    def exists(self, name: str) -> bool:
        if self.is_zip:
            try:
                self._zipfile().getinfo(self.prefix + name)
                return True
            except KeyError:
                return False
        return (self.path / self.prefix / name).is_file()

    def read(self, name: str) -> bytes:
        if self.is_zip:
            return self._zipfile().read(self.prefix + name)
        return (self.path / self.prefix / name).read_bytes()


def _is_zip(path: Path) -> bool:
    return path.is_file() and zipfile.is_zipfile(path)


def open_layout(path, seg_path=None) -> tuple[Source, Source | None]:
    """Find (images, masks) sources for a dataset path (see module docstring)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"dataset {path}: no such file or folder")
    if path.is_dir():
        if (path / "images").is_dir():
            images = Source(path, "images/")
            masks = Source(path, "masks/") if (path / "masks").is_dir() else None
        else:
            images, masks = Source(path), None
    elif _is_zip(path):
        names = zipfile.ZipFile(path).namelist()
        if any(n.startswith("images/") for n in names) and "dataset.json" not in names:
            images = Source(path, "images/")
            masks = Source(path, "masks/") if any(n.startswith("masks/") for n in names) else None
        else:
            images, masks = Source(path), None
    else:
        raise InputError(f"dataset {path}: not a folder or a zip file")
    if seg_path is not None:
        seg_path = Path(seg_path)
        if not (seg_path.is_dir() or _is_zip(seg_path)):
            raise InputError(f"mask data {seg_path}: not a folder or a zip file")
        masks = Source(seg_path)
    return images, masks


# --------------------------------------------------------------------------------------------
# Scanning: the list of entries and everything wrong with it.

@dataclass
class Entry:
    image: str                 # relative path of the image under the image root
    mask: str | None           # relative path of its mask under the mask root
    label: torch.Tensor | None  # [25] float32


@dataclass
class Scan:
    images: Source
    masks: Source | None
    entries: list[Entry] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def _stem(name: str) -> str:
    return str(PurePosixPath(name).with_suffix(""))


def _read_label_file(images: Source, problems: list[str]) -> dict[str, list]:
    if not images.exists("dataset.json"):
        problems.append(f"{images}: no dataset.json (camera labels) in the image root")
        return {}
    try:
        data = json.loads(images.read("dataset.json"))
    except (ValueError, UnicodeDecodeError) as err:
        problems.append(f"{images}/dataset.json: not valid JSON ({err})")
        return {}
    labels = data.get("labels") if isinstance(data, dict) else None
    if not isinstance(labels, list):
        problems.append(f"{images}/dataset.json: expected {{\"labels\": [[name, [25 numbers]], ...]}}")
        return {}
    out = {}
    for i, item in enumerate(labels):
        if not (isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[0], str)):
            problems.append(f"dataset.json labels[{i}]: expected [name, [25 numbers]]")
            continue
        out[item[0].replace("\\", "/")] = item[1]
    return out


def scan_dataset(path, seg_path=None, require_masks: bool = True) -> Scan:
    """List entries and collect every problem that can be seen without decoding pixels."""
    images, masks = open_layout(path, seg_path)
    scan = Scan(images, masks)
    image_names = [n for n in images.names() if PurePosixPath(n).suffix.lower() in IMAGE_SUFFIXES]
    if not image_names:
        scan.problems.append(f"{images}: no image files found")
    raw_labels = _read_label_file(images, scan.problems)
    mask_by_stem = {}
    if masks is not None:
        for n in masks.names():
            if PurePosixPath(n).suffix.lower() in IMAGE_SUFFIXES:
                mask_by_stem.setdefault(_stem(n), n)
    elif require_masks:
        scan.problems.append(f"{path}: no masks folder (expected masks/ beside images/, or give the mask data)")
    for name in image_names:
        label = None
        if raw_labels:
            if name not in raw_labels:
                scan.problems.append(f"{name}: no label in dataset.json")
            else:
                values = raw_labels[name]
                if not isinstance(values, (list, tuple)) or len(values) != LABEL_DIM:
                    n = len(values) if isinstance(values, (list, tuple)) else "not a list of"
                    scan.problems.append(f"{name}: label has {n} numbers, expected {LABEL_DIM}")
                else:
                    try:
                        label = parse_label(values, what=f"{name}: label")[0]
                    except LabelError as err:
                        scan.problems.append(str(err))
        mask = mask_by_stem.get(_stem(name))
        if masks is not None and mask is None and require_masks:
            scan.problems.append(f"{name}: no mask (looked for {masks}/{_stem(name)}.*)")
        scan.entries.append(Entry(name, mask, label))
    listed = set(image_names)
    orphans = [n for n in raw_labels if n not in listed]
    for n in orphans:
        scan.problems.append(f"dataset.json names {n}, which is not an image in {images}")
    return scan


def _image_size(source: Source, name: str) -> tuple[int, int, str]:
    with Image.open(io.BytesIO(source.read(name))) as im:
        return im.size[0], im.size[1], im.mode


def check_dataset(path, seg_path=None, require_masks: bool = True, progress: bool = False) -> dict:
    """Validate a dataset fully (also image and mask sizes); raise DatasetError listing problems.

    Returns a summary: count, resolution, yaw histogram (|yaw| in 30-degree bins).
    """
    scan = scan_dataset(path, seg_path, require_masks)
    problems = list(scan.problems)
    sizes: dict[tuple[int, int], int] = {}
    entries = scan.entries
    if progress:
        from tqdm import tqdm
        entries = tqdm(entries, desc="checking", unit="img")
    for e in entries:
        try:
            w, h, mode = _image_size(scan.images, e.image)
        except Exception as err:  # PIL raises many types for corrupt files
            problems.append(f"{e.image}: cannot read image ({type(err).__name__})")
            continue
        sizes[(w, h)] = sizes.get((w, h), 0) + 1
        if w != h:
            problems.append(f"{e.image}: image is {w}x{h}, must be square")
        if e.mask is not None and scan.masks is not None:
            try:
                mw, mh, _ = _image_size(scan.masks, e.mask)
            except Exception as err:
                problems.append(f"{e.mask}: cannot read mask ({type(err).__name__})")
                continue
            if (mw, mh) != (w, h):
                problems.append(f"{e.mask}: mask is {mw}x{mh} but its image {e.image} is {w}x{h}")
    if len(sizes) > 1:
        common = max(sizes, key=sizes.get)
        problems.append(f"images have {len(sizes)} different sizes (most are {common[0]}x{common[1]}): "
                        + ", ".join(f"{w}x{h} x{n}" for (w, h), n in sorted(sizes.items())))
    if problems:
        raise DatasetError(str(path), problems)
    labels = torch.stack([e.label for e in scan.entries])
    yaw = yaw_pitch_from_label(labels)[0].abs().rad2deg()
    bins = ((yaw + 1e-3) // 30).clamp(max=5).long()  # +1e-3: 60.0 read back as 59.99997
    hist = torch.bincount(bins, minlength=6).tolist()
    res = next(iter(sizes))[0] if sizes else None
    return {"path": str(path), "count": len(scan.entries), "resolution": res,
            "masks": scan.masks is not None,
            "yaw_histogram_deg": {f"{30 * i}-{30 * (i + 1)}": n for i, n in enumerate(hist)}}


# --------------------------------------------------------------------------------------------
# Dataset

def decode_image(data: bytes, what: str = "dataset image") -> np.ndarray:
    """Encoded image bytes -> uint8 HWC RGB, through the one image reader."""
    return read_array(data, what)


def decode_mask(data: bytes, what: str = "dataset mask") -> np.ndarray:
    """Mask bytes -> uint8 HW (255 = foreground), through the one image reader."""
    return np.array(read_mask(data, what))


class HeadDataset(torch.utils.data.Dataset):
    """Images + masks + camera labels with the official pose filtering and mirroring.

    Filtering keeps |yaw| in [min_yaw, max_yaw] degrees (yaw of the camera centre, 0 = frontal,
    180 = back); images with |yaw| >= max(90, min_yaw) are repeated ``back_repeat`` times; then
    ``xflip`` appends a mirrored copy of everything (label mirrored, spec 3.3).
    """

    def __init__(self, path, seg_path=None, xflip: bool = False, min_yaw: float = 0.0,
                 max_yaw: float = 180.0, back_repeat: int = 1, max_items: int | None = None):
        scan = scan_dataset(path, seg_path, require_masks=True)
        if scan.problems:
            raise DatasetError(str(path), scan.problems)
        self.path = str(path)
        self.images, self.masks = scan.images, scan.masks
        self.names = [e.image for e in scan.entries]
        self.mask_names = [e.mask for e in scan.entries]
        self.raw_labels = torch.stack([e.label for e in scan.entries])
        w, h, _ = _image_size(self.images, self.names[0])
        self.resolution = w
        yaw_deg = yaw_pitch_from_label(self.raw_labels)[0].abs().rad2deg()
        keep = (yaw_deg >= min_yaw) & (yaw_deg <= max_yaw)
        index = []
        for i in torch.nonzero(keep).flatten().tolist():
            repeat = back_repeat if yaw_deg[i] >= max(90.0, min_yaw) else 1
            index += [(i, False)] * repeat
        if max_items is not None:
            index = index[:max_items]
        if xflip:
            index += [(i, True) for i, _ in index]
        if not index:
            raise InputError(f"dataset {path}: no image has |yaw| within [{min_yaw}, {max_yaw}] degrees")
        self.index = index
        self.xflip = xflip

    def __len__(self) -> int:
        return len(self.index)

    @property
    def num_raw(self) -> int:
        return len(self.names)

    def label(self, i: int) -> torch.Tensor:
        raw, flip = self.index[i]
        lab = self.raw_labels[raw]
        return flip_label(lab)[0] if flip else lab.clone()

    def all_labels(self) -> torch.Tensor:
        """Labels of every item after filtering, repetition and mirroring: [len, 25]."""
        raw = torch.tensor([i for i, _ in self.index])
        flip = torch.tensor([f for _, f in self.index])
        labels = self.raw_labels[raw].clone()
        labels[flip] = flip_label(labels[flip])
        return labels

    def __getitem__(self, i: int):
        raw, flip = self.index[i]
        img = decode_image(self.images.read(self.names[raw]), f"{self.path}: {self.names[raw]}")
        mask = decode_mask(self.masks.read(self.mask_names[raw]), f"{self.path}: {self.mask_names[raw]}")
        if img.shape[0] != self.resolution or img.shape[1] != self.resolution:
            raise InputError(f"dataset {self.path}: {self.names[raw]} is {img.shape[1]}x{img.shape[0]}, "
                             f"expected {self.resolution}x{self.resolution} like the first image")
        if mask.shape != img.shape[:2]:
            raise InputError(f"dataset {self.path}: mask {self.mask_names[raw]} is "
                             f"{mask.shape[1]}x{mask.shape[0]} but its image is {img.shape[1]}x{img.shape[0]}")
        if flip:
            img, mask = img[:, ::-1], mask[:, ::-1]
        img = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))
        mask = torch.from_numpy(np.ascontiguousarray(mask))[None]
        return img, mask, self.label(i)


# --------------------------------------------------------------------------------------------
# Helpers

def resize_square(img: np.ndarray, res: int, mask: bool = False) -> np.ndarray:
    """LANCZOS (images) or bilinear (masks) resize of a square uint8 array to res x res."""
    if img.shape[0] == res and img.shape[1] == res:
        return img
    im = Image.fromarray(img)
    return np.asarray(im.resize((res, res), Image.BILINEAR if mask else Image.LANCZOS))


def is_power_of_two(n: int) -> bool:
    return n >= 4 and 2 ** int(round(math.log2(n))) == n
