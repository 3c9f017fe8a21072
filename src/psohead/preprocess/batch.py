"""crop_files(): many photos -> a PanoHead dataset folder, written atomically.

Layout: <outdir>/<stem>.jpg (or <stem>_<k>.jpg with all_faces), masks/<same stem>.png,
dataset.json, dataset_back.json (spec 7.5's back-view labels) and crop_report.json.
A bad file is reported and skipped; the run continues. When no face at all is found, nothing is
written (no folder is left behind).
"""
from __future__ import annotations

import warnings
from pathlib import Path

from tqdm import tqdm

from .. import camera
from ..atomic import atomic_path, check_output_dir, claim_dir, remove_stale_partials, write_json
from ..errors import InputError, PsoheadError
from .crop import CANVAS
from .native import check_installed
from ..io.images import list_images
from .pipeline import PreprocessWarning, align_all

CROP_VERB = "crop"  # the marker of a crop folder


def crop_files(inputs, outdir, size: int = CANVAS, all_faces: bool = False, with_mask: bool = True,
               skip_small: bool = False, progress: bool = True, overwrite: bool = False) -> dict:
    """Align every input; returns {"written": [...], "failed": {input: reason}, "warnings": [...]}.
    ``outdir`` must be new, empty or an earlier crop folder unless ``overwrite`` (other files kept)."""
    check_installed()
    outdir = Path(outdir)
    paths = list_images(inputs)
    if not paths:
        raise InputError("no input images found")
    check_output_dir(outdir, CROP_VERB, overwrite=overwrite)
    labels, back, report, failed, notes = [], [], {}, {}, []
    used: set[str] = set()
    for path in tqdm(paths, desc="crop", unit="img", disable=not progress):
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", PreprocessWarning)
                faces = align_all(path, size=size, with_mask=with_mask, skip_small=skip_small, name=str(path),
                                  max_faces=None if all_faces else 1)
            notes += [str(w.message) for w in caught if issubclass(w.category, PreprocessWarning)]
        except PsoheadError as err:
            failed[str(path)] = str(err)
            continue
        if not labels:
            claim_dir(outdir, CROP_VERB)
            remove_stale_partials(outdir / "masks")
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
    if not labels:
        return {"written": [], "failed": failed, "warnings": notes}
    write_json(outdir / "dataset.json", {"labels": labels})
    write_json(outdir / "dataset_back.json", {"labels": back})
    write_json(outdir / "crop_report.json", {"faces": report, "failed": failed, "warnings": notes})
    return {"written": [lb[0] for lb in labels], "failed": failed, "warnings": notes}
