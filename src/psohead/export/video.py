"""Turntable videos: a 360-degree orbit of one latent, H.264 in an .mp4 that browsers play."""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch

from ..atomic import atomic_path
from ..camera import HEAD_LOOKAT, RADIUS
from ..errors import InputError
from ..io.images import to_uint8
from ..progress import ProgressLike, track
from .views import iter_renders, yaw_labels


# the cameras of every frame are made up front: this bounds them (and is minutes of video per turn)
MAX_TURNTABLE_FRAMES = 10_000


def turntable_yaws(frames: int, start_yaw: float = 0.0) -> torch.Tensor:
    """``frames`` yaws covering one full turn without repeating the first frame (radians)."""
    if not 1 <= frames <= MAX_TURNTABLE_FRAMES:
        raise InputError(f"frames must be in 1..{MAX_TURNTABLE_FRAMES}, got {frames}")
    return start_yaw + torch.arange(frames, dtype=torch.float64).float() * (2 * math.pi / frames)


def write_video(frames: Iterable[np.ndarray], path: str | os.PathLike, fps: float = 30, crf: int = 18,
                total: int | None = None, progress: ProgressLike = False) -> Path:
    """Encode uint8 [H,W,3] frames as H.264 (libx264, yuv420p, faststart) atomically.

    yuv420p needs even sizes, so odd widths/heights are padded by one black pixel.
    """
    import imageio_ffmpeg

    if fps <= 0:
        raise InputError(f"fps must be positive, got {fps}")
    path = Path(path)
    if path.suffix.lower() != ".mp4":
        raise InputError(f"video output must end in .mp4, got {path.name}")
    with atomic_path(path) as tmp:
        writer = None
        count = 0
        try:
            for frame in track(frames, "video", progress, total=total, unit="frame"):
                frame = np.asarray(frame)
                if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
                    raise InputError(f"video frames must be uint8 [H,W,3], got {frame.dtype} {frame.shape}")
                h, w = frame.shape[:2]
                frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)))
                if writer is None:
                    size = frame.shape[1], frame.shape[0]
                    writer = imageio_ffmpeg.write_frames(
                        str(tmp), size, fps=fps, codec="libx264", pix_fmt_in="rgb24", pix_fmt_out="yuv420p",
                        quality=None, macro_block_size=1, ffmpeg_log_level="error",
                        output_params=["-crf", str(crf), "-movflags", "+faststart"])
                    writer.send(None)
                elif (frame.shape[1], frame.shape[0]) != size:
                    raise InputError(f"video frame {count} has size {frame.shape[1]}x{frame.shape[0]}, "
                                     f"expected {size[0]}x{size[1]}")
                writer.send(np.ascontiguousarray(frame))
                count += 1
        finally:
            if writer is not None:
                writer.close()
        if count == 0:
            raise InputError("no frames to write")
    return path


def write_turntable(G, ws: torch.Tensor, path: str | os.PathLike, frames: int = 120, fps: float = 30,
                    pitch: float = 0.0, radius: float = RADIUS, lookat: Sequence[float] = HEAD_LOOKAT, delta=None,
                    start_yaw: float = 0.0, batch_size: int = 4, key: str = "image",
                    neural_rendering_resolution: int | None = None, deterministic: bool = True,
                    crf: int = 18, progress: ProgressLike = True,
                    on_frame: Callable[[int, np.ndarray], None] | None = None) -> Path:
    """Render a full orbit (yaw from ``start_yaw`` round 360 deg) and write it as an .mp4.

    Frames are rendered ``batch_size`` at a time and streamed to the encoder. Depth videos map
    the generator's ray range (ray_start..ray_end) to bright..dark, the same for every frame.
    ``on_frame(index, frame)`` sees each uint8 [H,W,3] frame as it goes to the encoder (e.g. to
    keep the ones that are also wanted as still views).
    """
    rk = getattr(G, "rendering_kwargs", {}) or {}
    depth_range = (float(rk["ray_start"]), float(rk["ray_end"])) if "ray_start" in rk and "ray_end" in rk else None
    labels = yaw_labels(turntable_yaws(frames, start_yaw), pitch=pitch, radius=radius, lookat=lookat, delta=delta)

    def frame_iter():
        index = 0
        for batch in iter_renders(G, ws, labels, batch_size=batch_size, key=key,
                                  neural_rendering_resolution=neural_rendering_resolution,
                                  deterministic=deterministic):
            for frame in to_uint8(batch, key, depth_range):
                if on_frame is not None:
                    on_frame(index, frame)
                index += 1
                yield frame

    return write_video(frame_iter(), path, fps=fps, crf=crf, total=frames, progress=progress)
