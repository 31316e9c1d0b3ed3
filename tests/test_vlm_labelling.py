"""VLM preference labelling of frame pairs (issue 21 section 2): frames in Meta-World tiers, frame-pair sampling, the
two-stage VLM teacher (against a fake client, and end to end against the local protocol server), answer parsing,
noise, agreement with the scripted teacher, resume, and scripts/vlm_label.py.

Synthetic trajectories carry frames whose every pixel is one value v, with the frame's reward rewards[t-1] = v,
so a fake VLM that prefers the brighter image agrees with the scripted teacher. The one Minari dataset with frames
is tiny (2 episodes of 20 steps, 32-pixel frames without shadows) and lives under a tmp MINARI_DATASETS_PATH.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from script_helpers import load_script

from embodied_rl.data import DatasetError, PreferencePairs, Trajectory, load_trajectories, open_dataset
from embodied_rl.envs.task_descriptions import goal_text
from embodied_rl.labelling import (
    ChatAPI,
    LabellingSettings,
    VLMPrompts,
    agreement,
    flip_fraction,
    frame_pair_images,
    frame_pair_rewards,
    load_settings,
    parse_label,
    run_labelling,
    sample_frame_pairs,
    scripted_frame_labels,
)
from embodied_rl.pipelines.offline_datasets import RecipeError, metaworld_tiers

TASK = "metaworld/drawer-open-v3"
GOAL = goal_text(TASK)


def synthetic(episodes: int = 3, steps: int = 12, levels: int | None = None) -> list[Trajectory]:
    """Frames filled with one value v per frame (v = 10 t + e, or t // levels with `levels`, which repeats frames);
    the reward of frame t (rewards[t-1]) is v."""
    out = []
    for e in range(episodes):
        values = np.array([(t // levels) if levels else 10 * t + e for t in range(steps + 1)])  # (T+1,)
        frames = np.broadcast_to(values[:, None, None, None], (steps + 1, 4, 4, 3)).astype(np.uint8)
        out.append(
            Trajectory(
                observations=np.zeros((steps + 1, 2), np.float32),
                actions=np.zeros((steps, 1), np.float32),
                rewards=values[1:].astype(np.float64),
                terminations=np.zeros(steps, bool),
                truncations=np.arange(steps) == steps - 1,
                success=np.zeros(steps, bool),
                frames=frames.copy(),
                episode_id=e,
            )
        )
    return out


# ---------------------------------------------------------------- a fake VLM with the LLMClient interface


class FakeCompletion:
    def __init__(self, text: str, cached: bool = False, refusal: str | None = None) -> None:
        self.text, self.cached, self.refusal = text, cached, refusal
        self.finish_reason, self.prompt_tokens, self.completion_tokens = "stop", 10, 2


class FakeVLM:
    """`complete_many` as LLMClient's: answers the analysis query by which image is brighter and the label query by
    the analysis; caches by content (a rerun sends nothing answered); `fail_after` calls raise (a dead endpoint)."""

    def __init__(self, cache: dict | None = None, label_answer=None, fail_after: int | None = None) -> None:
        self.cache = {} if cache is None else cache
        self.sent: list[list[dict]] = []  # conversations that were not answered from the cache
        self.calls = 0
        self.label_answer = label_answer  # analysis text -> answer text, replaces the default
        self.fail_after = fail_after

    @staticmethod
    def key(conversation: list[dict]) -> str:
        parts = []
        for message in conversation:
            parts.append(message["content"])
            parts.extend(image.tobytes().hex() for image in message.get("images", []))
        return json.dumps(parts)

    def answer(self, conversation: list[dict]) -> FakeCompletion:
        user = conversation[-1]
        if user.get("images"):
            first, second = (int(image.mean()) for image in user["images"])
            if first == second:
                return FakeCompletion("Both look the same: no visible difference.")
            return FakeCompletion(f"Image {1 if first > second else 2} is further along ({first} vs {second}).")
        analysis = user["content"].split("---")[1].strip()
        if self.label_answer is not None:
            return self.label_answer(analysis)
        return FakeCompletion("none" if "no visible" in analysis else analysis.split()[1])

    def complete_many(self, conversations, progress=True, desc="llm"):
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise ConnectionError("endpoint unreachable")
        results = []
        for conversation in conversations:
            key = self.key(conversation)
            if key in self.cache:
                results.append(FakeCompletion(self.cache[key].text, cached=True, refusal=self.cache[key].refusal))
                continue
            self.sent.append(conversation)
            result = self.answer(conversation)
            if not isinstance(result, BaseException):
                self.cache[key] = result
            results.append(result)
        return results


def fake_user_message(text: str, images=()) -> dict:
    return {"role": "user", "content": text, "images": list(images)}


def fake_chat(client: FakeVLM) -> ChatAPI:
    return ChatAPI(client, fake_user_message, lambda text: {"role": "system", "content": text})


def vlm_settings(**overrides) -> LabellingSettings:
    values = {**load_settings().__dict__, "llm": {"model": "fake"}, "chunk_size": 10, **overrides}
    return LabellingSettings.from_mapping(values)


# ---------------------------------------------------------------- frames in datasets


@pytest.fixture(scope="module")
def frames_root(tmp_path_factory) -> Path:
    """A random tier of drawer-open with 32-pixel frames (built by scripts/make_datasets.py) and an expert tier
    without frames."""
    root = tmp_path_factory.mktemp("minari")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MINARI_DATASETS_PATH", str(root))
        common = ["--tasks", "drawer-open-v3", "--episodes", "2", "--time-limit", "20", "--reference-episodes", "1"]
        load_script("make_datasets").main(
            ["metaworld", *common, "--tiers", "random", "--frames", "32", "--no-shadows", "--no-progress"]
        )
        load_script("make_datasets").main(["metaworld", *common, "--tiers", "expert", "--no-progress"])
    return root


@pytest.fixture
def minari_root(frames_root, monkeypatch) -> Path:
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(frames_root))
    return frames_root


def test_make_datasets_frames_option_stores_every_step_frame(minari_root):
    dataset_id = "embodied_rl/metaworld-drawer-open-v3/random-v0"
    trajectories = load_trajectories(dataset_id)
    assert len(trajectories) == 2
    for trajectory in trajectories:
        assert trajectory.frames.shape == (21, 32, 32, 3) and trajectory.frames.dtype == np.uint8
        assert len({trajectory.frames[t].tobytes() for t in range(21)}) > 10  # the arm moves: frames differ
    ours = open_dataset(dataset_id).storage.metadata["embodied_rl"]
    assert ours["record_frames"] is True
    assert ours["frames"] == {"size": 32, "camera": "corner4", "shadows": False}
    assert load_trajectories("embodied_rl/metaworld-drawer-open-v3/expert-v0")[0].frames is None


def test_a_tier_without_frames_differs_from_one_requested_with_frames(minari_root):
    tiny = {"time_limit": 20, "reference_episodes": 1, "progress": False}
    with pytest.raises(RecipeError, match=r"tier expert .* record_frames False \(requested True\);"):
        metaworld_tiers(TASK, 2, tiers=["expert"], frames=32, shadows=False, **tiny)
    with pytest.raises(RecipeError, match=r"tier random .* env.image_size 32 \(requested 48\)"):
        metaworld_tiers(TASK, 2, tiers=["random"], frames=48, shadows=False, **tiny)
    rows = metaworld_tiers(TASK, 2, tiers=["random", "expert"], **tiny)  # frames are extra: kept without asking
    assert [row["status"] for row in rows] == ["exists", "exists"]
    rows = metaworld_tiers(TASK, 2, tiers=["random"], frames=32, shadows=False, **tiny)
    assert [row["status"] for row in rows] == ["exists"]


def test_make_datasets_rendering_options_need_frames(minari_root):
    with pytest.raises(SystemExit, match=r"--camera and --no-shadows set how frames are rendered: add --frames"):
        load_script("make_datasets").main(["metaworld", "--tasks", "reach-v3", "--camera", "corner", "--no-progress"])


# ---------------------------------------------------------------- frame pairs


def test_frame_pairs_are_frames_1_to_T_deterministic_and_extendable():
    trajectories = synthetic()
    pairs, skipped = sample_frame_pairs(trajectories, 300, seed=3)
    assert pairs.segment_length == 1 and np.isnan(pairs.label).all()
    assert not ((pairs.episode_1 == pairs.episode_2) & (pairs.start_1 == pairs.start_2)).any()  # drawn twice: skipped
    for starts in (pairs.start_1, pairs.start_2):
        assert starts.min() == 1 and starts.max() == 12  # t in [1, T]: every frame with a reward, never the reset
    again, _ = sample_frame_pairs(trajectories, 300, seed=3)
    assert (again.start_1 == pairs.start_1).all() and (again.episode_2 == pairs.episode_2).all()
    fewer, _ = sample_frame_pairs(trajectories, 40, seed=3)  # a smaller request is a prefix of a larger one
    assert (fewer.start_2 == pairs.start_2[:40]).all() and (fewer.episode_1 == pairs.episode_1[:40]).all()
    other, _ = sample_frame_pairs(trajectories, 300, seed=4)
    assert not (other.start_1 == pairs.start_1).all()


def test_identical_frames_are_skipped():
    trajectories = synthetic(episodes=2, steps=12, levels=6)  # frame values 0, 0, ..., 1, ..., 2: many equal frames
    pairs, skipped = sample_frame_pairs(trajectories, 100, seed=0)
    first, second = frame_pair_images(pairs, trajectories)  # (P, 4, 4, 3)
    assert not any(np.array_equal(a, b) for a, b in zip(first, second))
    assert skipped > 0
    flat = synthetic(episodes=1, steps=5, levels=100)  # every frame the same image
    with pytest.raises(DatasetError, match="identical images"):
        sample_frame_pairs(flat, 1)


def test_frame_rewards_and_scripted_labels_use_the_reward_of_the_step_reaching_the_frame():
    trajectories = synthetic()
    pairs = PreferencePairs(1, [0, 1, 2, 0], [1, 12, 5, 3], [2, 0, 2, 1], [1, 3, 5, 3], [np.nan] * 4)
    r1, r2 = frame_pair_rewards(pairs, trajectories)
    assert r1.tolist() == [10, 121, 52, 30] and r2.tolist() == [12, 30, 52, 31]  # rewards[t-1] = 10 t + e
    assert scripted_frame_labels(pairs, trajectories).tolist() == [0.0, 1.0, 0.5, 0.0]
    with pytest.raises(DatasetError, match=r"frame 0 of episode 0 is outside \[1, 12\]"):
        frame_pair_rewards(PreferencePairs(1, [0], [0], [1], [1], [np.nan]), trajectories)


# ---------------------------------------------------------------- prompts and answers


@pytest.mark.parametrize(
    "text, label",
    [
        ("1", 1.0),
        ("2", 0.0),
        ("none", 0.5),
        ("No preference.", 0.5),
        ("**2**", 0.0),
        ("Image 1.", 1.0),
        ("2 - the drawer is further open", 0.0),
        ("Answer: 2", 0.0),
        ("The final answer is 1.", 1.0),
        ("After thinking about it.\nFinal answer: image 2", 0.0),
        ("Image 1 shows more progress.", 1.0),
        ("The second image.", 0.0),
        ("I can't tell, they look alike", 0.5),
        ("Image 1 is worse than image 2.", None),  # verdicts that disagree
        ("2.5", None),
        ("", None),
        (None, None),
        ("The drawer is open.", None),  # no verdict
    ],
)
def test_parse_label(text, label):
    assert parse_label(text) == label


def test_prompts_are_validated_and_the_default_config_uses_the_goal():
    prompts = load_settings().vlm_prompts()
    assert GOAL in prompts.analysis_text(GOAL) and "{" not in prompts.analysis_text(GOAL)
    assert "ANALYSIS TEXT" in prompts.label_text(GOAL, "ANALYSIS TEXT")
    with pytest.raises(
        ValueError, match=r"prompts.analysis uses unknown placeholder\(s\) \{task\}; it may use \{goal\}"
    ):
        VLMPrompts(analysis="Do {task}", label="{analysis}")
    with pytest.raises(ValueError, match=r"prompts.label must contain \{analysis\}"):
        VLMPrompts(analysis="{goal}", label="Which one?")
    with pytest.raises(ValueError, match=r"prompts.label uses unknown placeholder\(s\) \{answer\}"):
        VLMPrompts(analysis="{goal}", label="{analysis} {answer}")
    assert VLMPrompts(analysis="{goal} as {{json}}", label="{analysis}").analysis_text("x") == "x as {json}"
    with pytest.raises(ValueError, match="unknown labelling config keys"):
        LabellingSettings.from_mapping({"num_pair": 3})


def test_noise_flips_exactly_the_given_fraction_seeded():
    labels = np.array([1.0, 0.0] * 50, np.float32)
    noisy, flipped = flip_fraction(labels, 0.2, seed=1)
    assert flipped.sum() == 20 and (noisy[flipped] == 1 - labels[flipped]).all()
    assert (noisy[~flipped] == labels[~flipped]).all()
    assert (flip_fraction(labels, 0.2, seed=1)[1] == flipped).all()
    assert not (flip_fraction(labels, 0.2, seed=2)[1] == flipped).all()
    assert flip_fraction(labels, 0.0)[1].sum() == 0


def test_agreement_leaves_out_reference_ties():
    report = agreement(np.array([1.0, 0.0, 1.0, 1.0]), np.array([1.0, 1.0, 0.5, 1.0]))
    assert report == {"agreement": 2 / 3, "compared": 3, "reference_ties": 1}


# ---------------------------------------------------------------- the VLM teacher


def test_vlm_teacher_two_queries_per_pair_agree_with_the_scripted_teacher(tmp_path):
    trajectories = synthetic()
    client = FakeVLM()
    summary = run_labelling(trajectories, tmp_path, vlm_settings(num_pairs=30), TASK, "synthetic", fake_chat(client))
    analysis, label = client.sent[0], client.sent[30]  # first chunk: 10 analyses, then 10 label queries
    assert client.calls == 6 and len(client.sent) == 60
    assert analysis[0]["role"] == "system" and GOAL in analysis[-1]["content"]
    assert len(analysis[-1]["images"]) == 2 and not label[-1]["images"]
    pairs = PreferencePairs.load(tmp_path / "pairs.npz")
    first, second = frame_pair_images(pairs.select(np.arange(1)), trajectories)
    assert np.array_equal(client.sent[0][-1]["images"][0], first[0])  # image 1 is the pair's first frame
    assert np.array_equal(client.sent[0][-1]["images"][1], second[0])
    labelled = PreferencePairs.load(tmp_path / "labels.npz")
    assert labelled.source == "vlm:fake" and len(labelled) == summary["labelled"] == 30
    assert (labelled.label == scripted_frame_labels(labelled, trajectories)).all()
    assert summary["agreement_with_scripted"] == {"agreement": 1.0, "compared": 30, "reference_ties": 0}
    assert summary["complete"] and summary["usage"]["queries"] == 60
    assert json.loads((tmp_path / "summary.json").read_text())["labelled"] == 30
    records = [json.loads(line) for line in (tmp_path / "progress.jsonl").read_text().splitlines()]
    assert len(records) == 30 and records[0]["analysis"].startswith("Image")


def test_no_preference_unparseable_and_refusals_are_dropped_and_counted(tmp_path):
    answers = iter(["none", "Image 1 is worse than image 2", "1", "2", "banana"] * 4)

    def label_answer(analysis):
        text = next(answers)
        return FakeCompletion("", refusal="I can't help") if text == "banana" else FakeCompletion(text)

    client = FakeVLM(label_answer=label_answer)
    summary = run_labelling(synthetic(), tmp_path, vlm_settings(num_pairs=20), TASK, "", fake_chat(client))
    assert summary["labelled"] == 8
    assert summary["dropped"] == {"no_preference": 4, "unparseable": 4, "refused": 4}
    labelled = PreferencePairs.load(tmp_path / "labels.npz")
    assert sorted(set(labelled.label.tolist())) == [0.0, 1.0] and len(labelled) == 8


def test_a_killed_run_continues_without_asking_again(tmp_path):
    trajectories, settings = synthetic(), vlm_settings(num_pairs=30)
    cache: dict = {}
    dying = FakeVLM(cache, fail_after=3)  # dies in the second chunk's label query
    with pytest.raises(ConnectionError):
        run_labelling(trajectories, tmp_path, settings, TASK, "", fake_chat(dying))
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["finished_pairs"] == 10 and summary["pending_pairs"] == 20 and not summary["complete"]
    assert len(PreferencePairs.load(tmp_path / "labels.npz")) == 10  # finished labels survive
    rerun = FakeVLM(cache)
    summary = run_labelling(trajectories, tmp_path, settings, TASK, "", fake_chat(rerun))
    assert summary["resumed_pairs"] == 10 and summary["complete"]
    assert rerun.calls == 4  # two chunks left: the first (done) is not asked again
    assert len(rerun.sent) == 30  # the second chunk's 10 analyses came from the cache: paid once
    assert summary["usage"]["cached"] == 10
    fresh = tmp_path / "fresh"
    whole = run_labelling(trajectories, fresh, settings, TASK, "", fake_chat(FakeVLM()))
    assert whole["labelled"] == summary["labelled"]
    assert (
        PreferencePairs.load(fresh / "labels.npz").label == PreferencePairs.load(tmp_path / "labels.npz").label
    ).all()
    again = FakeVLM(cache)
    run_labelling(trajectories, tmp_path, vlm_settings(num_pairs=40), TASK, "", fake_chat(again))  # extended
    assert again.calls == 2 and len(again.sent) == 20  # only the 10 new pairs


def test_a_folder_of_other_settings_is_refused(tmp_path):
    run_labelling(synthetic(), tmp_path, vlm_settings(num_pairs=5), TASK, "", fake_chat(FakeVLM()))
    with pytest.raises(ValueError, match=r"holds labels made with other settings \(seed differ\)"):
        run_labelling(synthetic(), tmp_path, vlm_settings(num_pairs=5, seed=1), TASK, "", fake_chat(FakeVLM()))
    prompts = {**load_settings().prompts, "label": "Say 1 or 2: {analysis}"}
    with pytest.raises(ValueError, match=r"\(prompts differ\)"):
        run_labelling(synthetic(), tmp_path, vlm_settings(num_pairs=5, prompts=prompts), TASK, "", fake_chat(FakeVLM()))


def test_scripted_stand_in_with_noise_reports_agreement(tmp_path):
    trajectories = synthetic()
    settings = LabellingSettings.from_mapping({"teacher": "scripted", "num_pairs": 50, "noise": 0.2})
    summary = run_labelling(trajectories, tmp_path, settings, TASK)
    labelled = PreferencePairs.load(tmp_path / "labels.npz")
    assert labelled.source == "scripted" and summary["labelled"] == 50 and summary["flipped"] == 10
    assert summary["agreement_with_scripted"]["agreement"] == pytest.approx(0.8)
    assert summary["agreement_before_noise"] == 1.0 and summary["usage"]["queries"] == 0


# ---------------------------------------------------------------- scripts/vlm_label.py


def brighter_image(request) -> str:
    """The local server's answers: analysis by the images' brightness, label by the analysis."""
    images = request.images
    if images:
        first, second = (int(image.mean()) for image in images)
        return f"Image {1 if first >= second else 2} shows the drawer further open ({first} vs {second})."
    return request.text.split("---")[1].split()[1]


def test_vlm_label_end_to_end_against_the_local_server(minari_root, tmp_path, capsys):
    from embodied_rl.llm.local_server import ChatRequest, OpenAICompatibleServer

    script = load_script("vlm_label")
    out = tmp_path / "labels"
    args = ["--task", "drawer-open-v3", "--dataset", "random", "--num-pairs", "6", "--out", str(out)]
    with OpenAICompatibleServer(answer=brighter_image) as server:
        llm = ["--base-url", server.url, "--cache-dir", str(tmp_path / "cache"), "--concurrency", "2", "--no-progress"]
        summary = script.main([*args, *llm])
        usage = summary["usage"]  # pairs showing the same two images (or analyses) are one request: cached
        assert usage["queries"] == 12 and server.requests == 12 - usage["cached"] > 0
        assert summary["labelled"] == 6 and summary["complete"]
        assert len(server.last_request.image_urls) == 0 and "shows the drawer" in server.last_request.text
        assert len(ChatRequest(server.bodies[0]).images) == 2  # the analysis query shows both frames
        sent = server.requests
        assert script.main([*args, *llm])["resumed_pairs"] == 6  # everything answered: nothing sent again
        assert server.requests == sent
        (out / "progress.jsonl").unlink()  # labels lost: every pair asked again, all answered by the client's cache
        assert script.main([*args, *llm])["usage"]["cached"] == 12
        assert server.requests == sent
    assert (out / "llm_usage.json").exists() and "agreement with the scripted teacher" in capsys.readouterr().out
    assert PreferencePairs.load(out / "labels.npz").source == "vlm:gpt-4o"


def test_vlm_label_unreachable_endpoint_keeps_labels_and_says_so(minari_root, tmp_path, capsys):
    import socket

    with socket.socket() as free:  # a port nothing listens on once closed
        free.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{free.getsockname()[1]}/v1"
    config = tmp_path / "vlm.yaml"  # one attempt per request: no retries to wait for
    config.write_text(json.dumps({**load_settings().__dict__, "llm": {"max_attempts": 1, "timeout_s": 5}}))
    args = ["--task", "drawer-open-v3", "--dataset", "random", "--num-pairs", "2", "--out", str(tmp_path / "o")]
    with pytest.raises(SystemExit) as info:
        load_script("vlm_label").main(
            [*args, "--base-url", url, "--cache-dir", str(tmp_path / "c"), "--no-progress", "--config", str(config)]
        )
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "[vlm_label] error: 2 pair(s) got no answer" in err and "run the same command again" in err


def test_vlm_label_clear_errors(minari_root, tmp_path, capsys):
    script = load_script("vlm_label")
    cases = {
        ("--task", "drawer-opn-v3"): "Did you mean: metaworld/drawer-open-v3",
        ("--task", "drawer-open-v3", "--dataset", "expert"): (
            "has no rendered frames; the VLM compares images. Build it again with frames: python "
            "scripts/make_datasets.py metaworld --tasks drawer-open-v3 --tiers expert --episodes 2 --time-limit 20 "
            "--reference-episodes 1 --frames 64 --overwrite"
        ),
        ("--task", "drawer-open-v3", "--dataset", "medium"): "scripts/make_datasets.py metaworld --tasks",
    }
    for args, message in cases.items():
        with pytest.raises(SystemExit) as info:
            script.main([*args, "--out", str(tmp_path / "x"), "--teacher", "scripted", "--no-progress"])
        assert info.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("[vlm_label] error: ") and message in err, err


def test_vlm_label_scripted_teacher_needs_no_llm(minari_root, tmp_path, capsys):
    out = tmp_path / "scripted"
    args = ["--task", "drawer-open-v3", "--dataset", "random", "--teacher", "scripted", "--num-pairs", "20"]
    summary = load_script("vlm_label").main([*args, "--noise", "0.1", "--out", str(out), "--no-progress"])
    assert summary["teacher"] == "scripted" and summary["usage"]["queries"] == 0
    assert summary["labelled"] + summary["dropped"]["no_preference"] == 20
    assert summary["flipped"] == round(0.1 * summary["labelled"])
    assert not (out / "llm_usage.json").exists()
