"""Everything a reconstruction writes, into a hidden partial folder that is renamed when complete.

A run killed half-way leaves only ``.<name>.partial-...`` (never a folder named like the
requested one; the next run on the same folder removes it); a rerun replaces an earlier
reconstruction only once the new one is complete, and never touches files psohead did not write
(:mod:`psohead.atomic`).
"""
from __future__ import annotations

import json
import math
import os
import time
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from ..atomic import atomic_dir
from ..camera import format_label
from ..io.images import to_uint8
from ..progress import ProgressLike, announce

VIEW_YAWS_DEG = (0, 45, 90, 135, 180, 225, 270, 315)
# Views per render call when the preset leaves it open. On the CPU the renderer's large
# per-sample tensors are memory-bound: 2 views per call measured 20% faster per view than 8.
CUDA_RENDER_BATCH, CPU_RENDER_BATCH = 8, 2
OUTPUT_VERB = "reconstruct"  # the marker of a reconstruction folder
OUTPUT_FILES = ("crop.png", "label.json", "views.png", "front.png", "back.png", "turntable.mp4", "head.ply",
                "head.obj", "head.glb", "latent.safetensors", "generator.safetensors", "report.html",
                "reconstruction.json")


def _side_by_side(*images: np.ndarray) -> np.ndarray:
    h = max(i.shape[0] for i in images)
    return np.concatenate([i if i.shape[0] == h else np.asarray(Image.fromarray(i).resize((h, h)))
                           for i in images], 1)


def _last_value(values: list):
    """The last logged value of a curve (views that take turns have None at the other steps)."""
    return next((v for v in reversed(values) if v is not None), None)


def _downsample(values: list[float], n: int = 400) -> list[float]:
    if len(values) <= n:
        return values
    idx = np.linspace(0, len(values) - 1, n).round().astype(int)
    return [values[i] for i in idx]


def write_outputs(rec, out: str | os.PathLike, progress: ProgressLike = True, overwrite: bool = False) -> Path:
    """Write every output of ``rec`` (a Reconstruction) into ``out`` as its preset's ``outputs``
    section says; returns the folder. ``overwrite``: ``out`` may hold other files (kept)."""
    from ..export.latent import save_latent
    from ..export.mesh import MeshError, sample_density, write_head_meshes
    from ..export.report import write_report
    from ..export.video import write_turntable
    from ..atomic import write_image
    from ..export.views import render_views, save_grid

    cfg = rec.preset.outputs
    out = Path(out)
    timings = {}
    with atomic_dir(out, OUTPUT_VERB, overwrite=overwrite) as tmp:
        G, ws, delta = rec.G, rec.ws, rec.delta
        batch = cfg.render_batch or (CUDA_RENDER_BATCH if ws.device.type == "cuda" else CPU_RENDER_BATCH)
        t = time.perf_counter()
        front_render = to_uint8(rec.render(rec.render_label))[0]
        announce(progress, "views", preview=front_render)  # the final head, while the rest is written
        rec.crop.save(tmp / "crop.png")
        if rec.mask is not None:
            rec.mask.save(tmp / "mask.png")
        (tmp / "label.json").write_text(json.dumps({"label": format_label(rec.label[0]),
                                                    "delta": rec.delta[0].tolist()}, indent=1) + "\n")
        crop = np.asarray(rec.crop.resize(front_render.shape[1::-1]))
        write_image(tmp / "front.png", _side_by_side(crop, front_render))
        back_render = to_uint8(rec.render(rec.back_label()))[0]
        panels = [to_uint8(rec.pivot_back)[0]]
        # the back target, unless it is the pivot's render unchanged (a prior without colour shift)
        panels += [to_uint8(v.image)[0] for v in rec.views if v.name == "back"
                   and (v.source != "prior" or "prior_colour_shift" in rec.back)]
        write_image(tmp / "back.png", _side_by_side(*panels, back_render))
        timings["views"] = time.perf_counter() - t

        t = time.perf_counter()
        # The still views at yaws the turntable passes through are its frames (same camera, pitch
        # and offset): only the others are rendered again.
        at_frame = {a * cfg.video_frames // 360: a for a in VIEW_YAWS_DEG if a * cfg.video_frames % 360 == 0}
        stills: dict[int, np.ndarray] = {}

        def keep(index: int, frame: np.ndarray) -> None:
            if index in at_frame:
                stills[at_frame[index]] = frame.copy()

        write_turntable(G, ws, tmp / "turntable.mp4", frames=cfg.video_frames, fps=cfg.video_fps, delta=delta,
                        batch_size=batch, progress=progress, on_frame=keep)
        timings["video"] = time.perf_counter() - t

        t = time.perf_counter()
        missing = [a for a in VIEW_YAWS_DEG if a not in stills]
        if missing:
            rendered = render_views(G, ws, [math.radians(a) for a in missing], delta=delta,
                                    batch_size=batch, deterministic=True)
            stills.update(zip(missing, rendered))
        save_grid(np.stack([stills[a] for a in VIEW_YAWS_DEG]), tmp / "views.png", cols=4,
                  captions=[f"yaw {a}" for a in VIEW_YAWS_DEG])
        timings["views"] += time.perf_counter() - t

        t = time.perf_counter()
        announce(progress, "mesh")
        options = cfg.mesh_options()
        # density.mrc needs the raw field everywhere; the mesh alone samples finely near the surface only
        grid = sample_density(G, ws, cfg.mesh_resolution, progress=progress) if cfg.density else None
        mesh_info = {"written": False}  # outputs.mesh off
        try:
            if cfg.mesh:
                mesh_info = write_head_meshes(G, ws, tmp, options, delta=delta,
                                              render_overrides=rec.render_overrides,
                                              photo=(rec.crop, rec.label) if options.texture_from_photo else None,
                                              grid=grid, progress=progress)
        except MeshError as err:  # an empty density field must not cost the other outputs
            warnings.warn(f"no mesh written: {err}")
            mesh_info = {"error": str(err), "resolution": cfg.mesh_resolution}
        if grid is not None:
            from ..export.volume import write_mrc

            write_mrc(grid.sigma, tmp / "density.mrc", voxel_size=grid.voxel_size, origin=(grid.origin,) * 3)
        timings["mesh"] = time.perf_counter() - t

        t = time.perf_counter()
        announce(progress, "save")
        save_latent(tmp / "latent.safetensors", ws, label=rec.label, delta=rec.delta,
                    meta={"preset": rec.preset.name, "back": rec.back["used"]})
        _save_generator(G, tmp / "generator.safetensors")
        timings["save"] = time.perf_counter() - t

        summary = {
            "version": 1, "settings": rec.settings, "back": rec.back, "perceptual": rec.perceptual,
            "label": rec.label[0].tolist(), "delta": rec.delta[0].tolist(),
            "views": [{"name": v.name, "source": v.source, "weight": v.weight, "label": v.label[0].tolist()}
                      for v in rec.views],
            "timings": {**rec.timings, **{f"write_{k}": v for k, v in timings.items()}},
            "mesh": mesh_info,
            "final_losses": {stage: {k: _last_value(v) for k, v in h.items() if v} for stage, h in rec.history.items()},
            "losses": rec.history,
            "files": sorted(p.name for p in tmp.iterdir()) + ["report.html", "reconstruction.json"],
        }
        announce(progress, "report")
        curves = {f"{stage} loss": {k: _downsample(v) for k, v in h.items() if k != "lr" and v}
                  for stage, h in rec.history.items()}
        write_report(tmp / "report.html", title="psohead reconstruction", summary=summary,
                     photo=rec.settings["input"] if Path(rec.settings["input"]).is_file() else rec.crop,
                     model=tmp / "head.glb" if (tmp / "head.glb").is_file() else None,
                     images={"input crop": tmp / "crop.png", "front: input | render": tmp / "front.png",
                             "back: pivot before tuning | target | final": tmp / "back.png",
                             "views": tmp / "views.png"},
                     video=tmp / "turntable.mp4", curves=curves,
                     settings=rec.settings, tables={"Pseudo back": rec.back},
                     files=summary["files"])
        (tmp / "reconstruction.json").write_text(json.dumps(summary, indent=1) + "\n")
    rec.out_dir = out
    return out


def _save_generator(G, path: Path) -> None:
    """The tuned generator in our safetensors format (``psohead.checkpoint.safetensors_io``)."""
    from ..checkpoint.safetensors_io import save_network

    save_network(G, path)
