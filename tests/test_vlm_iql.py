"""The VLM-labelled offline RL pipeline (`experiment=vlm_iql`) as a user runs it, at tiny budgets: the VLM arm against
a local OpenAI-compatible server (two queries per pair, nothing asked twice on resume), the scripted arm, the env's
reward, BC, and one clear error (no run directory left) for each bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from script_helpers import load_script, train_in_process

from embodied_rl.data import DatasetError, load_trajectories
from embodied_rl.data.preferences import PreferencePairs
from embodied_rl.trainers.builders import ConfigError

TASK = "metaworld/drawer-open-v3"
DATASET = "embodied_rl/metaworld-drawer-open-v3/medium-v0"


@pytest.fixture(scope="module")
def frames_root(tmp_path_factory) -> Path:
    """drawer-open's `medium` tier with 32-pixel frames and `expert` without frames: 3 episodes of 20 steps each."""
    root = tmp_path_factory.mktemp("minari")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MINARI_DATASETS_PATH", str(root))
        common = ["metaworld", "--tasks", "drawer-open-v3", "--episodes", "3", "--time-limit", "20"]
        common += ["--reference-episodes", "1", "--no-progress"]
        load_script("make_datasets").main([*common, "--tiers", "medium", "--frames", "32", "--no-shadows"])
        load_script("make_datasets").main([*common, "--tiers", "expert"])
    return root


@pytest.fixture
def minari_root(frames_root, monkeypatch) -> Path:
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(frames_root))
    return frames_root


def vlm_args(run_dir: Path, *extra: str) -> list[str]:
    return [
        "experiment=vlm_iql",
        f"env.task={TASK}",
        "trainer.dataset=medium",
        "env.time_limit=20",
        "env.shadows=false",
        "vlm_iql.labelling.num_pairs=8",
        "vlm_iql.labelling.chunk_size=4",
        "vlm_iql.reward.steps=6",
        "vlm_iql.reward.eval_every=3",
        "vlm_iql.reward.batch_size=4",
        "vlm_iql.reward.num_filters=4",
        "vlm_iql.reward.num_layers=1",
        "vlm_iql.reward.hidden_dims=[8]",
        "vlm_iql.reward.shift_pad=1",
        "vlm_iql.build_datasets=false",
        "agent.hidden_dims=[16,16]",
        "trainer.total_updates=10",
        "trainer.batch_size=16",
        "trainer.eval_every=10",
        "trainer.eval_episodes=1",
        "trainer.eval_videos=0",
        "trainer.checkpoint_every=5",
        "trainer.log_every=5",
        "trainer.progress=false",
        "logging.console=false",
        "logging.tensorboard=false",
        "device=cpu",
        f"run_dir={run_dir}",
        *extra,
    ]


def brighter_image(request) -> str:
    """The local server's answers: the analysis prefers the brighter frame, the label reads the analysis."""
    if request.images:
        first, second = (float(image.mean()) for image in request.images)
        return f"Image {1 if first >= second else 2} is further along ({first:.1f} vs {second:.1f})."
    return request.text.split("---")[1].split()[1]


def test_vlm_arm_asks_two_queries_per_pair_and_a_resume_asks_nothing_again(minari_root, tmp_path):
    from llm_server import OpenAICompatibleServer

    run_dir = tmp_path / "vlm"
    with OpenAICompatibleServer(answer=brighter_image) as server:
        llm = [f"llm.base_url={server.url}", f"llm.cache_dir={tmp_path / 'cache'}", "llm.model=test-vlm"]
        results = train_in_process(vlm_args(run_dir, *llm))
        assert server.requests == 16  # 8 pairs x (analysis + label)
        assert results["updates"] == 10
        report = json.loads((run_dir / "vlm_iql.json").read_text())
        assert report["arm"] == "vlm" and report["labelling"]["labelled"] == 8 and report["labelling"]["complete"]
        labels = PreferencePairs.load(run_dir / "labels" / "labels.npz")
        assert labels.source == "vlm:test-vlm" and labels.segment_length == 1 and len(labels) == 8
        # the labels are the server's: image 1 preferred exactly when the first frame is the brighter one
        frames = {t.episode_id: t.frames for t in load_trajectories(DATASET)}
        brighter = [
            frames[e1][t1].mean() >= frames[e2][t2].mean()
            for e1, t1, e2, t2 in zip(labels.episode_1, labels.start_1, labels.episode_2, labels.start_2)
        ]
        np.testing.assert_array_equal(labels.label, np.array(brighter, dtype=np.float32))
        assert (run_dir / "vlm_iql" / "reward_model.pt").exists() and (run_dir / "reward" / "metrics.csv").exists()
        assert (run_dir / "labels" / "llm_usage.json").exists()
        model_time = (run_dir / "vlm_iql" / "reward_model.pt").stat().st_mtime_ns

        more = vlm_args(run_dir, *llm, "resume=true", "trainer.total_updates=15", "llm.concurrency=2")
        assert train_in_process(more)["updates"] == 15
        assert server.requests == 16  # nothing asked again
        assert (run_dir / "vlm_iql" / "reward_model.pt").stat().st_mtime_ns == model_time  # not trained again


def test_scripted_arm_labels_the_same_frame_pairs_without_any_llm(minari_root, tmp_path, monkeypatch):
    from embodied_rl.pipelines.vlm_iql import VLMIQLPipeline
    from embodied_rl.rewards import load_image_reward_model

    prepared = []
    original = VLMIQLPipeline.prepare
    monkeypatch.setattr(VLMIQLPipeline, "prepare", lambda *args: prepared.append(original(*args)) or prepared[-1])
    run_dir = tmp_path / "scripted"
    train_in_process(vlm_args(run_dir, "vlm_iql.arm=scripted", "vlm_iql.labelling.noise=0.25", "llm.base_url=x"))
    # the offline learner gets every transition relabelled with the reward of the frame it leads to
    model = load_image_reward_model(run_dir / "vlm_iql" / "reward_model.pt")
    for before, after in zip(load_trajectories(DATASET), prepared[0]):
        np.testing.assert_allclose(after.rewards, model.predict(before.frames[1:]), rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(after.infos["env_reward"], before.rewards)
    report = json.loads((run_dir / "vlm_iql.json").read_text())
    labelling = report["labelling"]
    assert labelling["teacher"] == "scripted" and labelling["usage"]["queries"] == 0
    assert labelling["flipped"] == 2 and labelling["agreement_before_noise"] == 1.0  # 2 of 8 labels flipped
    assert set(report["return_correlation"]) == {"pearson", "spearman"}
    config = (run_dir / "config.yaml").read_text()
    assert "name: vlm_iql_scripted" in config


def test_env_reward_and_bc_arms_label_nothing(minari_root, tmp_path):
    for name, extra in [("env", ["vlm_iql.arm=env_reward"]), ("bc", ["vlm_iql.arm=env_reward", "agent=bc"])]:
        run_dir = tmp_path / name
        assert train_in_process(vlm_args(run_dir, *extra))["updates"] == 10
        assert not (run_dir / "labels").exists() and not (run_dir / "vlm_iql.json").exists()


def test_bc_with_a_labelling_arm_is_refused_before_any_output(minari_root, tmp_path):
    with pytest.raises(ConfigError, match="vlm_iql.arm=env_reward"):
        train_in_process(vlm_args(tmp_path / "bc", "agent=bc"))
    assert not (tmp_path / "bc").exists()


def test_a_dataset_without_frames_is_a_clear_error_with_the_command_that_builds_it(minari_root, tmp_path):
    with pytest.raises(DatasetError, match="--frames 64 --overwrite"):
        train_in_process(vlm_args(tmp_path / "noframes", "vlm_iql.arm=scripted", "trainer.dataset=expert"))
    assert not (tmp_path / "noframes").exists()


def test_bad_settings_are_refused_before_any_output(minari_root, tmp_path):
    with pytest.raises(ConfigError, match="vlm_iql.arm"):
        train_in_process(vlm_args(tmp_path / "arm", "vlm_iql.arm=gpt"))
    with pytest.raises(ConfigError, match="no_such_key"):
        train_in_process(vlm_args(tmp_path / "llm", "+llm.no_such_key=1"))
    assert not (tmp_path / "arm").exists() and not (tmp_path / "llm").exists()


def test_a_missing_tier_is_built_with_frames_first(minari_root, tmp_path):
    extra = ["vlm_iql.arm=scripted", "trainer.dataset=random", "vlm_iql.build_datasets=true"]
    extra += ["vlm_iql.dataset_episodes=2", "vlm_iql.frames=16"]
    assert train_in_process(vlm_args(tmp_path / "built", *extra))["updates"] == 10
    trajectories = load_trajectories("embodied_rl/metaworld-drawer-open-v3/random-v0")
    assert len(trajectories) == 2 and trajectories[0].frames.shape == (21, 16, 16, 3)  # the env's 20-step limit


def test_failed_queries_stop_the_run_with_a_clear_error_and_a_resume_asks_only_those(minari_root, tmp_path):
    from llm_server import OpenAICompatibleServer

    from embodied_rl.llm import LLMError

    run_dir = tmp_path / "failing"
    with OpenAICompatibleServer(answer=brighter_image) as server:
        llm = [f"llm.base_url={server.url}", f"llm.cache_dir={tmp_path / 'cache'}", "llm.model=test-vlm"]
        server.fail_next("malformed", times=2)  # two analysis queries get no usable answer (not retried)
        with pytest.raises(LLMError, match="6 of 8 frame pairs answered .* resume=true"):
            train_in_process(vlm_args(run_dir, *llm))
        assert server.requests == 14 and (run_dir / "labels" / "progress.jsonl").exists()
        assert train_in_process(vlm_args(run_dir, *llm, "resume=true"))["updates"] == 10
        assert server.requests == 18  # only the two failed pairs' queries again
        assert json.loads((run_dir / "vlm_iql.json").read_text())["labelling"]["labelled"] == 8


def test_a_tier_without_frames_is_rebuilt_with_the_same_episodes_and_frames(minari_root, tmp_path):
    from embodied_rl.data import dataset_id_for

    dataset_id = dataset_id_for(TASK, "expert")
    before = load_trajectories(dataset_id)
    assert before[0].frames is None
    extra = ["vlm_iql.arm=scripted", "trainer.dataset=expert", "vlm_iql.build_datasets=true", "vlm_iql.frames=16"]
    extra += ["vlm_iql.dataset_episodes=1"]  # not used: the stored tier's 3 episodes are built again
    train_in_process(vlm_args(tmp_path / "rebuilt", *extra))
    after = load_trajectories(dataset_id)
    assert len(after) == len(before) == 3 and after[0].frames.shape == (21, 16, 16, 3)
    for old, new in zip(before, after):
        np.testing.assert_array_equal(old.observations, new.observations)
        np.testing.assert_array_equal(old.actions, new.actions)
