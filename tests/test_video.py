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


def test_write_video_keeps_the_frame_rate(tmp_path):
    import imageio.v2 as imageio

    out = write_video(tmp_path / "v.mp4", _frames(16, 16, n=4), fps=12)
    with imageio.get_reader(out) as reader:
        assert reader.get_meta_data()["fps"] == pytest.approx(12)


def test_evaluation_videos_play_in_real_time_unless_told_otherwise(tmp_path):
    """One frame per env step at the env's render_fps (Meta-World 80, Hopper 125), not a fixed 30."""
    import gymnasium as gym
    import imageio.v2 as imageio

    from embodied_rl.trainers.evaluation import evaluate_policy

    class Blinker(gym.Env):
        metadata = {"render_modes": ["rgb_array"], "render_fps": 12}
        observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

        def reset(self, seed=None, options=None):
            self.t = 0
            return np.zeros(1, np.float32), {}

        def step(self, action):
            self.t += 1
            return np.zeros(1, np.float32), 0.0, False, self.t == 3, {}

        def render(self):
            return np.full((16, 16, 3), 60 * self.t, np.uint8)

    policy = lambda obs: np.zeros(1, np.float32)  # noqa: E731
    for fps, expected in ((None, 12), (5, 5)):
        result = evaluate_policy(policy, Blinker(), 1, video_dir=tmp_path / str(fps), fps=fps)
        with imageio.get_reader(result["per_episode"][0]["video"]) as reader:
            assert reader.get_meta_data()["fps"] == pytest.approx(expected)


def test_without_imageio_ffmpeg_opencv_writes_the_video(tmp_path, monkeypatch):
    """A machine without imageio-ffmpeg (a GPU machine set up from device_wheels.sh) falls back to OpenCV."""
    from embodied_rl.logging import video

    cv2 = pytest.importorskip("cv2")  # runs where OpenCV is installed (the GPU machines' image has it)
    monkeypatch.setattr(video, "_has_imageio_ffmpeg", lambda: False)
    frames = _frames(15, 16, n=5)  # odd height: padded to 16
    out = write_video(tmp_path / "v.mp4", frames, fps=12)
    capture = cv2.VideoCapture(str(out))
    read = []
    while (frame := capture.read()[1]) is not None:
        read.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(12)
    assert len(read) == 5 and read[0].shape == (16, 16, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.mp4"]


def test_without_imageio_ffmpeg_or_opencv_the_error_says_what_to_install(tmp_path, monkeypatch):
    import sys

    from embodied_rl.logging import video

    monkeypatch.setattr(video, "_has_imageio_ffmpeg", lambda: False)
    monkeypatch.setitem(sys.modules, "cv2", None)  # import cv2 raises ImportError
    with pytest.raises(RuntimeError, match=r"imageio\[ffmpeg\].*or OpenCV"):
        write_video(tmp_path / "v.mp4", _frames(16, 16))
    assert list(tmp_path.iterdir()) == []
