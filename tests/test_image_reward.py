"""The image reward model (embodied_rl.rewards.image_reward; RL-VLM-F): a CNN ensemble on single uint8 frames fitted
by Bradley-Terry on frame pairs through the shared fit loop, relabelling with r(frames[t + 1]), save / load, the
settings and the input checks. The synthetic problem: 16x16 frames of noise with a red 4x4 square; the true reward
is the square's column, and a pair's label is a Bradley-Terry teacher's soft P[frame 1 preferred]."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy.stats import kendalltau, spearmanr

from embodied_rl.data import PreferencePairs, Trajectory
from embodied_rl.data.errors import DatasetError
from embodied_rl.rewards import (
    ImageRewardConfig,
    ImageRewardEnsemble,
    bradley_terry_loss,
    evaluate_image_reward_model,
    load_image_reward_model,
    pair_frames,
    relabel_with_image_reward,
    save_image_reward_model,
    train_image_reward_model,
)

SIZE, SQUARE = 16, 4  # frame side, square side
SHAPE = (SIZE, SIZE, 3)


@pytest.fixture(autouse=True)
def few_threads():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the test machine's cores are shared
    yield
    torch.set_num_threads(threads)


def square_frames(num: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(N, 16, 16, 3) uint8 frames of dark noise with a red square at a random place, and the true reward of each:
    the square's column (0..12)."""
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 60, size=(num, *SHAPE)).astype(np.uint8)
    rows, cols = rng.integers(0, SIZE - SQUARE + 1, size=(2, num))
    for frame, row, col in zip(frames, rows, cols):
        frame[row : row + SQUARE, col : col + SQUARE] = (220, 40, 40)
    return frames, cols.astype(np.float32)


def square_pairs(num: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs of square frames and soft labels P[frame 1 preferred] = sigmoid(2 (col_1 - col_2)) (0.5 on ties)."""
    frames_1, col_1 = square_frames(num, seed)
    frames_2, col_2 = square_frames(num, seed + 1000)
    labels = 1.0 / (1.0 + np.exp(-2.0 * (col_1 - col_2)))
    return frames_1, frames_2, labels.astype(np.float32)


def tiny(**overrides) -> ImageRewardConfig:
    values = dict(
        feature_dim=16,
        num_filters=8,
        num_layers=2,
        hidden_dims=(32,),
        steps=150,
        batch_size=32,
        lr=1e-3,
        eval_every=50,
        val_fraction=0.2,
        augment=False,
        device="cpu",
    )
    return ImageRewardConfig(**{**values, **overrides})


def tiny_model(seed: int = 0, ensemble_size: int = 3) -> ImageRewardEnsemble:
    torch.manual_seed(seed)
    return ImageRewardEnsemble(SHAPE, ensemble_size, feature_dim=16, num_filters=8, num_layers=2, hidden_dims=(32,))


def episode(episode_id: int, steps: int, seed: int = 0, frames: bool = True) -> Trajectory:
    rng = np.random.default_rng(seed + episode_id)
    return Trajectory(
        observations=rng.normal(size=(steps + 1, 2)).astype(np.float32),
        actions=rng.uniform(-1, 1, size=(steps, 2)).astype(np.float32),
        rewards=rng.normal(size=steps).astype(np.float32),
        terminations=np.zeros(steps, bool),
        truncations=np.eye(1, steps, steps - 1, dtype=bool)[0],
        success=np.zeros(steps, bool),
        frames=square_frames(steps + 1, seed + 100 + episode_id)[0] if frames else None,
        infos={"dist": np.arange(steps, dtype=np.float32)},
        episode_id=episode_id,
    )


@pytest.fixture(scope="module")
def trained():
    """One model trained on the square problem (and its report), shared by the tests that only read it."""
    torch.set_num_threads(1)
    return train_image_reward_model(*square_pairs(), tiny(augment=True, shift_pad=2), seed=0)


# ---------------------------------------------------------------- learning


def test_the_ensemble_learns_to_rank_held_out_frames_by_the_true_reward(trained):
    """Labels say frame 1 is preferred with probability sigmoid(2 (col_1 - col_2)); the learned reward must rank
    new frames by their square's column. An untrained model of the same shape does not."""
    model, report = trained
    frames, true_reward = square_frames(200, seed=7)
    predicted = model.predict(frames)
    assert spearmanr(predicted, true_reward)[0] > 0.9
    assert kendalltau(predicted, true_reward)[0] > 0.75
    assert report.best_val_accuracy >= 0.9 and report.kind == "image"
    assert report.num_train_pairs == 320 and report.num_val_pairs == 80 and not model.training
    for seed in range(3):
        assert abs(spearmanr(tiny_model(seed).predict(frames), true_reward)[0]) < 0.5
    held_out = evaluate_image_reward_model(model, *square_pairs(200, seed=3))
    assert held_out["accuracy"] >= 0.9 and held_out["disagreement"] > 0


def test_the_training_loss_is_each_members_bradley_terry_loss_on_its_own_pairs(monkeypatch):
    """The loss the fit loop gets for indices (E, B): member e's cross-entropy on its own row of pairs, with
    label = P[frame 1 preferred] (soft values kept as they are)."""
    import embodied_rl.rewards.image_reward as image_reward

    captured, real_fit = {}, image_reward.fit

    def capture(model, batch_loss, *args, **kwargs):
        captured.update(model=model, batch_loss=batch_loss)
        return real_fit(model, batch_loss, *args, **kwargs)

    monkeypatch.setattr(image_reward, "fit", capture)
    frames_1, frames_2, labels = square_pairs(20)
    labels[:6] = [0.5, 0.3, 1.0, 0.0, 0.9, 0.5]
    train_image_reward_model(frames_1, frames_2, labels, tiny(ensemble_size=2, steps=1, val_fraction=0.0))
    model, batch_loss = captured["model"], captured["batch_loss"]
    idx = torch.tensor([[0, 1, 2], [3, 4, 5]])  # (E, B): member 0 gets pairs 0-2, member 1 pairs 3-5
    expected = []
    for member, rows in enumerate(idx):
        r_1 = model(torch.as_tensor(frames_1[rows]))[member]  # (B,) member's reward of each frame 1
        r_2 = model(torch.as_tensor(frames_2[rows]))[member]
        y = torch.as_tensor(labels[rows])
        by_hand = -(y * torch.sigmoid(r_1 - r_2).log() + (1 - y) * torch.sigmoid(r_2 - r_1).log()).mean()
        expected.append(by_hand)
    torch.testing.assert_close(batch_loss(idx), torch.stack(expected))


def test_evaluation_loss_by_hand_and_accuracy_leaves_ties_out():
    model = tiny_model(ensemble_size=2)
    frames_1, frames_2, _ = square_pairs(6)
    lower = model.predict(frames_1) < model.predict(frames_2)  # (6,) ensemble means
    frames_1[lower], frames_2[lower] = frames_2[lower], frames_1[lower]  # now r(frame 1) > r(frame 2) everywhere
    labels = np.array([1.0, 1.0, 0.0, 0.5, 0.5, 0.5], np.float32)
    metrics = evaluate_image_reward_model(model, frames_1, frames_2, labels)
    assert metrics["accuracy"] == pytest.approx(2 / 3)  # pair 2 wrong, the ties not counted (1/2 or 5/6 if they were)
    members_1, members_2 = model.predict_members(frames_1), model.predict_members(frames_2)  # (E, 6)
    loss = bradley_terry_loss(members_1, members_2, torch.as_tensor(labels)).mean()
    assert metrics["loss"] == pytest.approx(float(loss), rel=1e-5)


# ---------------------------------------------------------------- ensemble


def test_prediction_is_the_ensemble_mean_and_disagreement_the_std():
    model = tiny_model()
    frames, _ = square_frames(10)
    members = model.predict_members(frames, batch_size=4)  # (E, N)
    assert members.shape == (3, 10)
    assert not torch.allclose(members[0], members[1]) and not torch.allclose(members[1], members[2])
    np.testing.assert_allclose(model.predict(frames), members.mean(0).numpy(), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(model.disagreement(frames), members.std(0, unbiased=False).numpy(), rtol=1e-5, atol=1e-7)
    assert (model.disagreement(frames) > 0).all()
    assert (tiny_model(ensemble_size=1).disagreement(frames) == 0).all()


def test_any_leading_dims_and_batches_give_the_same_rewards():
    model = tiny_model()
    frames, _ = square_frames(12)
    flat = model.predict(frames, batch_size=5)
    assert flat.shape == (12,) and flat.dtype == np.float32
    np.testing.assert_allclose(model.predict(frames.reshape(3, 4, *SHAPE)), flat.reshape(3, 4), rtol=1e-5, atol=1e-6)
    assert model.predict(frames[:0]).shape == (0,)


def test_augmentation_shifts_the_training_frames_only_when_on(monkeypatch):
    import embodied_rl.rewards.image_reward as image_reward

    losses = {}
    real_fit = image_reward.fit
    for augment in (False, True):

        def capture(model, batch_loss, *args, augment=augment, **kwargs):
            idx = torch.tensor([[0, 1, 2, 3]] * 3)
            losses[augment] = (batch_loss(idx), batch_loss(idx))
            return real_fit(model, batch_loss, *args, **kwargs)

        monkeypatch.setattr(image_reward, "fit", capture)
        train_image_reward_model(*square_pairs(20), tiny(steps=1, augment=augment, shift_pad=2), seed=0)
    torch.testing.assert_close(*losses[False])  # the same batch, the same loss
    assert not torch.allclose(*losses[True])  # a new random shift each time


def test_training_is_deterministic_for_a_seed_and_leaves_the_global_rng_alone():
    def run(seed):
        torch.manual_seed(7)
        model, report = train_image_reward_model(*square_pairs(40), tiny(steps=10, eval_every=5, augment=True), seed)
        return model, report, torch.rand(3)

    (m_1, r_1, g_1), (m_2, r_2, g_2), (m_3, _, _) = run(0), run(0), run(1)
    frames, _ = square_frames(5)
    np.testing.assert_array_equal(m_1.predict(frames), m_2.predict(frames))
    assert r_1.as_dict() == r_2.as_dict() and r_1.eval_steps == [5, 10]
    json.dumps(r_1.as_dict())
    torch.manual_seed(7)
    torch.testing.assert_close(g_1, torch.rand(3))  # the global RNG is where manual_seed(7) put it
    torch.testing.assert_close(g_2, g_1)
    assert not np.allclose(m_1.predict(frames), m_3.predict(frames))


# ---------------------------------------------------------------- relabelling


def test_relabelling_gives_each_transition_the_reward_of_its_next_frame():
    model = tiny_model()
    trajectories = [episode(0, 9), episode(1, 4), episode(2, 13)]
    relabelled = relabel_with_image_reward(model, trajectories, batch_size=5)
    assert len(relabelled) == 3
    for old, new in zip(trajectories, relabelled):
        next_frames = model.predict(old.frames[1:])  # (T,) r(frames[t + 1])
        np.testing.assert_allclose(new.rewards, next_frames, rtol=1e-5, atol=1e-6)
        assert not np.allclose(new.rewards, model.predict(old.frames[:-1]))  # not r(frames[t])
        assert new.rewards.dtype == np.float32 and new.rewards.shape == (len(old),)
        np.testing.assert_array_equal(new.infos["env_reward"], old.rewards)
        np.testing.assert_array_equal(new.infos["dist"], old.infos["dist"])
        for name in ("observations", "actions", "terminations", "truncations", "success", "frames"):
            np.testing.assert_array_equal(getattr(new, name), getattr(old, name))
        assert new.episode_id == old.episode_id and "env_reward" not in old.infos  # the input is left alone
    twice = relabel_with_image_reward(model, relabelled)
    np.testing.assert_array_equal(twice[0].infos["env_reward"], trajectories[0].rewards)  # still the env's


def test_relabelling_an_episode_without_frames_is_a_clear_error():
    with pytest.raises(DatasetError, match=r"episodes without frames: \[5\]"):
        relabel_with_image_reward(tiny_model(), [episode(0, 3), episode(5, 3, frames=False)])


# ---------------------------------------------------------------- pairs of a dataset


def test_pair_frames_takes_the_frame_at_each_segments_start():
    trajectories = [episode(3, 6), episode(8, 4)]
    pairs = PreferencePairs(1, [3, 8, 3], [0, 3, 6], [8, 3, 8], [2, 4, 4], [1.0, 0.5, np.nan])  # 6, 4: last frames
    frames_1, frames_2, labels = pair_frames(pairs, trajectories)
    assert frames_1.shape == (3, *SHAPE) and frames_1.dtype == np.uint8
    for i, (e_1, s_1, e_2, s_2) in enumerate([(0, 0, 1, 2), (1, 3, 0, 4), (0, 6, 1, 4)]):
        np.testing.assert_array_equal(frames_1[i], trajectories[e_1].frames[s_1])
        np.testing.assert_array_equal(frames_2[i], trajectories[e_2].frames[s_2])
    np.testing.assert_array_equal(labels, pairs.label)
    with pytest.raises(DatasetError, match="1 pair\\(s\\) are unlabelled"):
        train_image_reward_model(frames_1, frames_2, labels, tiny(steps=1))


def test_pair_frames_errors():
    trajectories = [episode(0, 5), episode(1, 5, frames=False)]
    with pytest.raises(DatasetError, match="segment_length 1, not 2"):
        pair_frames(PreferencePairs(2, [0], [0], [0], [1], [1.0]), trajectories)
    with pytest.raises(DatasetError, match=r"episodes without frames.*\[1\]"):
        pair_frames(PreferencePairs(1, [0], [0], [1], [1], [1.0]), trajectories)
    with pytest.raises(DatasetError, match=r"not in the dataset: \[4\]"):
        pair_frames(PreferencePairs(1, [0], [0], [4], [1], [1.0]), trajectories)
    with pytest.raises(DatasetError, match="episode 0 has 6 frames, no frame 6"):
        pair_frames(PreferencePairs(1, [0], [6], [0], [1], [1.0]), trajectories)


# ---------------------------------------------------------------- save / load


def test_save_and_load_give_the_same_predictions(trained, tmp_path):
    model, _ = trained
    save_image_reward_model(model, tmp_path / "image_reward.pt")
    loaded = load_image_reward_model(tmp_path / "image_reward.pt")
    assert isinstance(loaded, ImageRewardEnsemble) and loaded.init_args == model.init_args and not loaded.training
    assert loaded.image_shape == SHAPE and loaded.ensemble_size == 3
    frames, _ = square_frames(8, seed=9)
    np.testing.assert_array_equal(loaded.predict(frames), model.predict(frames))
    assert not (tmp_path / "image_reward.pt.tmp").exists()


def test_loading_something_else_is_a_clear_error(tmp_path):
    torch.save({"format": "embodied_rl.preference_reward_model", "state_dict": {}}, tmp_path / "other.pt")
    (tmp_path / "notes.txt").write_text("not a model")
    for name in ("other.pt", "notes.txt"):
        with pytest.raises(ValueError, match="not an image reward model saved by save_image_reward_model"):
            load_image_reward_model(tmp_path / name)


# ---------------------------------------------------------------- settings and inputs


def test_an_unknown_key_is_one_error_naming_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown image reward model config keys \['filters'\]; known: .*num_filters"):
        ImageRewardConfig.from_mapping({"filters": 16, "steps": 5})


def test_bad_values_are_one_error_naming_each():
    with pytest.raises(ValueError) as error:
        ImageRewardConfig(ensemble_size=0, num_layers=0, lr=0.0, val_fraction=1.0, shift_pad=-1)
    message = str(error.value)
    assert message.count("invalid image reward model settings") == 1
    for part in ("reward.ensemble_size=0", "reward.num_layers=0", "reward.lr=0.0", "val_fraction=1.0", "shift_pad=-1"):
        assert part in message
    with pytest.raises(ValueError, match=r"reward.augment='yes' \(must be true or false\).*reward.steps=2.5"):
        ImageRewardConfig.from_mapping({"augment": "yes", "steps": 2.5})
    with pytest.raises(ValueError, match="reward.hidden_dims=\\[0\\].*reward.select_metric='accuracy'"):
        ImageRewardConfig(select_metric="accuracy", hidden_dims=(0,))
    with pytest.raises(ValueError, match="reward.device must be auto, cpu, cuda or cuda:N"):
        train_image_reward_model(*square_pairs(4), tiny(device="tpu"))


def test_settings_round_trip_through_a_mapping():
    assert ImageRewardConfig().augment and ImageRewardConfig().shift_pad == 4  # on by default
    cfg = ImageRewardConfig.from_mapping({"steps": 1e3, "hidden_dims": [8], "augment": False})
    assert cfg.steps == 1000 and isinstance(cfg.steps, int) and cfg.hidden_dims == (8,) and not cfg.augment
    assert ImageRewardConfig.from_mapping(cfg.as_dict()) == cfg
    model = ImageRewardEnsemble.from_config((32, 32, 3), cfg)
    assert model.init_args["hidden_dims"] == [8] and model.ensemble_size == 3


def test_bad_frame_pairs_are_one_clear_error():
    frames_1, frames_2, labels = square_pairs(10)
    cfg = tiny(steps=1)
    with pytest.raises(DatasetError, match="labels must be probabilities in \\[0, 1\\]"):
        train_image_reward_model(frames_1, frames_2, labels * 2, cfg)
    with pytest.raises(DatasetError, match="labels must be probabilities in \\[0, 1\\]"):
        train_image_reward_model(frames_1, frames_2, labels - 1, cfg)
    with pytest.raises(DatasetError, match=r"need frames_1, frames_2 \(P, H, W, 3\).*labels \(9,\)"):
        train_image_reward_model(frames_1, frames_2, labels[:9], cfg)
    with pytest.raises(DatasetError, match=r"frames_2 \(10, 16, 15, 3\)"):
        train_image_reward_model(frames_1, frames_2[:, :, 1:], labels, cfg)
    with pytest.raises(DatasetError, match=r"frames_1 \(10, 3, 16, 16\)"):  # channels first
        train_image_reward_model(frames_1.transpose(0, 3, 1, 2), frames_2.transpose(0, 3, 1, 2), labels, cfg)
    with pytest.raises(DatasetError, match="frames must be uint8 images"):
        train_image_reward_model(frames_1 / 255.0, frames_2 / 255.0, labels, cfg)
    with pytest.raises(DatasetError, match="no frame pairs"):
        train_image_reward_model(frames_1[:0], frames_2[:0], labels[:0], cfg)


def test_the_model_rejects_frames_it_was_not_built_for():
    model = tiny_model()
    with pytest.raises(ValueError, match=r"frames of shape \(2, 32, 32, 3\) for a model of images \(16, 16, 3\)"):
        model.predict(np.zeros((2, 32, 32, 3), np.uint8))
    with pytest.raises(ValueError, match="frames must be uint8 images"):
        model.predict(np.zeros((2, *SHAPE), np.float32))
    with pytest.raises(ValueError, match="too small for 4 conv layers"):
        ImageRewardEnsemble((14, 14, 3), num_layers=4)
    ImageRewardEnsemble((15, 15, 3), num_layers=4, num_filters=4)  # the smallest that fits
    with pytest.raises(ValueError, match=r"image_shape must be \(H, W, 3\)"):
        ImageRewardEnsemble((3, 16, 16))
