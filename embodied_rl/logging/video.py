"""Write a list of RGB frames to an mp4 file (imageio with its bundled ffmpeg)."""

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
    encode never leaves an empty or partial file at `path`.
    """
    import imageio.v2 as imageio

    if len(frames) == 0:
        raise ValueError(f"no frames to write to {path}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # ffmpeg creates the temporary file itself, so it gets the usual permissions (mkstemp's would be 0600)
    tmp = path.with_name(f".{path.stem}.partial{path.suffix or '.mp4'}")
    try:
        # macro_block_size=1 stops imageio resizing to multiples of 16 (84x84 would become 96x96);
        # _even_frame supplies the even sizes that yuv420p needs.
        # Close explicitly: imageio's context manager skips close() on an exception, which would leave
        # ffmpeg running to create the temporary file after it has been removed below.
        writer = imageio.get_writer(tmp, fps=fps, codec="libx264", macro_block_size=1, quality=7)
        try:
            for frame in frames:
                writer.append_data(_even_frame(frame))
        finally:
            writer.close()
        if tmp.stat().st_size == 0:
            raise RuntimeError(f"ffmpeg wrote an empty video for {path}")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
