"""Write a list of RGB frames to an mp4 file: imageio with its bundled ffmpeg (H.264), or, where
imageio-ffmpeg is not installed (e.g. a GPU machine set up from scripts/device_wheels.sh), OpenCV (MPEG-4 part 2)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def _even_frame(frame: np.ndarray) -> np.ndarray:
    """`frame` as uint8, edge-padded by at most one row/column to an even height and width."""
    frame = np.asarray(frame, dtype=np.uint8)
    pad_h, pad_w = frame.shape[0] % 2, frame.shape[1] % 2
    if pad_h or pad_w:
        widths = [(0, pad_h), (0, pad_w)] + [(0, 0)] * (frame.ndim - 2)
        frame = np.pad(frame, widths, mode="edge")
    return frame


def write_video(path: str | Path, frames: Sequence[np.ndarray], fps: float = 30) -> Path:
    """Encode `frames` (each (H, W, 3) uint8) as H.264 mp4 at `path`; returns the path.

    Odd heights/widths are edge-padded by one row/column (libx264 with yuv420p needs even sizes).
    The video is written to a temporary file next to `path` and renamed into place, so a failed
    encode never leaves an empty or partial file at `path`. Without imageio-ffmpeg, OpenCV's writer
    (codec mp4v) is used if OpenCV is installed.
    """
    if len(frames) == 0:
        raise ValueError(f"no frames to write to {path}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # ffmpeg creates the temporary file itself, so it gets the usual permissions (mkstemp's would be 0600)
    tmp = path.with_name(f".{path.stem}.partial{path.suffix or '.mp4'}")
    try:
        if _has_imageio_ffmpeg():
            _encode_with_imageio(tmp, frames, fps)
        else:
            _encode_with_opencv(tmp, frames, fps)
        if tmp.stat().st_size == 0:
            raise RuntimeError(f"the encoder wrote an empty video for {path}")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _has_imageio_ffmpeg() -> bool:
    try:
        import imageio_ffmpeg  # noqa: F401
    except ImportError:
        return False
    return True


def _encode_with_imageio(tmp: Path, frames: Sequence[np.ndarray], fps: float) -> None:
    import imageio.v2 as imageio

    # macro_block_size=1 stops imageio resizing to multiples of 16 (84x84 would become 96x96);
    # _even_frame supplies the even sizes that yuv420p needs.
    # Close explicitly: imageio's context manager skips close() on an exception, which would leave
    # ffmpeg running to create the temporary file after write_video has removed it.
    writer = imageio.get_writer(tmp, fps=fps, codec="libx264", macro_block_size=1, quality=7)
    try:
        for frame in frames:
            writer.append_data(_even_frame(frame))
    finally:
        writer.close()


def _encode_with_opencv(tmp: Path, frames: Sequence[np.ndarray], fps: float) -> None:
    try:
        import cv2
    except ImportError as err:
        raise RuntimeError("writing mp4 videos needs imageio-ffmpeg (pip install 'imageio[ffmpeg]') or OpenCV") from err
    first = _even_frame(frames[0])
    size = (first.shape[1], first.shape[0])  # (W, H)
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), size)
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write an mp4v video to {tmp}")
    try:
        for frame in frames:
            frame = _even_frame(frame)
            if (frame.shape[1], frame.shape[0]) != size:
                raise ValueError(f"frame of size {frame.shape[:2]} in a video of size {size[::-1]}")
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
