"""One self-contained HTML page per reconstruction: every image, the video and the mesh are embedded
as base64 data URIs, the 3D viewer's script is inlined and loss curves are inline SVG, so the file
opens offline and can be mailed."""
from __future__ import annotations

import base64
import html
import io
import math
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from PIL import Image

from ..errors import InputError
from ..atomic import atomic_path

# @google/model-viewer's single-file build (three.js bundled), shipped with the package: see assets/NOTICE
MODEL_VIEWER_JS = Path(__file__).resolve().parents[1] / "assets" / "model-viewer.min.js"
PHOTO_MAX_SIDE = 640  # the input photo is shown downscaled: a 12 MP original would dominate the file
VIDEO_DISPLAY_PX = 512  # the turntable's display width; a 128² render is upscaled with crisp pixels

MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp",
        ".gif": "image/gif", ".mp4": "video/mp4", ".glb": "model/gltf-binary"}
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")
MAX_POINTS = 1000

STYLE = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
h1{font-size:1.6em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ddd}
figure{display:inline-block;margin:0 1em 1em 0;vertical-align:top}figcaption{font-size:.9em;color:#555}
img,video{max-width:100%;border:1px solid #ccc}table{border-collapse:collapse;font-size:.9em}
video.turntable{width:VIDEO_PXpx;image-rendering:pixelated}
model-viewer{width:100%;max-width:640px;height:480px;background:#f3f3f3;border:1px solid #ccc}
td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left;vertical-align:top}
svg text{font-size:11px;fill:#333}""".replace("VIDEO_PX", str(VIDEO_DISPLAY_PX))


def data_uri(item, mime: str | None = None) -> str:
    """base64 data URI of a uint8 image array (-> PNG), raw bytes, or a file path."""
    if isinstance(item, np.ndarray):
        buf = io.BytesIO()
        Image.fromarray(item).save(buf, format="PNG")
        payload, mime = buf.getvalue(), "image/png"
    elif isinstance(item, (bytes, bytearray)):
        payload = bytes(item)
    else:
        path = Path(item)
        if not path.is_file():
            raise InputError(f"report: file not found: {path}")
        payload = path.read_bytes()
        mime = mime or MIME.get(path.suffix.lower())
        if mime is None:
            raise InputError(f"report: cannot embed {path.name} (unknown type)")
    if mime is None:
        raise InputError("report: raw bytes need a MIME type")
    return f"data:{mime};base64,{base64.b64encode(payload).decode('ascii')}"


def _fmt(v: float) -> str:
    return f"{v:.3g}"


def svg_chart(series: Mapping[str, Sequence[float]], title: str = "", width: int = 520, height: int = 260,
              log: bool | None = None) -> str:
    """Inline SVG line chart of named curves (x = step index). ``log=None`` picks a log y axis when
    every value is positive and they span more than two decades."""
    clean = {k: np.asarray(v, dtype=np.float64).reshape(-1) for k, v in series.items()}
    clean = {k: v for k, v in clean.items() if np.isfinite(v).any()}
    if not clean:
        return f"<p>{html.escape(title)}: no data</p>"
    allv = np.concatenate([v[np.isfinite(v)] for v in clean.values()])
    if log is None:
        log = bool(allv.min() > 0 and allv.max() / allv.min() > 100)
    tf = np.log10 if log else (lambda a: a)
    lo, hi = float(tf(allv).min()), float(tf(allv).max())
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5
    n_max = max(len(v) for v in clean.values())
    ml, mr, mt, mb = 56, 10, 22, 28
    pw, ph = width - ml - mr, height - mt - mb

    def xy(i, y):
        x = ml + (i / max(n_max - 1, 1)) * pw
        return x, mt + (1 - (y - lo) / (hi - lo)) * ph

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">',
             f'<text x="{ml}" y="14" font-weight="bold">{html.escape(title)}</text>',
             f'<rect x="{ml}" y="{mt}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>']
    for t in range(5):
        y = lo + (hi - lo) * t / 4
        _, py = xy(0, y)
        label = _fmt(10 ** y if log else y)
        parts.append(f'<line x1="{ml}" x2="{ml + pw}" y1="{py:.1f}" y2="{py:.1f}" stroke="#eee"/>'
                     f'<text x="{ml - 4}" y="{py + 4:.1f}" text-anchor="end">{label}</text>')
    parts.append(f'<text x="{ml + pw}" y="{height - 8}" text-anchor="end">step {n_max - 1}</text>'
                 f'<text x="{ml}" y="{height - 8}">0</text>')
    for idx, (name, v) in enumerate(clean.items()):
        step = max(1, math.ceil(len(v) / MAX_POINTS))
        ii = [i for i in range(0, len(v), step) if np.isfinite(v[i]) and (not log or v[i] > 0)]
        pts = " ".join(f"{x:.1f},{y:.1f}" for x, y in (xy(i, tf(v[i])) for i in ii))
        color = PALETTE[idx % len(PALETTE)]
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{pts}"/>')
        parts.append(f'<text x="{ml + pw - 4}" y="{mt + 14 + 13 * idx}" text-anchor="end" fill="{color}">'
                     f'{html.escape(name)} ({_fmt(v[ii[-1]]) if ii else "-"})</text>')
    parts.append("</svg>")
    return "".join(parts)


def _flatten(d: Mapping, prefix: str = "") -> list[tuple[str, object]]:
    rows = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            rows.extend(_flatten(v, key + "."))
        else:
            rows.append((key, v))
    return rows


def _rows(pairs: Mapping) -> str:
    return "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in pairs.items())


def _table(d: Mapping) -> str:
    return f"<table>{_rows(dict(_flatten(d)))}</table>"


def format_seconds(value) -> str:
    """A duration as a person reads it: tenths below 10 s, whole seconds above, minutes past 100 s."""
    v = float(value)
    if not math.isfinite(v):
        return "-"
    if v < 0.05:
        return "< 0.1 s"
    if round(v, 1) < 10:
        return f"{v:.1f} s"
    if v < 100:
        return f"{v:.0f} s"
    return f"{v:.0f} s ({v / 60:.1f} min)"


def total_seconds(timings: Mapping[str, float]) -> float:
    """Wall time of a whole run from its timings: ``total`` when recorded, else the inversion's
    total plus the output writing (``write_*``), else the sum of every phase."""
    if "total" in timings:
        return float(timings["total"])
    if "inversion_total" in timings:
        return float(timings["inversion_total"]) + sum(float(v) for k, v in timings.items() if k.startswith("write_"))
    return sum(float(v) for v in timings.values())


def reconstruction_facts(summary: Mapping) -> dict[str, str]:
    """The settings a person asks about first (network, preset, back, device, total time) from a
    reconstruction.json summary (``settings``, ``back``, ``timings``); absent ones are left out."""
    settings = summary.get("settings") or {}
    preset = settings.get("preset") or {}
    back = summary.get("back") or {}
    facts = {}
    if "network" in settings:
        facts["network"] = str(settings["network"])
    if preset:
        steps = [(preset.get(stage) or {}).get("steps") if isinstance(preset.get(stage), Mapping)
                 else preset.get(f"{stage}_steps") for stage in ("stage1", "stage2")]  # nested or flat presets
        facts["preset"] = f"{preset.get('name')} ({steps[0]} + {steps[1]} steps)"
    if back:
        used, requested = back.get("used"), back.get("requested")
        facts["back of the head"] = str(used) if requested in (None, used) else f"{used} (asked: {requested})"
    if "device" in settings:
        precision = settings.get("precision") or (preset.get("runtime") or {}).get("precision")
        facts["device"] = str(settings["device"]) + (f", {precision}" if precision else "")
    if summary.get("timings"):
        facts["total time"] = format_seconds(total_seconds(summary["timings"]))
    return facts


def photo_uri(photo) -> str:
    """JPEG data URI of the input photo (path, PIL image or uint8 array), longest side at most
    ``PHOTO_MAX_SIDE`` and upright (EXIF orientation applied)."""
    from ..io.images import read_image

    im = read_image(photo, "report photo")
    im.thumbnail((PHOTO_MAX_SIDE, PHOTO_MAX_SIDE), Image.LANCZOS)
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=88)
    return data_uri(buf.getvalue(), "image/jpeg")


def model_viewer_script() -> str:
    """The vendored viewer as inline module-script text (its source-map comment dropped: the map is
    not shipped). Decoder locations point nowhere, so even a compressed model could not make the
    page reach the network; our meshes need none of them."""
    js = MODEL_VIEWER_JS.read_text(encoding="utf-8")
    js = "\n".join(line for line in js.splitlines() if not line.startswith("//# sourceMappingURL="))
    if "</script" in js.lower():  # would end the inline script early
        raise InputError(f"{MODEL_VIEWER_JS.name}: cannot be inlined (contains '</script')")
    config = ('self.ModelViewerElement={dracoDecoderLocation:"data:,",ktx2TranscoderLocation:"data:,",'
              'meshoptDecoderLocation:"data:,",lottieLoaderLocation:"data:,"};')
    return f"<script>{config}</script><script type=\"module\">{js}</script>"


def viewer_html(model) -> str:
    """An orbit viewer of a .glb (path or bytes) embedded as a data URI."""
    src = data_uri(model, "model/gltf-binary")
    return (f'<model-viewer id="head3d" src="{src}" alt="reconstructed 3D head" loading="eager" camera-controls '
            'interaction-prompt="none" shadow-intensity="0" exposure="1.1"></model-viewer>'
            "<p><small>Drag to turn the head, scroll or pinch to zoom.</small></p>")


def render_report(title: str = "psohead reconstruction", images: Mapping[str, object] | None = None,
                  video=None, curves: Mapping[str, Mapping[str, Sequence[float]]] | None = None,
                  settings: Mapping | None = None, tables: Mapping[str, Mapping] | None = None,
                  files: Sequence[str] = (), notes: str = "", photo=None, model=None,
                  summary: Mapping | None = None) -> str:
    """The HTML text. ``photo``: the input photo (path, PIL or uint8 array; shown downscaled);
    ``model``: a .glb (path or bytes) shown in an embedded orbit viewer; ``summary``: a
    reconstruction.json dict whose key facts and rounded timings head the page; ``images``:
    caption -> uint8 array or image path; ``video``: .mp4 path; ``curves``: chart title ->
    {curve name: values}; ``settings`` / ``tables``: (nested) dicts shown as tables; ``files``:
    names of sibling output files to link (relative links)."""
    body = [f"<h1>{html.escape(title)}</h1>"]
    if notes:
        body.append(f"<p>{html.escape(notes)}</p>")
    if summary:
        body.append(f'<table class="facts">{_rows(reconstruction_facts(summary))}</table>')
    if photo is not None:
        body.append(f'<h2>Input photo</h2><figure><img id="photo" src="{photo_uri(photo)}" alt="input photo"></figure>')
    if model is not None:
        body.append(f"<h2>3D head</h2>{viewer_html(model)}")
    if video is not None:
        body.append("<h2>Turntable</h2>")
        body.append(f'<video class="turntable" controls loop autoplay muted playsinline '
                    f'src="{data_uri(video, "video/mp4")}"></video>')
    if images:
        body.append("<h2>Images</h2>")
        for caption, item in images.items():
            body.append(f'<figure><img src="{data_uri(item)}" alt="{html.escape(caption)}">'
                        f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    if curves:
        body.append("<h2>Losses</h2>")
        body.extend(f"<figure>{svg_chart(series, name)}</figure>" for name, series in curves.items())
    if summary and summary.get("timings"):
        timings = {k: format_seconds(v) for k, v in summary["timings"].items()}
        body.append(f"<h2>Timings</h2><table>{_rows(timings)}</table>")
    for name, table in (tables or {}).items():
        body.append(f"<h2>{html.escape(name)}</h2>{_table(table)}")
    if settings:
        body.append(f"<h2>Settings</h2>{_table(settings)}")
    if files:
        links = "".join(f'<li><a href="{html.escape(f)}">{html.escape(f)}</a></li>' for f in files)
        body.append(f"<h2>Files</h2><ul>{links}</ul>")
    if model is not None:
        body.append(model_viewer_script())
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{STYLE}</style></head><body>{''.join(body)}</body></html>\n")


def write_report(path: str | os.PathLike, **kwargs) -> Path:
    """Write :func:`render_report` (same keyword arguments) atomically as UTF-8."""
    text = render_report(**kwargs)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")
    return Path(path)
