"""The stand-in VLM (scripts/stand_in_vlm.py, embodied_rl.labelling.stand_in): answers written by our code from the
true rewards, checked against them; and the vlm_iql pipeline run end to end on its recorded answers
(tests/fixtures/vlm_stand_in/, replayed with no server and no network)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from script_helpers import REPO, load_script, train_in_process
from test_vlm_iql import vlm_args

from embodied_rl.data import DatasetError, load_trajectories
from embodied_rl.data.preferences import PreferencePairs
from embodied_rl.data.trajectory import Trajectory
from embodied_rl.labelling import parse_label
from embodied_rl.labelling.frame_pairs import frame_pair_images, frame_pair_rewards, sample_frame_pairs
from embodied_rl.labelling.stand_in import MARK, StandInVLM
from embodied_rl.llm import LLMError

FIXTURES = REPO / "tests" / "fixtures" / "vlm_stand_in"
TASK = "metaworld/drawer-open-v3"
DATASET = "embodied_rl/metaworld-drawer-open-v3/medium-v0"
OSMESA = os.environ.get("MUJOCO_GL") == "osmesa"
NEEDS_OSMESA = pytest.mark.skipif(
    not OSMESA,
    reason=f"the fixtures' request keys hash frames rendered by OSMesa; MUJOCO_GL={os.environ.get('MUJOCO_GL')!r} "
    "renders other bytes",
)


def toy_trajectory(rewards: list[float], seed: int = 0) -> Trajectory:
    """An episode of random 8x8 frames (all different) with the given rewards: frame t's reward is rewards[t-1]."""
    steps = len(rewards)
    frames = np.random.default_rng(seed).integers(0, 256, size=(steps + 1, 8, 8, 3), dtype=np.uint8)
    return Trajectory(
        observations=np.zeros((steps + 1, 2), np.float32),
        actions=np.zeros((steps, 1), np.float32),
        rewards=np.array(rewards, np.float64),
        terminations=np.zeros(steps, bool),
        truncations=np.zeros(steps, bool),
        success=np.zeros(steps, bool),
        frames=frames,
    )


def ask(stand_in: StandInVLM, first: np.ndarray, second: np.ndarray) -> tuple[str, str]:
    """The analysis and label answers for one pair, the label query quoting the analysis as the prompt does."""
    analysis = stand_in.answer(SimpleNamespace(images=[first, second], text="goal"))
    label = stand_in.answer(SimpleNamespace(images=[], text=f"task\n---\n{analysis}\n---\nwhich? 1, 2 or none"))
    return analysis, label


def test_answers_name_the_frame_with_the_higher_true_reward():
    trajectory = toy_trajectory([0.1, 0.5, 0.5, 0.9, 0.2])
    frames = trajectory.frames
    stand_in = StandInVLM([trajectory])
    assert len(stand_in.rewards) == 5  # frames 1..5; the reset frame has no reward
    for t1, t2 in [(1, 4), (4, 1), (2, 5), (5, 3), (4, 2)]:
        analysis, label = ask(stand_in, frames[t1], frames[t2])
        higher = "1" if trajectory.rewards[t1 - 1] > trajectory.rewards[t2 - 1] else "2"
        assert label == higher and analysis.startswith(f"Image {higher} shows more progress") and MARK in analysis
        assert parse_label(label) == (1.0 if higher == "1" else 0.0)
    analysis, label = ask(stand_in, frames[2], frames[3])  # equal rewards
    assert "no visible difference" in analysis and label == "none" and parse_label(label) == 0.5
    # an image that is not a frame of the dataset (here: the reset frame) cannot be judged; the pair is dropped
    analysis, label = ask(stand_in, frames[0], frames[4])
    assert "cannot tell" in analysis and label == "none" and parse_label(label) == 0.5
    assert stand_in.counts.unknown == 1 and stand_in.counts.ties == 1 and stand_in.counts.analyses == 7


def test_mistake_flips_that_fraction_of_answers_the_same_way_every_time():
    trajectory = toy_trajectory(list(np.linspace(0.0, 1.0, 41)))
    frames = trajectory.frames
    pairs = [(t1, t2) for t1 in range(1, 42) for t2 in range(1, 42) if t1 != t2]
    truth = ["1" if t1 > t2 else "2" for t1, t2 in pairs]

    def labels(stand_in: StandInVLM) -> list[str]:
        return [ask(stand_in, frames[t1], frames[t2])[1] for t1, t2 in pairs]

    assert labels(StandInVLM([trajectory])) == truth
    assert labels(StandInVLM([trajectory], mistake=1.0)) == ["2" if label == "1" else "1" for label in truth]
    noisy = StandInVLM([trajectory], mistake=0.25, seed=3)
    first = labels(noisy)
    wrong = np.mean([a != b for a, b in zip(first, truth)])
    assert 0.2 < wrong < 0.3 and noisy.counts.flipped == sum(a != b for a, b in zip(first, truth))
    assert labels(StandInVLM([trajectory], mistake=0.25, seed=3)) == first  # seeded: the same answers again
    assert labels(StandInVLM([trajectory], mistake=0.25, seed=4)) != first


def test_the_script_serves_answers_over_the_protocol_and_stops_cleanly(tmp_path, monkeypatch):
    """scripts/stand_in_vlm.py on a dataset built here: frames survive the PNG round trip, Ctrl-C exits with 0."""
    from embodied_rl.llm import LLMClient, LLMSettings, user_message

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    make_tiny_dataset()
    trajectory = load_trajectories(DATASET)[0]
    command = [sys.executable, str(REPO / "scripts" / "stand_in_vlm.py"), "--task", "drawer-open-v3"]
    server = subprocess.Popen(
        [*command, "--dataset", "medium", "--delay-s", "0.01"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = server.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1"), server.stderr.read()
        client = LLMClient(LLMSettings(base_url=url, model="stand-in", cache_dir=None, max_attempts=1))
        answer = client.complete([user_message("Which image?", [trajectory.frames[2], trajectory.frames[15]])])
        higher = 1 if trajectory.rewards[1] > trajectory.rewards[14] else 2
        assert answer.text.startswith(f"Image {higher} shows more progress") and MARK in answer.text
    finally:
        server.send_signal(signal.SIGINT)
        _, errors = server.communicate(timeout=10)
    assert server.returncode == 0, errors
    assert '"analyses": 1' in errors and '"unknown": 0' in errors


# ---------------------------------------------------------------- the pipeline on the recorded answers


def make_tiny_dataset() -> None:
    """drawer-open's `medium` tier as tests/test_vlm_iql.py builds it: 3 episodes of 20 steps, 32-pixel frames."""
    common = ["metaworld", "--tasks", "drawer-open-v3", "--episodes", "3", "--time-limit", "20"]
    common += ["--reference-episodes", "1", "--no-progress", "--tiers", "medium", "--frames", "32", "--no-shadows"]
    load_script("make_datasets").main(common)


@pytest.fixture(scope="module")
def frames_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("minari")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MINARI_DATASETS_PATH", str(root))
        make_tiny_dataset()
    return root


def replay_args(run_dir: Path, *extra: str) -> list[str]:
    """The settings the fixtures were recorded with (tests/fixtures/vlm_stand_in/README.md: test_vlm_iql's tiny
    run), answered from them."""
    replay = ["llm.backend=replay", f"llm.replay_dir={FIXTURES}", "llm.cache_dir=null", "llm.model=stand-in"]
    return vlm_args(run_dir, *replay, *extra)


@NEEDS_OSMESA
def test_the_pipeline_runs_end_to_end_on_the_recorded_stand_in_answers(frames_root, tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(frames_root))
    run_dir = tmp_path / "replayed"
    assert train_in_process(replay_args(run_dir))["updates"] == 10
    labelling = json.loads((run_dir / "vlm_iql.json").read_text())["labelling"]
    assert labelling["complete"] and labelling["finished_pairs"] == 8 and labelling["labelled"] == 8
    assert labelling["usage"]["queries"] == 16 and labelling["usage"]["cached"] == 16  # every answer from the files
    assert labelling["usage"]["errors"] == 0 and labelling["llm_usage"]["this_client"]["requests"] == 0
    assert labelling["agreement_with_scripted"] == {"agreement": 1.0, "compared": 8, "reference_ties": 0}
    # the labels are the stand-in's: image 1 preferred exactly when frame 1 has the higher true reward
    labels = PreferencePairs.load(run_dir / "labels" / "labels.npz")
    assert labels.source == "vlm:stand-in" and len(labels) == 8
    first, second = frame_pair_rewards(labels, load_trajectories(DATASET))
    np.testing.assert_array_equal(labels.label, (first > second).astype(np.float32))
    analyses = [
        json.loads(line)["analysis"] for line in (run_dir / "labels" / "progress.jsonl").read_text().splitlines()
    ]
    assert all(MARK in analysis for analysis in analyses)


@NEEDS_OSMESA
def test_the_recorded_answers_are_what_the_stand_in_answers_now(frames_root, monkeypatch):
    """The fixtures are not stale: the stand-in of today gives every recorded analysis for the same frames."""
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(frames_root))
    trajectories = load_trajectories(DATASET)
    pairs, _ = sample_frame_pairs(trajectories, 8, seed=0)
    stand_in = StandInVLM(trajectories)
    expected = {stand_in.analysis(a, b) for a, b in zip(*frame_pair_images(pairs, trajectories))}
    recorded = [json.loads(path.read_text()) for path in FIXTURES.glob("*.json")]
    assert len(recorded) == 16
    assert {entry["text"] for entry in recorded if entry["request"]["messages"][-1].get("images") == 2} == expected


@NEEDS_OSMESA
def test_a_request_the_fixtures_do_not_hold_is_a_replay_miss(frames_root, tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(frames_root))
    run_dir = tmp_path / "miss"
    # today the pipeline stops at "only 0 labelled frame pairs" (a DatasetError) and the ReplayMiss is in the
    # labelling summary; a pipeline that raises the client's error itself passes too
    with pytest.raises((DatasetError, LLMError)):
        train_in_process(replay_args(run_dir, "llm.model=another-model"))
    summary = json.loads((run_dir / "labels" / "summary.json").read_text())
    assert summary["pending_pairs"] == 8 and summary["usage"]["errors"] == 8
    assert summary["usage"]["first_error"].startswith("ReplayMiss: replay backend: no stored answer for request")
    assert "another-model" in summary["usage"]["first_error"] and str(FIXTURES) in summary["usage"]["first_error"]
