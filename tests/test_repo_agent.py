"""RePo agent (embodied_rl.agents.repo): update metrics, gradient isolation (behaviour losses never train the world
model; RePo's probe decoder never trains encoder / RSSM; Dreamer's decoder does), dual ascent on beta, per-env
recurrent state, action bounds, save/load, lambda-returns, learning (the reward head a reward visible in the frames,
the actor a known reward's best action), config file, compiled == eager (slow). Tiny networks, 64x64 images,
batches of 2 sequences of 6 steps, on CPU."""

from __future__ import annotations

import copy
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
import yaml

from embodied_rl.agents.protocol import Agent, reset_agent
from embodied_rl.agents.repo import RePo, RePoConfig
from embodied_rl.agents.repo.behaviour import Actor, actor_loss, imagine, lambda_returns
from embodied_rl.agents.repo.rssm import Latents
from embodied_rl.agents.repo.world_model import balanced_kl, gaussian_kl
from embodied_rl.data.sequences import SequenceReplay, Sequences

ROOT = Path(__file__).resolve().parent.parent
TINY = dict(embed_dim=32, cnn_depth=4, deter_dim=16, stoch_dim=4, hidden_dim=16, horizon=4)
OBS_SHAPE = (64, 64, 3)


def make_agent(seed: int = 0, action_space=2, **overrides) -> RePo:
    torch.manual_seed(seed)
    return RePo(OBS_SHAPE, action_space, RePoConfig(**{**TINY, **overrides}), device="cpu")


def make_batch(seed: int = 0, batch: int = 2, length: int = 6, action_dim: int = 2) -> Sequences:
    g = torch.Generator().manual_seed(seed)
    is_first = torch.zeros(batch, length, dtype=torch.bool)
    is_first[:, 0] = True
    is_first[0, 3] = True  # an episode boundary inside a window
    reward = torch.randn(batch, length, generator=g).masked_fill(is_first, 0.0)
    prev_action = (torch.rand(batch, length, action_dim, generator=g) * 2 - 1).masked_fill(is_first[..., None], 0.0)
    return Sequences(
        obs=torch.randint(0, 256, (batch, length, *OBS_SHAPE), dtype=torch.uint8, generator=g),
        prev_action=prev_action,
        reward=reward,
        is_first=is_first,
        is_terminal=torch.zeros(batch, length, dtype=torch.bool),
    )


def grads(module: torch.nn.Module) -> list[torch.Tensor | None]:
    return [p.grad for p in module.parameters()]


def no_grad_at_all(module: torch.nn.Module) -> bool:
    return all(g is None or not g.any() for g in grads(module))


def some_grad(module: torch.nn.Module) -> bool:
    return any(g is not None and g.abs().sum() > 0 for g in grads(module))


def model_inputs(agent: RePo, batch: Sequences) -> tuple[torch.Tensor, ...]:
    fields = agent._sequence_fields(batch)
    return fields["obs"], fields["prev_action"], fields["reward"], fields["is_first"]


# ---------------------------------------------------------------- update
REPO_KEYS = {"model_loss", "reward_loss", "kl", "beta", "beta_loss", "model_grad_norm"}
BEHAVIOUR_KEYS = {"actor_loss", "entropy", "imagined_reward", "imagined_return", "actor_grad_norm"}
BEHAVIOUR_KEYS |= {"value_loss", "value_mean", "value_grad_norm"}


@pytest.mark.parametrize(
    "overrides, extra_keys",
    [
        ({}, REPO_KEYS),
        ({"train_decoder": True}, REPO_KEYS | {"decoder_loss"}),
        ({"objective": "dreamer"}, {"model_loss", "reward_loss", "kl", "kl_loss", "decoder_loss", "model_grad_norm"}),
        ({"mixed_precision": True, "grad_clip": None}, REPO_KEYS - {"model_grad_norm"}),
    ],
    ids=["repo", "repo_decoder", "dreamer", "bf16_noclip"],
)
def test_update_returns_finite_detached_scalars(overrides, extra_keys):
    agent = make_agent(**overrides)
    before = copy.deepcopy(agent.state_dict())
    for seed in range(2):
        metrics = agent.update(make_batch(seed))
    expected = extra_keys | BEHAVIOUR_KEYS
    if overrides.get("grad_clip", 1) is None:
        expected -= {"actor_grad_norm", "value_grad_norm"}
    assert set(metrics) == expected
    for name, value in metrics.items():
        assert isinstance(value, torch.Tensor) and value.dim() == 0, name
        assert not value.requires_grad and value.grad_fn is None, name
        assert torch.isfinite(value), name
    assert agent.num_updates == 2
    after = agent.state_dict()
    for part in ("world_model", "actor", "value"):  # every network was trained
        changed = [not torch.equal(before[part][k], after[part][k]) for k in before[part]]
        assert any(changed), part


def bright_or_dark_batch(g: torch.Generator, batch: int = 4, length: int = 8) -> Sequences:
    """Frames all black or all white at random; the reward of arriving at a frame is 1 when it is white."""
    bright = torch.rand(batch, length, generator=g) < 0.5
    is_first = torch.zeros(batch, length, dtype=torch.bool)
    is_first[:, 0] = True
    obs = (bright[..., None, None, None] * 255).to(torch.uint8).expand(batch, length, *OBS_SHAPE)
    return Sequences(
        obs=obs.contiguous(),
        prev_action=(torch.rand(batch, length, 2, generator=g) * 2 - 1).masked_fill(is_first[..., None], 0.0),
        reward=bright.float().masked_fill(is_first, 0.0),
        is_first=is_first,
        is_terminal=torch.zeros(batch, length, dtype=torch.bool),
    )


@pytest.mark.parametrize("objective", ["repo", "dreamer"])
def test_world_model_learns_a_reward_it_can_see(objective):
    """The reward head, through encoder and posterior, learns a reward written in the frames: on fresh batches the
    reward loss (unit-variance Gaussian NLL, 0.125 for predicting the mean 0.5) falls well below chance."""
    agent = make_agent(objective=objective)
    g = torch.Generator().manual_seed(0)
    losses = [float(agent.update(bright_or_dark_batch(g))["reward_loss"]) for _ in range(120)]
    assert np.mean(losses[-10:]) < 0.3 * np.mean(losses[:10]) and np.mean(losses[-10:]) < 0.04


def test_update_on_a_sequence_replay_sample():
    """The agent takes what `SequenceReplay.sample` gives (uint8 pixels, float32 actions and rewards, bool flags);
    actions in the env's bounds are mapped to [-1, 1] for the model."""
    space = gym.spaces.Box(-2.0, 2.0, (2,), np.float32)
    agent = make_agent(action_space=space)
    assert isinstance(agent, Agent)
    replay = SequenceReplay(32, OBS_SHAPE, 2, seq_len=6, num_streams=2, obs_dtype=torch.uint8)
    rng = np.random.default_rng(0)
    for step in range(10):
        first = step % 7 == 0
        replay.add(
            rng.integers(0, 256, (2, *OBS_SHAPE), dtype=np.uint8),
            np.zeros((2, 2)) if first else rng.uniform(-2, 2, (2, 2)),
            np.zeros(2) if first else rng.normal(size=2),
            np.full(2, first),
            np.zeros(2, dtype=bool),
        )
    metrics = agent.update(replay.sample(3, torch.Generator().manual_seed(0)))
    assert all(torch.isfinite(value) for value in metrics.values())


def test_update_rejects_a_malformed_batch():
    agent = make_agent()
    batch = make_batch()
    with pytest.raises(ValueError, match="obs"):
        agent.update(Sequences(**{**vars(batch), "obs": batch.obs.float()}))
    with pytest.raises(ValueError, match="prev_action"):
        agent.update(Sequences(**{**vars(batch), "prev_action": batch.prev_action[..., :1]}))
    with pytest.raises(KeyError, match="is_first"):
        agent.update({"obs": batch.obs, "prev_action": batch.prev_action, "reward": batch.reward})


# ---------------------------------------------------------------- gradient isolation
def test_behaviour_losses_send_no_gradient_to_the_world_model():
    """The actor loss trains the actor only (world model and value net are evaluated with detached weights, the
    start states are detached); the value loss trains the value net only."""
    agent = make_agent()
    _, (_, deter, stoch) = agent._model_forward(*model_inputs(agent, make_batch()))
    assert not deter.requires_grad and not stoch.requires_grad
    loss, (_, features, returns) = agent._actor_forward(deter, stoch)
    loss.backward()
    assert all(g is None for g in grads(agent.world_model)), "the actor loss reached the world model"
    assert all(g is None for g in grads(agent.value)), "the actor loss reached the value net"
    assert some_grad(agent.actor)
    agent.actor.zero_grad(set_to_none=True)
    loss, _ = agent._value_forward(features, returns)
    loss.backward()
    assert all(g is None for g in grads(agent.world_model)) and all(g is None for g in grads(agent.actor))
    assert some_grad(agent.value)


def test_actor_gradient_flows_through_the_dynamics():
    """Dynamics backpropagation: the actor's gradient comes through the imagined states (reward and value of later
    states), not only through the entropy bonus."""
    agent = make_agent(actor_entropy=0.0)
    _, (_, deter, stoch) = agent._model_forward(*model_inputs(agent, make_batch()))
    loss, _ = agent._actor_forward(deter, stoch)
    loss.backward()
    assert some_grad(agent.actor)


def test_actor_learns_the_action_the_imagined_reward_prefers():
    """Behaviour learning alone, on known dynamics: the next state is the action taken and the reward peaks at
    a = 0.5 in every dimension (value 0). A few hundred Adam steps on Dreamer's actor loss must bring the actor's
    deterministic action there: the sign of the returns, the dynamics backpropagation and the squashing agree."""
    torch.manual_seed(0)
    action_dim, stoch_dim = 2, 3
    actor = Actor(action_dim + stoch_dim, action_dim, hidden_dim=32, num_layers=2)
    optimizer = torch.optim.Adam(actor.parameters(), lr=3e-3)

    def prior_step(deter, stoch, action):  # h' = a; z' ~ N(0, 0.1)
        return action, torch.zeros_like(stoch), torch.full_like(stoch, 0.1)

    def reward_fn(features):  # (..., F) -> (...,)
        return -(features[..., :action_dim] - 0.5).square().sum(-1)

    start = (torch.zeros(64, action_dim), torch.zeros(64, stoch_dim))
    for _ in range(300):
        imagination = imagine(prior_step, actor, *start, horizon=4)
        loss, _, _ = actor_loss(imagination, reward_fn, lambda f: torch.zeros(f.shape[:-1]), 0.99, 0.95, 3e-4)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    features = torch.cat([torch.zeros(8, action_dim) + 0.5, torch.zeros(8, stoch_dim)], dim=-1)
    assert torch.allclose(actor(features).mode, torch.full((8, action_dim), 0.5), atol=0.05)


def decoder_input_recorder(agent: RePo) -> list[torch.Tensor]:
    """Records the features the decoder receives (their gradient kept)."""
    seen: list[torch.Tensor] = []

    def hook(module, args):
        if args[0].requires_grad:
            args[0].retain_grad()
        seen.append(args[0])

    agent.world_model.decoder.register_forward_pre_hook(hook)
    return seen


def test_repo_decoder_is_a_probe_with_no_gradient_into_encoder_or_rssm():
    """With `train_decoder`, the decoder trains on detached features: encoder, RSSM and reward head receive exactly
    the gradients they get without a decoder, and the decoder's input carries no graph."""
    probed = make_agent(train_decoder=True)
    plain = make_agent(train_decoder=False)
    state = {k: v for k, v in probed.world_model.state_dict().items() if not k.startswith("decoder.")}
    plain.world_model.load_state_dict(state)
    seen = decoder_input_recorder(probed)
    batch = make_batch()
    for agent in (probed, plain):
        torch.manual_seed(7)  # the same posterior samples
        loss, _, _ = agent.world_model.loss(*model_inputs(agent, batch), agent.dual)
        loss.backward()
    assert len(seen) == 1 and not seen[0].requires_grad
    assert some_grad(probed.world_model.decoder)
    for part in ("encoder", "rssm", "reward_head"):
        for got, expected in zip(
            grads(getattr(probed.world_model, part)), grads(getattr(plain.world_model, part)), strict=True
        ):
            torch.testing.assert_close(got, expected, rtol=0, atol=0, msg=part)


def test_dreamer_decoder_trains_and_its_gradient_reaches_the_encoder():
    agent = make_agent(objective="dreamer")
    seen = decoder_input_recorder(agent)
    loss, metrics, _ = agent.world_model.loss(*model_inputs(agent, make_batch()), None)
    loss.backward()
    assert len(seen) == 1 and seen[0].requires_grad
    assert seen[0].grad is not None and seen[0].grad.abs().sum() > 0  # the reconstruction gradient enters f_t
    assert some_grad(agent.world_model.decoder) and some_grad(agent.world_model.encoder)
    # the reconstruction term dominates an untrained Dreamer's loss and is part of it
    assert metrics["decoder_loss"] > 0 and torch.isclose(
        metrics["model_loss"], metrics["decoder_loss"] + metrics["reward_loss"] + metrics["kl_loss"]
    )


# ---------------------------------------------------------------- dual ascent
@pytest.mark.parametrize("target_kl, direction", [(1e-3, 1), (1e3, -1)], ids=["kl_above_target", "kl_below_target"])
def test_dual_ascent_moves_beta_towards_the_constraint(target_kl, direction):
    agent = make_agent(target_kl=target_kl, beta_lr=0.1, init_beta=1e-2)
    betas = [agent.beta.clone()]
    for seed in range(3):
        metrics = agent.update(make_batch(seed))
        assert (metrics["kl"] - target_kl) * direction > 0
        betas.append(metrics["beta"])
    steps = torch.stack(betas).diff()
    assert (steps * direction > 0).all(), betas


def test_beta_scales_the_kl_term_of_the_model_loss():
    agent = make_agent(init_beta=2.0, target_kl=3.0)
    _, metrics, _ = agent.world_model.loss(*model_inputs(agent, make_batch()), agent.dual)
    expected = metrics["reward_loss"] + 2.0 * (metrics["kl"] - 3.0)
    torch.testing.assert_close(metrics["model_loss"], expected)


def test_balanced_kl_splits_the_gradient_between_prior_and_posterior():
    """Its value is KL(q || p); the prior gets `balance` of the plain KL's gradient, the posterior the rest."""
    g = torch.Generator().manual_seed(0)
    stats = [torch.randn(2, 3, 4, generator=g), torch.rand(2, 3, 4, generator=g) + 0.1] * 2

    def leaves():
        return [x.clone().requires_grad_() for x in stats]

    balanced = leaves()
    post_mean, post_std, prior_mean, prior_std = balanced
    latents = Latents(torch.zeros(2, 3, 1), torch.zeros(2, 3, 4), post_mean, post_std, prior_mean + 0.5, prior_std)
    value = balanced_kl(latents, 0.8)
    torch.testing.assert_close(value, gaussian_kl(*[x.detach() for x in balanced[:2]], prior_mean + 0.5, prior_std))
    value.sum().backward()
    plain = leaves()
    gaussian_kl(plain[0], plain[1], plain[2] + 0.5, plain[3]).sum().backward()
    for got, reference, share in zip(balanced, plain, (0.2, 0.2, 0.8, 0.8)):
        torch.testing.assert_close(got.grad, share * reference.grad)


def test_reward_loss_ignores_episode_start_rows():
    """Rows with `is_first` carry no reward: their reward value does not enter the loss."""
    agent = make_agent()
    batch = make_batch()
    losses = []
    for fill in (0.0, 100.0):
        shifted = Sequences(**{**vars(batch), "reward": batch.reward.masked_fill(batch.is_first, fill)})
        torch.manual_seed(0)
        _, metrics, _ = agent.world_model.loss(*model_inputs(agent, shifted), agent.dual)
        losses.append(metrics["reward_loss"])
    torch.testing.assert_close(losses[0], losses[1], rtol=0, atol=0)


# ---------------------------------------------------------------- acting
def test_act_shapes_and_bounds():
    space = gym.spaces.Box(np.array([0.0, -3.0], np.float32), np.array([2.0, -1.0], np.float32))
    agent = make_agent(action_space=space)
    rng = np.random.default_rng(0)
    obs = rng.integers(0, 256, (5, *OBS_SHAPE), dtype=np.uint8)
    reset_agent(agent, np.ones(5, dtype=bool))  # what trainers call at episode starts
    for deterministic in (False, True):
        for _ in range(3):
            action = agent.act(obs, deterministic=deterministic)
            assert action.shape == (5, 2) and action.dtype == np.float32
            assert np.all(action >= space.low) and np.all(action <= space.high)
    single = make_agent(action_space=space)
    assert single.act(obs[0]).shape == (2,)
    with pytest.raises(ValueError, match="reset"):
        agent.act(obs[:3])  # another number of envs without a reset
    with pytest.raises(ValueError, match="uint8"):
        agent.act(obs.astype(np.float32))


def test_reset_zeros_only_the_masked_envs():
    agent = make_agent()
    obs = np.random.default_rng(0).integers(0, 256, (3, *OBS_SHAPE), dtype=np.uint8)
    agent.reset(np.ones(3, dtype=bool))
    assert agent.policy_features.shape == (3, 16 + 4) and not agent.policy_features.any()
    for _ in range(2):
        agent.act(obs)
    before = [part.clone() for part in agent._state]  # (h, z, previous action)
    assert all(part.abs().sum(-1).gt(0).all() for part in before)
    agent.reset(np.array([True, False, True]))
    for old, new in zip(before, agent._state):
        assert not new[[0, 2]].any()
        torch.testing.assert_close(new[1], old[1], rtol=0, atol=0)
    agent.reset(np.zeros(4, dtype=bool))  # a new number of envs: sized to 4, all starting
    assert agent.policy_features.shape == (4, 20) and not agent.policy_features.any()


def test_first_act_after_reset_matches_observe_on_an_episode_start():
    """act's filtering step from a reset state is the world model's step at an `is_first` row (same noise)."""
    agent = make_agent()
    obs = np.random.default_rng(1).integers(0, 256, (2, *OBS_SHAPE), dtype=np.uint8)
    agent.reset(np.ones(2, dtype=bool))
    torch.manual_seed(3)
    agent.act(obs)
    stale_action = torch.rand(2, 1, 2)  # ignored at an episode start
    torch.manual_seed(3)
    with torch.no_grad():
        features = agent.observe(torch.as_tensor(obs)[:, None], stale_action, torch.ones(2, 1, dtype=torch.bool))
    assert features.shape == (2, 1, 20)
    torch.testing.assert_close(agent.policy_features, features[:, 0])


def test_observe_gives_features_with_gradient_to_the_encoder():
    agent = make_agent()
    batch = make_batch()
    features = agent.observe(batch.obs, batch.prev_action, batch.is_first)
    assert features.shape == (2, 6, 20)
    features.square().sum().backward()
    assert some_grad(agent.encoder)
    assert agent.encoder is agent.world_model.encoder
    assert agent.encoder(batch.obs).shape == (2, 6, 32)


# ---------------------------------------------------------------- persistence
def test_state_dict_round_trip_gives_identical_actions_and_updates():
    agent = make_agent(seed=0)
    for seed in range(2):
        agent.update(make_batch(seed))
    restored = make_agent(seed=1)
    restored.load_state_dict(agent.state_dict())
    assert restored.num_updates == 2 and torch.equal(restored.beta, agent.beta)
    obs = np.random.default_rng(0).integers(0, 256, (4, 3, *OBS_SHAPE), dtype=np.uint8)
    actions = {}
    for name, a in (("original", agent), ("restored", restored)):
        a.reset(np.ones(3, dtype=bool))
        torch.manual_seed(5)
        actions[name] = [a.act(o) for o in obs]
        torch.manual_seed(6)
        actions[name].append(a.update(make_batch(3)))  # optimiser states match too
    for got, expected in zip(actions["restored"][:-1], actions["original"][:-1]):
        np.testing.assert_array_equal(got, expected)
    for name, value in actions["original"][-1].items():
        torch.testing.assert_close(actions["restored"][-1][name], value, rtol=0, atol=0, msg=name)
    with pytest.raises(ValueError, match="another agent"):
        restored.load_state_dict({"actor": {}})


# ---------------------------------------------------------------- lambda-returns
def test_lambda_returns_hand_computed():
    """V_t = r_t + gamma ((1 - lambda) v_{t+1} + lambda V_{t+1}), V_T = v_T, with gamma = lambda = 0.5:
    V_1 = 2 + 0.5 * 30 = 17;  V_0 = 1 + 0.5 * (0.5 * 20 + 0.5 * 17) = 10.25."""
    rewards = torch.tensor([[1.0], [2.0]])  # (T=2, N=1)
    next_values = torch.tensor([[20.0], [30.0]])  # v_1, v_2 (bootstrap)
    returns = lambda_returns(rewards, next_values, 0.5, 0.5)
    torch.testing.assert_close(returns, torch.tensor([[10.25], [17.0]]))
    # lambda = 0: one-step TD targets; lambda = 1: discounted sums bootstrapped at T
    torch.testing.assert_close(lambda_returns(rewards, next_values, 0.5, 0.0), torch.tensor([[11.0], [17.0]]))
    torch.testing.assert_close(lambda_returns(rewards, next_values, 0.5, 1.0), torch.tensor([[9.5], [17.0]]))


# ---------------------------------------------------------------- config
def test_config_file_matches_the_dataclass_defaults():
    values = yaml.safe_load((ROOT / "configs/agent/repo.yaml").read_text())
    assert values.pop("name") == "repo"
    assert list(values) == [f.name for f in fields(RePoConfig)]
    assert RePoConfig.from_mapping(values) == RePoConfig()


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="objective"):
        RePoConfig(objective="tia")
    with pytest.raises(ValueError, match="kl_balance"):
        RePoConfig(kl_balance=1.5)
    with pytest.raises(ValueError, match="unknown RePo config keys"):
        RePoConfig.from_mapping({"belief_size": 200})
    with pytest.raises(ValueError, match="64x64"):
        RePo((84, 84, 3), 2, RePoConfig(**TINY), device="cpu")


# ---------------------------------------------------------------- compiled == eager
@contextmanager
def eager_random_numbers():
    """Compiled code draws random numbers as eager code does (inductor's `fallback_random`)."""
    import torch._inductor.config as inductor_config

    torch._dynamo.reset()
    try:
        with inductor_config.patch(fallback_random=True):
            yield
    finally:
        torch._dynamo.reset()


@pytest.mark.slow
def test_compiled_update_equals_eager():
    """The three compiled steps (world model + dual, actor, value) match eager ones. Compiling the unrolled RSSM
    and imagination loops takes ~4 minutes on a 2-core CPU, hence `slow`."""
    results = {}
    with eager_random_numbers():
        for compile in (False, True):
            agent = make_agent(seed=0, compile=compile, horizon=3)
            torch.manual_seed(1)
            results[compile] = (agent, [agent.update(make_batch(seed)) for seed in range(2)])
    (eager, eager_metrics), (compiled, compiled_metrics) = results[False], results[True]
    for expected, got in zip(eager_metrics, compiled_metrics):
        assert set(expected) == set(got)
        for name in expected:
            torch.testing.assert_close(got[name], expected[name], rtol=1e-4, atol=1e-5, msg=name)
    for part in ("world_model", "actor", "value"):
        for (name, p), q in zip(getattr(eager, part).named_parameters(), getattr(compiled, part).parameters()):
            torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-5, msg=f"{part}.{name}")
