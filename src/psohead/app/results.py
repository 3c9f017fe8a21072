"""From a job's output folder to what the page shows and offers for download."""
from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path

DOWNLOAD_ORDER = ("head.glb", "head.obj", "head.ply", "turntable.mp4", "report.html")


@dataclass
class Results:
    glb: Path | None
    video: Path | None
    views: Path | None
    front: Path | None
    back: Path | None
    downloads: list[Path] = field(default_factory=list)  # the mesh files, video, report, then the zip
    first_look: bool = False  # a quick preview shown while the job's full run goes on, not its results


def _obj_companions(obj: Path) -> list[Path]:
    """The .mtl files an OBJ names and the texture images those name, when present beside it."""
    found = []
    for line in obj.read_text(errors="replace").splitlines()[:1000]:  # mtllib sits in the header
        if line.startswith("mtllib "):
            mtl = obj.with_name(Path(line[7:].strip()).name)
            if mtl.is_file():
                found.append(mtl)
                for mline in mtl.read_text(errors="replace").splitlines():
                    if mline.strip().startswith("map_"):
                        tex = obj.with_name(Path(mline.split()[-1]).name)
                        if tex.is_file() and tex not in found:
                            found.append(tex)
    return found


def zip_folder(folder: Path, dest: Path) -> Path:
    """Every file of ``folder`` in one zip (under a folder named like ``dest``'s stem)."""
    with zipfile.ZipFile(dest, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        for p in sorted(folder.iterdir()):
            if p.is_file():
                zf.write(p, f"{dest.stem}/{p.name}")
    return dest


def collect(out: Path, zip_path: Path | None = None) -> Results:
    """What ``out`` holds; ``zip_path`` (a zip of the whole folder) joins the downloads."""
    def maybe(name):
        return out / name if (out / name).is_file() else None

    downloads = []
    for name in DOWNLOAD_ORDER:
        if (p := maybe(name)) is not None:
            downloads.append(p)
            if name == "head.obj":
                downloads += _obj_companions(p)
    if zip_path is not None:
        downloads.append(zip_path)
    return Results(glb=maybe("head.glb"), video=maybe("turntable.mp4"), views=maybe("views.png"),
                   front=maybe("front.png"), back=maybe("back.png"), downloads=downloads)
