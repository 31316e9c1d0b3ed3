"""Preference reward models (embodied_rl.rewards): the MLP Bradley-Terry ensemble, the Preference Transformer and
PEARL's robust reward learning, trained through the shared fit loop; losses by hand, relabelling, save / load and
settings. A tiny synthetic problem with a known reward: r(s, a) = w . s, scripted labels from segment returns."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from embodied_rl.data import Trajectory
from embodied_rl.data.errors import DatasetError
from embodied_rl.rewards import (
    MLPRewardEnsemble,
    PreferenceTransformer,
    RewardModelConfig,
    bradley_terry_loss,
    build_reward_model,
    evaluate_reward_model,
    load_reward_model,
    preference_loss,
    relabel_trajectories,
    return_correlation,
    save_reward_model,
    train_reward_model,
    variance_regularizer,
)

S, A, H = 3, 2, 8  # state and action dims, segment length
W_TRUE = np.array([1.0, -0.5, 0.25])  # the true reward: r(s, a) = W_TRUE . s


@pytest.fixture(autouse=True)
def few_threads():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the test machine's cores are shared
    yield
    torch.set_num_threads(threads)


def pairs(num: int = 300, seed: int = 0):
    """Random segments (P, H, S) / (P, H, A) of both sides and scripted labels: 1 when segment 1's true return is
    the larger, else 0."""
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(2, num, H, S)).astype(np.float32)
    act = rng.uniform(-1, 1, size=(2, num, H, A)).astype(np.float32)
    returns = (obs @ W_TRUE).sum(-1)  # (2, P)
    label = (returns[0] > returns[1]).astype(np.float32)
    return obs[0], act[0], obs[1], act[1], label


def tiny(**overrides) -> RewardModelConfig:
    values = dict(
        hidden_dims=(32, 32),
        embed_dim=16,
        num_heads=2,
        ensemble_size=2,
        steps=300,
        batch_size=32,
        lr=3e-3,
        eval_every=100,
        val_fraction=0.2,
    )
    return RewardModelConfig(**{**values, **overrides})


def trajectory(episode_id: int, steps: int = 20, seed: int = 0) -> Trajectory:
    rng = np.random.default_rng(seed + episode_id)
    obs = rng.normal(size=(steps + 1, S)).astype(np.float32)
    return Trajectory(
        observations=obs,
        actions=rng.uniform(-1, 1, size=(steps, A)).astype(np.float32),
        rewards=(obs[:-1] @ W_TRUE).astype(np.float32),
        terminations=np.zeros(steps, bool),
        truncations=np.eye(1, steps, steps - 1, dtype=bool)[0],
        success=np.zeros(steps, bool),
        infos={"dist": np.arange(steps, dtype=np.float32)},
        episode_id=episode_id,
    )


def linear_mlp(weights: list[float]) -> MLPRewardEnsemble:
    """One-member MLP with no hidden layer, r = weights . [s, a], identity normaliser."""
    model = MLPRewardEnsemble(S, A, hidden_dims=(), ensemble_size=1)
    with torch.no_grad():
        model.net.layers[0].weight.copy_(torch.tensor(weights).reshape(1, S + A, 1))
        model.net.layers[0].bias.zero_()
    return model


KINDS = [("mlp", False), ("mlp", True), ("transformer", False), ("transformer", True)]


# ---------------------------------------------------------------- learning


@pytest.mark.parametrize("kind, robust", KINDS, ids=[f"{k}{'-rrl' if r else ''}" for k, r in KINDS])
def test_each_model_learns_the_preferences_of_a_linear_reward(kind, robust):
    model, report = train_reward_model(*pairs(600), cfg=tiny(kind=kind, robust=robust), seed=0)
    assert report.best_val_accuracy >= 0.9, report.val_accuracy
    assert report.val_accuracy[report.eval_steps.index(report.best_step)] == report.best_val_accuracy
    assert report.num_train_pairs + report.num_val_pairs == 600 and report.num_val_pairs == 120
    assert len(report.val_variance) == (len(report.eval_steps) if robust else 0)
    assert not model.training
    held_out = pairs(200, seed=1)
    assert evaluate_reward_model(model, *held_out)["accuracy"] >= 0.8


def test_the_mlps_per_step_reward_follows_the_true_reward():
    model, _ = train_reward_model(*pairs(), cfg=tiny(kind="mlp"), seed=0)
    episode = trajectory(0, steps=200)
    predicted = model.predict(episode.observations[:-1], episode.actions)  # (T,)
    assert predicted.shape == (200,) and predicted.dtype == np.float32
    assert np.corrcoef(predicted, episode.rewards)[0, 1] > 0.95


def test_the_logger_gets_the_reward_curves_on_the_fits_own_axis():
    class Recorder:
        calls = []

        def log(self, metrics, step, prefix=""):
            self.calls.append((dict(metrics), step, prefix))

    recorder = Recorder()
    _, report = train_reward_model(*pairs(100), cfg=tiny(robust=True, steps=40, eval_every=20), logger=recorder)
    assert [step for _, step, _ in recorder.calls] == [20, 40] == report.eval_steps
    assert {prefix for _, _, prefix in recorder.calls} == {"reward"}
    keys = set(recorder.calls[0][0])
    assert {"train_loss", "val_loss", "val_accuracy", "val_variance", "val_disagreement"} <= keys
    json.dumps(report.as_dict())  # ready for a JSON file
    assert report.as_dict()["val_variance"] == report.val_variance


def test_training_is_deterministic_for_a_seed_and_leaves_the_global_rng_alone():
    def run(seed):
        torch.manual_seed(7)
        model, report = train_reward_model(*pairs(100), cfg=tiny(robust=True, steps=30, eval_every=10), seed=seed)
        return model, report, torch.rand(3)

    (a, report_a, after_a), (b, report_b, _), (c, _, _) = run(0), run(0), run(1)
    for name, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[name]), name
    assert report_a.as_dict() == report_b.as_dict()
    assert any(not torch.equal(v, c.state_dict()[k]) for k, v in a.state_dict().items())
    torch.manual_seed(7)
    assert torch.equal(after_a, torch.rand(3))  # nothing drawn from the global RNG


@pytest.mark.parametrize("kind", ["mlp", "transformer"])
def test_a_training_step_reads_no_value_on_the_host(kind):
    """Forward and backward on the meta device (shapes, no data): an .item(), a bool() of a tensor or a
    data-dependent shape would fail there, as it would sync a GPU with the host."""
    model = build_reward_model(tiny(kind=kind, robust=True), S, A, H).to("meta").train()
    obs, act = torch.empty(2, 4, H, S, device="meta"), torch.empty(2, 4, H, A, device="meta")  # (E, B, H, .)
    loss = preference_loss(model, obs, act, obs, act, torch.empty(2, 4, device="meta"), 1.0, 1.0)
    loss.sum().backward()
    assert loss.shape == (2,)


# ---------------------------------------------------------------- Bradley-Terry by hand


def test_the_bradley_terry_loss_by_hand():
    score_1, score_2 = torch.tensor([2.0, 0.0, 1.0]), torch.tensor([1.0, 3.0, 1.0])
    label = torch.tensor([1.0, 0.0, 1.0])
    sigmoid = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    by_hand = -(math.log(sigmoid(1.0)) + math.log(sigmoid(3.0)) + math.log(sigmoid(0.0))) / 3
    assert bradley_terry_loss(score_1, score_2, label).item() == pytest.approx(by_hand, rel=1e-6)


def test_the_mlps_segment_score_is_the_sum_of_its_rewards():
    model = linear_mlp([1.0, 2.0, 0.0, 0.0, -1.0])  # r = s0 + 2 s1 - a1
    obs_1 = torch.tensor([[[1.0, 0.0, 5.0], [0.0, 1.0, 5.0]]])  # (1, 2, S): rewards 1, 2
    act_1 = torch.tensor([[[0.0, 0.0], [0.0, 1.0]]])  # (1, 2, A): -0, -1  -> return 2
    obs_2 = torch.zeros(1, 2, S)
    act_2 = torch.tensor([[[0.0, -1.0], [0.0, 0.0]]])  # rewards 1, 0 -> return 1
    label = torch.tensor([0.0])  # segment 2 preferred
    loss = preference_loss(model, obs_1, act_1, obs_2, act_2, label)  # (E,)
    assert loss.shape == (1,)
    assert loss.item() == pytest.approx(-math.log(1 / (1 + math.exp(2.0 - 1.0))), rel=1e-6)


def test_a_tie_label_gives_the_mean_of_both_sides_losses():
    d = torch.tensor([0.0, 2.0, -3.0])
    loss = bradley_terry_loss(d, torch.zeros(3), torch.full((3,), 0.5))
    softplus = lambda x: math.log1p(math.exp(x))  # noqa: E731 (-log sigmoid(x) = softplus(-x))
    by_hand = sum(0.5 * softplus(-x) + 0.5 * softplus(x) for x in (0.0, 2.0, -3.0)) / 3
    assert loss.item() == pytest.approx(by_hand, rel=1e-6)
    assert bradley_terry_loss(torch.zeros(1), torch.zeros(1), torch.full((1,), 0.5)).item() == pytest.approx(
        math.log(2)
    )
    soft = bradley_terry_loss(torch.tensor([1.0]), torch.zeros(1), torch.tensor([0.8]))
    assert soft.item() == pytest.approx(-(0.8 * math.log(1 / (1 + math.exp(-1))) + 0.2 * math.log(1 / (1 + math.e))))


def test_accuracy_leaves_ties_out():
    model = linear_mlp([1.0, 0.0, 0.0, 0.0, 0.0])  # r = s0
    obs_1 = np.zeros((3, 1, S), np.float32)
    obs_1[:, 0, 0] = [1.0, 1.0, 1.0]
    obs_2 = np.zeros((3, 1, S), np.float32)  # segment 1 is better in every pair
    act = np.zeros((3, 1, A), np.float32)
    metrics = evaluate_reward_model(model, obs_1, act, obs_2, act, np.array([1.0, 0.0, 0.5], np.float32))
    assert metrics["accuracy"] == pytest.approx(0.5)  # right, wrong; the tie is not counted
    assert metrics["error"] == pytest.approx(0.5)


# ---------------------------------------------------------------- Preference Transformer


def transformer(**kwargs) -> PreferenceTransformer:
    torch.manual_seed(0)
    return PreferenceTransformer(S, A, context_length=H, embed_dim=16, num_heads=2, **kwargs).eval()


def test_preference_attention_weights_are_a_distribution_and_give_the_score():
    model = transformer(ensemble_size=2)
    obs, act = torch.randn(5, H, S), torch.randn(5, H, A)
    out = model(obs, act)
    assert out.reward.shape == out.weights.shape == (2, 5, H) and out.log_var is None
    assert (out.weights >= 0).all()
    torch.testing.assert_close(out.weights.sum(-1), torch.ones(2, 5))
    assert out.weights.std() > 0  # not a plain average
    torch.testing.assert_close(out.scores(), (out.weights * out.reward).sum(-1))


def test_without_the_weighted_sum_the_score_is_the_plain_sum():
    model = transformer(weighted_sum=False)
    out = model(torch.randn(4, H, S), torch.randn(4, H, A))
    assert out.weights is None
    torch.testing.assert_close(out.scores(), out.reward.sum(-1))


def test_the_transformers_rewards_are_causal():
    model = transformer()
    obs, act = torch.randn(3, H, S), torch.randn(3, H, A)
    changed_obs, changed_act = obs.clone(), act.clone()
    changed_obs[:, 5] += 1.0
    changed_act[:, 5] -= 1.0
    before, after = model(obs, act).reward, model(changed_obs, changed_act).reward  # (1, 3, H)
    torch.testing.assert_close(before[..., :5], after[..., :5])  # step 5 never reaches an earlier reward
    assert not torch.allclose(before[..., 5:], after[..., 5:])


@pytest.mark.parametrize("steps", [20, H, 5])
def test_relabelling_rewards_come_from_the_sliding_causal_context(steps):
    model = transformer(ensemble_size=2, dropout=0.3).train()
    episode = trajectory(0, steps=steps)
    obs, act = torch.as_tensor(episode.observations[:-1]), torch.as_tensor(episode.actions)
    predicted = model.predict(obs.numpy(), act.numpy())  # (T,), in eval mode (no dropout) whatever the model's mode
    assert model.training  # and the mode is given back
    model.eval()
    expected = []
    for t in range(steps):
        start = max(0, t - H + 1)
        window = model(obs[None, start : start + H], act[None, start : start + H]).reward.mean(0)[0]  # (<=H,)
        expected.append(window[t - start])
    np.testing.assert_allclose(predicted, torch.stack(expected).detach().numpy(), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- robust reward learning


def test_the_variance_regulariser_is_a_kl_with_its_minimum_at_the_target():
    log_var = torch.tensor([math.log(4.0), 0.0, math.log(16.0)], requires_grad=True)
    kl = variance_regularizer(log_var, variance_target=4.0)
    by_hand = [0.0, 0.5 * (0.25 - 1 - math.log(0.25)), 0.5 * (4 - 1 - math.log(4))]
    torch.testing.assert_close(kl.detach(), torch.tensor(by_hand))
    kl.sum().backward()
    assert log_var.grad[0] == 0 and log_var.grad[1] < 0 < log_var.grad[2]  # descent moves towards the target


@pytest.mark.parametrize("kind", ["mlp", "transformer"])
def test_the_regulariser_pulls_the_variance_to_its_target_only_when_on(kind):
    """Clean labels the model fits with growing margins: the preference loss soon has little to say about sigma
    (it only ever asks for less noise), so the regulariser sets it; without it, sigma^2 shrinks from ~1 at init."""
    common = dict(kind=kind, robust=True, variance_target=4.0)
    _, on = train_reward_model(*pairs(), cfg=tiny(**common, variance_coef=3.0))
    _, off = train_reward_model(*pairs(), cfg=tiny(**common, variance_coef=0.0))
    assert abs(math.log(on.val_variance[-1] / 4.0)) < 0.3, on.val_variance
    assert off.val_variance[-1] < 0.5, off.val_variance


def test_robust_scores_are_reparameterised_samples_in_training_and_means_in_eval():
    torch.manual_seed(0)
    model = MLPRewardEnsemble(S, A, hidden_dims=(16,), ensemble_size=1, robust=True)
    obs_1, act_1, obs_2, act_2, label = (torch.as_tensor(x) for x in pairs(16))
    loss = preference_loss(model.train(), obs_1, act_1, obs_2, act_2, label)  # variance_coef 0: CE only
    loss.sum().backward()
    head = model.net.layers[-1].weight.grad[0, :, 1]  # gradient of the log-variance output
    assert head.abs().sum() > 0  # the preference loss reaches sigma through r = mu + sigma * eps
    model.eval()
    assert torch.equal(preference_loss(model, obs_1, act_1, obs_2, act_2, label), model_loss_of_means(model))


def test_validation_of_a_robust_model_scores_the_means():
    torch.manual_seed(0)
    model = MLPRewardEnsemble(S, A, hidden_dims=(16,), ensemble_size=1, robust=True).train()
    with torch.no_grad():
        model.net.layers[-1].bias[..., 1] = 4.0  # sigma^2 ~ e^4: samples would move every score a lot
    metrics = evaluate_reward_model(model, *pairs(16))
    assert metrics == evaluate_reward_model(model, *pairs(16)) and model.training
    assert metrics["loss"] == pytest.approx(model_loss_of_means(model.eval()).item(), rel=1e-6)
    assert metrics["variance"] == pytest.approx(math.exp(4.0), rel=0.2)


def test_the_log_variance_is_softly_bounded():
    model = MLPRewardEnsemble(S, A, hidden_dims=(16,), ensemble_size=2, robust=True)
    obs, act = torch.randn(4, H, S), torch.randn(4, H, A)
    with torch.no_grad():
        model.net.layers[-1].bias[0, 0, 1], model.net.layers[-1].bias[1, 0, 1] = 1e3, -1e3
    log_var = model(obs, act).log_var  # (E, B, H)
    assert torch.isfinite(log_var).all()
    assert 5.9 < log_var[0].min() and log_var[0].max() <= 6.0 and -10.0 <= log_var[1].min() and log_var[1].max() < -9.9


def model_loss_of_means(model):
    obs_1, act_1, obs_2, act_2, label = (torch.as_tensor(x) for x in pairs(16))
    out_1, out_2 = model(obs_1, act_1), model(obs_2, act_2)
    return bradley_terry_loss(out_1.reward.sum(-1), out_2.reward.sum(-1), label)


# ---------------------------------------------------------------- ensembles


@pytest.mark.parametrize("kind", ["mlp", "transformer"])
def test_ensemble_members_differ_and_disagree(kind):
    model, report = train_reward_model(*pairs(100), cfg=tiny(kind=kind, ensemble_size=3, steps=50, eval_every=50))
    episode = trajectory(0)
    obs, act = episode.observations[:-1], episode.actions
    members = model.predict_members(obs, act)  # (E, T)
    assert members.shape == (3, 20)
    assert not torch.allclose(members[0], members[1]) and not torch.allclose(members[1], members[2])
    np.testing.assert_allclose(model.predict(obs, act), members.mean(0).numpy(), rtol=1e-6)
    assert (model.disagreement(obs, act) > 0).all() and report.val_disagreement[-1] > 0


def test_each_member_is_trained_on_its_own_minibatch(monkeypatch):
    """The loss the fit loop gets for indices (E, B) is each member's preference loss on its own row of pairs."""
    import embodied_rl.rewards.preference as preference

    captured, real_fit = {}, preference.fit

    def capture(model, batch_loss, *args, **kwargs):
        captured.update(model=model, batch_loss=batch_loss)
        return real_fit(model, batch_loss, *args, **kwargs)

    monkeypatch.setattr(preference, "fit", capture)
    data = pairs(50)
    train_reward_model(*data, cfg=tiny(ensemble_size=2, steps=1, val_fraction=0.0))
    model, batch_loss = captured["model"], captured["batch_loss"]
    idx = torch.tensor([[0, 1, 2], [3, 4, 5]])  # (E, B): member 0 gets pairs 0-2, member 1 pairs 3-5
    obs_1, act_1, obs_2, act_2, label = (torch.as_tensor(x) for x in data)
    expected = [preference_loss(model, obs_1[r], act_1[r], obs_2[r], act_2[r], label[r])[e] for e, r in enumerate(idx)]
    torch.testing.assert_close(batch_loss(idx), torch.stack(expected))


def test_a_single_member_has_no_disagreement():
    model, report = train_reward_model(*pairs(100), cfg=tiny(ensemble_size=1, steps=10, eval_every=10))
    episode = trajectory(0)
    assert (model.disagreement(episode.observations[:-1], episode.actions) == 0).all()
    assert report.val_disagreement == []


def test_the_default_ensemble_size_depends_on_the_kind():
    assert RewardModelConfig().ensemble_size == 3 and RewardModelConfig(kind="transformer").ensemble_size == 1


# ---------------------------------------------------------------- relabelling, save / load


@pytest.mark.parametrize("kind", ["mlp", "transformer"])
def test_relabelling_replaces_rewards_and_keeps_the_env_reward(kind):
    model, _ = train_reward_model(*pairs(100), cfg=tiny(kind=kind, steps=20, eval_every=20))
    trajectories = [trajectory(e, steps=n) for e, n in enumerate((20, 5, 13))]
    relabelled = relabel_trajectories(model, trajectories, batch_size=7)
    assert len(relabelled) == 3
    for old, new in zip(trajectories, relabelled):
        expected = model.predict(old.observations[:-1], old.actions)
        np.testing.assert_allclose(new.rewards, expected, rtol=1e-5, atol=1e-6)
        assert new.rewards.dtype == np.float32 and not np.allclose(new.rewards, old.rewards)
        np.testing.assert_array_equal(new.infos["env_reward"], old.rewards)
        np.testing.assert_array_equal(new.infos["dist"], old.infos["dist"])
        for name in ("observations", "actions", "terminations", "truncations", "success"):
            np.testing.assert_array_equal(getattr(new, name), getattr(old, name))
        assert new.episode_id == old.episode_id and "env_reward" not in old.infos  # the input is left alone
    twice = relabel_trajectories(model, relabelled)
    np.testing.assert_array_equal(twice[0].infos["env_reward"], trajectories[0].rewards)  # still the env's


def test_return_correlation_ranks_whole_episodes_by_their_learned_and_true_returns():
    true = [np.full(5, r) for r in (1.0, 2.0, 3.0, 10.0)]  # returns 5, 10, 15, 50

    def learned(per_step):
        return [replace(trajectory(e, steps=5), rewards=r) for e, r in enumerate(per_step)]

    same_order = return_correlation(learned([np.full(5, r) for r in (0.1, 0.2, 0.3, 0.4)]), true)
    assert same_order["spearman"] == pytest.approx(1.0) and 0.5 < same_order["pearson"] < 1.0  # ranks, not values
    reversed_order = return_correlation(learned([np.full(5, r) for r in (4.0, 3.0, 2.0, 1.0)]), true)
    assert reversed_order["spearman"] == pytest.approx(-1.0) and reversed_order["pearson"] < -0.5
    constant = return_correlation(learned([np.ones(5)] * 4), true)
    assert math.isnan(constant["spearman"]) and math.isnan(constant["pearson"])
    with pytest.raises(ValueError, match="3 true reward arrays"):
        return_correlation(learned([np.ones(5)] * 4), true[:3])


@pytest.mark.parametrize("kind, robust", KINDS, ids=[f"{k}{'-rrl' if r else ''}" for k, r in KINDS])
def test_save_and_load_give_the_same_predictions(kind, robust, tmp_path):
    model, _ = train_reward_model(*pairs(100), cfg=tiny(kind=kind, robust=robust, steps=20, eval_every=20))
    save_reward_model(model, tmp_path / "reward_model.pt")
    loaded = load_reward_model(tmp_path / "reward_model.pt")
    assert type(loaded) is type(model) and loaded.init_args == model.init_args and not loaded.training
    episode = trajectory(0, steps=30)
    obs, act = episode.observations[:-1], episode.actions
    np.testing.assert_array_equal(loaded.predict(obs, act), model.predict(obs, act))
    torch.testing.assert_close(loaded.normalizer.mean, model.normalizer.mean, rtol=0, atol=0)
    assert not (tmp_path / "reward_model.pt.tmp").exists()


def test_loading_something_else_is_a_clear_error(tmp_path):
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a reward model saved by save_reward_model"):
        load_reward_model(tmp_path / "other.pt")


# ---------------------------------------------------------------- settings and inputs


def test_an_unknown_key_is_one_error_naming_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown reward model config keys \['hiden_dims'\]; known: .*hidden_dims"):
        RewardModelConfig.from_mapping({"hiden_dims": [8], "steps": 5})


def test_bad_values_are_one_error_naming_each():
    with pytest.raises(ValueError) as error:
        RewardModelConfig(ensemble_size=0, variance_target=0.0, dropout=1.0, val_fraction=1.0)
    message = str(error.value)
    assert message.count("invalid reward model settings") == 1
    for part in ("reward.ensemble_size=0", "reward.variance_target=0.0", "reward.dropout=1.0", "val_fraction=1.0"):
        assert part in message
    with pytest.raises(ValueError, match=r"reward.robust='yes' \(must be true or false\).*reward.steps=2.5"):
        RewardModelConfig.from_mapping({"robust": "yes", "steps": 2.5})
    with pytest.raises(ValueError, match=r"reward.kind='cnn'.*reward.embed_dim=10 \(must be divisible by num_heads=4"):
        RewardModelConfig(kind="cnn", embed_dim=10)
    with pytest.raises(ValueError, match="reward.select_metric='accuracy'"):
        RewardModelConfig(select_metric="accuracy")


def test_settings_round_trip_through_a_mapping():
    cfg = RewardModelConfig.from_mapping({"kind": "transformer", "robust": True, "steps": 1e3, "hidden_dims": [8]})
    assert cfg.steps == 1000 and isinstance(cfg.steps, int) and cfg.hidden_dims == (8,)
    assert RewardModelConfig.from_mapping(cfg.as_dict()) == cfg
    model = build_reward_model(cfg, S, A, H)
    assert isinstance(model, PreferenceTransformer) and model.robust and model.context_length == H


def test_bad_pairs_are_one_clear_error():
    obs_1, act_1, obs_2, act_2, label = pairs(10)
    with pytest.raises(DatasetError, match="labels must be probabilities"):
        train_reward_model(obs_1, act_1, obs_2, act_2, np.full(10, np.nan), cfg=tiny(steps=1))
    with pytest.raises(DatasetError, match="labels must be probabilities"):
        train_reward_model(obs_1, act_1, obs_2, act_2, label * 2, cfg=tiny(steps=1))
    with pytest.raises(DatasetError, match=r"need obs \(P, H, S\).*label \(9,\)"):
        train_reward_model(obs_1, act_1, obs_2, act_2, label[:9], cfg=tiny(steps=1))
    with pytest.raises(DatasetError, match="no preference pairs"):
        train_reward_model(obs_1[:0], act_1[:0], obs_2[:0], act_2[:0], label[:0], cfg=tiny(steps=1))
