"""write_video: odd frame sizes are padded to even ones, and no partial file is left behind."""

from __future__ import annotations

import numpy as np
import pytest

from embodied_rl.logging.video import write_video


def _read(path):
    import imageio.v2 as imageio

    with imageio.get_reader(path) as reader:
        return [np.asarray(f) for f in reader]


def _frames(h, w, n=3):
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8) for _ in range(n)]


@pytest.mark.parametrize(("size", "expected"), [((65, 65), (66, 66)), ((63, 64), (64, 64)), ((64, 64), (64, 64))])
def test_write_video_pads_odd_sizes(tmp_path, size, expected):
    out = write_video(tmp_path / "v.mp4", _frames(*size), fps=10)
    assert out == tmp_path / "v.mp4" and out.stat().st_size > 0
    frames = _read(out)
    assert len(frames) == 3
    assert frames[0].shape[:2] == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.mp4"]  # no temporary file left
    assert out.stat().st_mode & 0o044, "a video must be readable by others (umask permitting), like any output"


def test_write_video_failure_leaves_no_file(tmp_path):
    bad = [np.zeros((8, 8, 3), np.uint8), np.zeros((10, 10, 3), np.uint8)]  # size change mid-video
    with pytest.raises(Exception):  # noqa: B017 - imageio/ffmpeg raise varied errors
        write_video(tmp_path / "v.mp4", bad)
    assert list(tmp_path.iterdir()) == []
