"""crop_files(): many photos -> a PanoHead dataset folder, written atomically.

Layout: <outdir>/<stem>.jpg (or <stem>_<k>.jpg with all_faces), masks/<same stem>.png,
dataset.json, dataset_back.json (spec 7.5's back-view labels) and crop_report.json.
A bad file is reported and skipped; the run continues.
"""
from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

from tqdm import tqdm

from .. import camera
from ..atomic import atomic_path, write_json
from ..errors import InputError, PsoheadError
from .crop import CANVAS
from .native import check_installed
from ..io.images import list_images
from .pipeline import FaceTooSmallWarning, align_all


def _writable_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise InputError(f"output folder {path} is not writable ({err.strerror or err})") from None


def crop_files(inputs, outdir, size: int = CANVAS, all_faces: bool = False, with_mask: bool = True,
               skip_small: bool = False, progress: bool = True) -> dict:
    """Align every input; returns {"written": [...], "failed": {input: reason}, "warnings": [...]}."""
    check_installed()
    outdir = Path(outdir)
    paths = list_images(inputs)
    if not paths:
        raise InputError("no input images found")
    _writable_dir(outdir)
    if with_mask:
        _writable_dir(outdir / "masks")
    labels, back, report, failed, notes = [], [], {}, {}, []
    used: set[str] = set()
    for path in tqdm(paths, desc="crop", unit="img", disable=not progress):
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", FaceTooSmallWarning)
                faces = align_all(path, size=size, with_mask=with_mask, skip_small=skip_small, name=str(path),
                                  max_faces=None if all_faces else 1)
            notes += [str(w.message) for w in caught if issubclass(w.category, FaceTooSmallWarning)]
        except PsoheadError as err:
            failed[str(path)] = str(err)
            continue
        for k, face in enumerate(faces):
            stem = path.stem if not all_faces else f"{path.stem}_{k:02d}"
            while stem in used:  # same stem from two folders
                stem += "_"
            used.add(stem)
            name = f"{stem}.jpg"
            with atomic_path(outdir / name) as tmp:
                face.image.save(tmp, format="JPEG", quality=95)
            if face.mask is not None:
                with atomic_path(outdir / "masks" / f"{stem}.png") as tmp:
                    face.mask.save(tmp, format="PNG")
            labels.append([name, camera.format_label(face.label)])
            back.append([name, camera.format_label(camera.back_label(face.label))])
            report[name] = {"source": str(path), "face_index": k, **face.report}
    write_json(outdir / "dataset.json", {"labels": labels})
    write_json(outdir / "dataset_back.json", {"labels": back})
    write_json(outdir / "crop_report.json", {"faces": report, "failed": failed, "warnings": notes})
    return {"written": [lb[0] for lb in labels], "failed": failed, "warnings": notes}
