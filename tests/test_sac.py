"""embodied_rl.agents.sac: acting, losses, learning on a toy, temperature tuning, save/load, determinism,
pixels, torch.compile == eager. Tiny networks (hidden (32, 32)) and batches of 32 on CPU; the CUDA-graph
checks are marked `gpu`."""

from __future__ import annotations

import io
import warnings
from contextlib import contextmanager

import gymnasium as gym
import numpy as np
import pytest
import torch

from embodied_rl.agents import SAC
from embodied_rl.data import Transitions
from embodied_rl.nn import random_shift

OBS_DIM, ACT_DIM, BATCH = 6, 3, 32
STATE_SPACE = gym.spaces.Box(-np.inf, np.inf, (OBS_DIM,), np.float32)
ACTION_SPACE = gym.spaces.Box(-1.0, 1.0, (ACT_DIM,), np.float32)
SMALL = dict(hidden_dims=(32, 32))
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def make_agent(seed: int = 0, obs_space: gym.Space = STATE_SPACE, action_space=ACTION_SPACE, **hparams) -> SAC:
    torch.manual_seed(seed)
    return SAC(obs_space, action_space, **{**SMALL, **hparams})


def make_batch(seed: int = 0, batch: int = BATCH, device: str = "cpu") -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    data = {
        "obs": torch.randn(batch, OBS_DIM, generator=g),
        "action": torch.rand(batch, ACT_DIM, generator=g) * 2 - 1,
        "reward": torch.randn(batch, generator=g),
        "next_obs": torch.randn(batch, OBS_DIM, generator=g),
        "terminated": (torch.rand(batch, generator=g) < 0.2).float(),
    }
    return {k: v.to(device) for k, v in data.items()}


def parameters(agent: SAC) -> list[torch.Tensor]:
    modules = (agent.encoder, agent.actor, agent.critic, agent.critic_target)
    return [p.detach().clone() for m in modules for p in m.parameters()] + [agent.log_alpha.detach().clone()]


def assert_same_parameters(a: SAC, b: SAC, **tolerance) -> None:
    for x, y in zip(parameters(a), parameters(b), strict=True):
        if tolerance:
            torch.testing.assert_close(x, y, **tolerance)
        else:
            assert torch.equal(x, y)


# ---------------------------------------------------------------- construction and acting
def test_act_shapes_bounds_and_determinism():
    low, high = np.array([0.0, -2.0, 10.0], np.float32), np.array([1.0, 2.0, 12.0], np.float32)
    action_space = gym.spaces.Box(low, high, dtype=np.float32)
    agent = make_agent(action_space=action_space)
    obs = np.random.default_rng(0).normal(size=(5, OBS_DIM)).astype(np.float32)
    single = agent.act(obs[0], deterministic=False)
    batched = agent.act(obs, deterministic=False)
    assert single.shape == (ACT_DIM,) and batched.shape == (5, ACT_DIM)
    assert single.dtype == np.float32 and batched.dtype == np.float32
    for action in (single[None], batched):
        assert np.all(action >= action_space.low) and np.all(action <= action_space.high)
    # Deterministic actions: repeatable, and the same whether batched or not.
    deterministic = agent.act(obs, deterministic=True)
    np.testing.assert_array_equal(deterministic, agent.act(obs, deterministic=True))
    np.testing.assert_allclose(agent.act(obs[2], deterministic=True), deterministic[2], rtol=1e-6, atol=1e-6)
    # The deterministic action is tanh(mu(s)) mapped affinely from [-1, 1] onto the bounds.
    with torch.no_grad():
        unit = agent.actor(torch.as_tensor(obs)).mode.numpy()
    expected = action_space.low + (unit + 1) / 2 * (action_space.high - action_space.low)
    np.testing.assert_allclose(deterministic, expected, rtol=1e-5, atol=1e-5)
    assert np.std(agent.act(np.repeat(obs[:1], 200, 0), deterministic=False), axis=0).min() > 0.05


def test_actor_log_std_is_squashed_into_its_bounds():
    """log sigma = min + (max - min) * (tanh(raw) + 1) / 2: state-dependent, reaching either bound."""
    agent = make_agent(log_std_bounds=(-4.0, 1.0))
    features, last = torch.randn(4, OBS_DIM), agent.actor.net[-1]
    with torch.no_grad():
        last.weight.zero_()
        for raw, expected in ((-30.0, -4.0), (0.0, -1.5), (30.0, 1.0)):
            last.bias.fill_(raw)
            torch.testing.assert_close(agent.actor(features).scale.log(), torch.full((4, ACT_DIM), expected))


@pytest.mark.parametrize(
    "action_space",
    [
        gym.spaces.Discrete(3),
        gym.spaces.Box(-np.inf, np.inf, (2,), np.float32),
        gym.spaces.Box(-1, 1, (2, 2)),
    ],
)
def test_rejects_unsupported_action_spaces(action_space):
    with pytest.raises(ValueError):
        SAC(STATE_SPACE, action_space)


# ---------------------------------------------------------------- update
def test_update_returns_detached_finite_scalars():
    agent = make_agent()
    metrics = agent.update(make_batch())
    expected = {"critic_loss", "q_mean", "target_q_mean", "actor_loss", "entropy", "alpha", "alpha_loss"}
    assert set(metrics) == expected
    for name, value in metrics.items():
        assert isinstance(value, torch.Tensor) and value.shape == () and not value.requires_grad, name
        assert torch.isfinite(value), name
    assert agent.num_updates == 1

    clipped = make_agent(max_grad_norm=1.0).update(make_batch())
    assert {"critic_grad_norm", "actor_grad_norm"} <= set(clipped)


def test_max_grad_norm_clips_the_gradients_that_the_optimisers_apply():
    """Clipping rescales the encoder + critic gradient and the actor gradient to norm max_grad_norm (and reports
    the norms before clipping); the temperature's gradient is not clipped."""
    agent = make_agent(max_grad_norm=0.01)
    metrics = agent.update(make_batch())
    for name, modules in (("critic", (agent.encoder, agent.critic)), ("actor", (agent.actor,))):
        grads = [p.grad for m in modules for p in m.parameters()]
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
        assert metrics[f"{name}_grad_norm"] > 0.1, name
        torch.testing.assert_close(norm, torch.tensor(0.01), rtol=1e-4, atol=0), name
    assert agent.log_alpha.grad.abs() > 0.01


def test_update_accepts_transitions():
    metrics = make_agent().update(Transitions(**make_batch()))
    assert torch.isfinite(metrics["critic_loss"])


@pytest.mark.parametrize(
    "variant",
    [
        lambda b: {**b, "reward": b["reward"][:, None], "terminated": b["terminated"][:, None]},  # (B, 1) columns
        lambda b: {**b, "terminated": b["terminated"].bool()},  # gymnasium's dtype
    ],
    ids=["shape_b1_not_broadcast", "bool_terminated"],
)
def test_reward_and_terminated_variants_give_the_same_update(variant):
    batch = make_batch()
    torch.manual_seed(0)
    expected = make_agent().update(batch)
    torch.manual_seed(0)
    got = make_agent().update(variant(batch))
    for name in expected:
        assert torch.equal(expected[name], got[name]), name


def test_update_does_no_host_sync(monkeypatch):
    """A CPU proxy for the GPU sync check: no tensor is read back into Python during `update`."""
    agent = make_agent(max_grad_norm=1.0)
    batch = make_batch()
    agent.update(batch)

    def forbidden(*args, **kwargs):
        raise AssertionError("host sync in update()")

    for name in ("item", "tolist", "numpy", "cpu", "__bool__", "__float__", "__int__"):
        monkeypatch.setattr(torch.Tensor, name, forbidden)
    agent.update(batch)


def test_critic_target_uses_reward_only_at_terminal_states():
    agent = make_agent(gamma=0.99)
    batch = make_batch()
    batch["terminated"] = torch.ones(BATCH)
    features, next_features = batch["obs"], batch["next_obs"]
    _, metrics = agent.critic_loss(features, batch["action"], batch["reward"], next_features, batch["terminated"])
    torch.testing.assert_close(metrics["target_q_mean"], batch["reward"].mean())
    # Without termination the bootstrapped soft value enters.
    _, metrics = agent.critic_loss(features, batch["action"], batch["reward"], next_features, torch.zeros(BATCH))
    assert not torch.allclose(metrics["target_q_mean"], batch["reward"].mean())


def perturb_target_critics(agent: SAC) -> None:
    """Make the target critics differ from the online ones (they start as copies)."""
    with torch.no_grad():
        for p in agent.critic_target.parameters():
            p.add_(0.1 * torch.randn_like(p))


def test_update_critic_loss_matches_a_hand_computation():
    """eq. 3 / 5 through `update`: the minimum over the target critics of the soft value at a' ~ pi(.|s'), with
    the tanh-corrected log pi, bootstrapped from next_obs unless terminated; the critics see the dataset actions
    rescaled from the action space's bounds to [-1, 1]."""
    low, high = np.array([0.0, -2.0, 10.0], np.float32), np.array([1.0, 2.0, 12.0], np.float32)
    agent = make_agent(action_space=gym.spaces.Box(low, high, dtype=np.float32), gamma=0.9, init_alpha=0.5)
    perturb_target_critics(agent)
    b = make_batch()
    env_action = torch.as_tensor(low) + (b["action"] + 1) / 2 * torch.as_tensor(high - low)
    torch.manual_seed(3)
    noise = torch.randn(BATCH, ACT_DIM)  # the first random numbers the update draws: a' = tanh(mu + sigma * noise)
    with torch.no_grad():
        dist = agent.actor(b["next_obs"])
        pre_tanh = dist.loc + dist.scale * noise
        log_prob = torch.distributions.Normal(dist.loc, dist.scale).log_prob(pre_tanh).sum(-1)
        log_prob = log_prob - torch.log(1 - torch.tanh(pre_tanh) ** 2).sum(-1)
        next_q = agent.critic_target(b["next_obs"], torch.tanh(pre_tanh))  # (2, B)
        target = b["reward"] + 0.9 * (1 - b["terminated"]) * (torch.minimum(*next_q) - 0.5 * log_prob)
        q = agent.critic(b["obs"], b["action"])  # (2, B)
    torch.manual_seed(3)
    metrics = agent.update({**b, "action": env_action})
    torch.testing.assert_close(metrics["target_q_mean"], target.mean(), rtol=1e-5, atol=1e-5)
    expected_loss = 0.5 * (q - target).square().mean(dim=1).sum()
    torch.testing.assert_close(metrics["critic_loss"], expected_loss, rtol=1e-5, atol=1e-5)


def test_actor_and_temperature_losses_by_hand():
    """eq. 7 with the minimum over the online critics, and eq. 18. Each loss trains its own parameters only: the
    temperature loss moves no actor weight, the actor loss does not move alpha."""
    agent = make_agent(init_alpha=0.5, target_entropy=-1.0)
    perturb_target_critics(agent)
    features = make_batch()["obs"]
    torch.manual_seed(3)
    loss, metrics = agent._actor_forward(features)
    loss.backward()
    actor_grads = [p.grad.clone() for p in agent.actor.parameters()]
    alpha_grad = agent.log_alpha.grad.clone()
    agent.actor.zero_grad()
    torch.manual_seed(3)
    action, log_prob = agent.actor(features).rsample_with_log_prob()
    q = agent.critic(features, action)  # (2, B)
    actor_loss = (0.5 * log_prob - torch.minimum(*q)).mean()
    torch.testing.assert_close(metrics["actor_loss"], actor_loss.detach())
    torch.testing.assert_close(metrics["alpha_loss"], -(0.5 * (log_prob.detach() - 1.0)).mean())
    actor_loss.backward()
    for got, p in zip(actor_grads, agent.actor.parameters(), strict=True):
        torch.testing.assert_close(got, p.grad)
    # d/d log_alpha of -exp(log_alpha) * mean(log pi + H_target), at alpha = 0.5
    torch.testing.assert_close(alpha_grad, -0.5 * (log_prob.detach() - 1.0).mean())


def test_default_target_entropy_is_minus_the_action_dimension():
    """H_target = -|A| (Haarnoja et al. 2018b, Sec. 5): the temperature loss at alpha = 1 is entropy - H_target."""
    metrics = make_agent().update(make_batch())
    torch.testing.assert_close(metrics["entropy"] - metrics["alpha_loss"], torch.tensor(-float(ACT_DIM)))


def test_update_reduces_critic_loss_on_a_fixed_batch():
    """A small fixed temperature keeps the sampled soft target nearly deterministic: the critic can fit it."""
    agent = make_agent(critic_lr=3e-3, learn_alpha=False, init_alpha=0.01)
    batch = make_batch()
    losses = torch.stack([agent.update(batch)["critic_loss"] for _ in range(200)])
    assert losses[-5:].mean() < 0.1 * losses[:3].mean()


def test_learns_a_one_step_bandit():
    """Terminal after one step, reward -||a - s / 2||^2: the deterministic action must approach s / 2."""
    obs_space = gym.spaces.Box(-1, 1, (2,), np.float32)
    agent = SAC(
        obs_space,
        gym.spaces.Box(-1, 1, (2,), np.float32),
        hidden_dims=(32, 32),
        actor_lr=3e-3,
        critic_lr=3e-3,
        alpha_lr=3e-3,
        init_alpha=0.1,
    )
    g = torch.Generator().manual_seed(1)
    test_obs = (torch.rand(256, 2, generator=g) * 2 - 1).numpy()

    def action_error() -> float:
        return float(np.abs(agent.act(test_obs, deterministic=True) - test_obs / 2).mean())

    initial_error = action_error()
    for _ in range(300):
        obs = torch.rand(64, 2, generator=g) * 2 - 1
        action = torch.rand(64, 2, generator=g) * 2 - 1
        reward = -((action - obs / 2) ** 2).sum(-1)
        agent.update({"obs": obs, "action": action, "reward": reward, "next_obs": obs, "terminated": torch.ones(64)})
    assert initial_error > 0.15
    assert action_error() < 0.06


@pytest.mark.parametrize("target_entropy, direction", [(10.0, 1), (-30.0, -1)])
def test_temperature_moves_towards_the_entropy_target(target_entropy, direction):
    """Entropy below the target -> alpha rises (eq. 18); above it -> alpha falls."""
    agent = make_agent(target_entropy=target_entropy, alpha_lr=1e-2)
    batch = make_batch()
    alphas = torch.stack([agent.update(batch)["alpha"] for _ in range(10)])
    steps = torch.diff(torch.cat([torch.ones(1), alphas]))
    assert torch.all(direction * steps > 0)


def test_fixed_temperature():
    agent = make_agent(learn_alpha=False, init_alpha=0.2)
    metrics = [agent.update(make_batch(i)) for i in range(3)]
    assert "alpha_loss" not in metrics[-1]
    torch.testing.assert_close(metrics[-1]["alpha"], torch.tensor(0.2))


def test_update_intervals():
    agent = make_agent(actor_update_every=2, target_update_every=3)
    actor_before = [p.clone() for p in agent.actor.parameters()]
    target_before = [p.clone() for p in agent.critic_target.parameters()]
    metrics = agent.update(make_batch(0))  # update 1: critic only
    assert "actor_loss" not in metrics
    assert all(torch.equal(a, b) for a, b in zip(actor_before, agent.actor.parameters()))
    assert "actor_loss" in agent.update(make_batch(1))  # update 2: actor too
    assert not all(torch.equal(a, b) for a, b in zip(actor_before, agent.actor.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(target_before, agent.critic_target.parameters()))
    agent.update(make_batch(2))  # update 3: Polyak step
    for before, target, online in zip(target_before, agent.critic_target.parameters(), agent.critic.parameters()):
        torch.testing.assert_close(target, before + agent.tau * (online - before))


# ---------------------------------------------------------------- persistence and determinism
def test_state_dict_round_trip_gives_identical_actions_and_next_update():
    agent = make_agent(seed=0)
    for i in range(3):
        agent.update(make_batch(i))
    buffer = io.BytesIO()
    torch.save(agent.state_dict(), buffer)
    buffer.seek(0)
    restored = make_agent(seed=123)
    restored.load_state_dict(torch.load(buffer, weights_only=False))
    assert restored.num_updates == 3
    assert_same_parameters(agent, restored)

    obs = np.random.default_rng(0).normal(size=(4, OBS_DIM)).astype(np.float32)
    np.testing.assert_array_equal(agent.act(obs, deterministic=True), restored.act(obs, deterministic=True))
    torch.manual_seed(7)
    expected = agent.update(make_batch(3))
    torch.manual_seed(7)
    got = restored.update(make_batch(3))
    for name in expected:
        assert torch.equal(expected[name], got[name]), name
    assert_same_parameters(agent, restored)


def test_load_state_dict_does_not_share_tensors_with_the_source():
    agent = make_agent(seed=0)
    agent.update(make_batch(0))
    clone = make_agent(seed=1)
    clone.load_state_dict(agent.state_dict())
    snapshot = parameters(clone)
    agent.update(make_batch(1))  # must not move the clone (e.g. through shared Adam moments)
    for before, after in zip(snapshot, parameters(clone)):
        assert torch.equal(before, after)


def test_checkpoint_from_a_cuda_graph_run_loads_on_cpu():
    """Optimiser flags chosen for the device (capturable, for CUDA graphs) do not come from the checkpoint."""
    agent = make_agent()
    agent.update(make_batch())
    state = agent.state_dict()
    for name in ("actor_optimizer", "critic_optimizer", "alpha_optimizer"):
        for group in state[name]["param_groups"]:
            group["capturable"] = True
    restored = make_agent()
    restored.load_state_dict(state)
    assert not restored.critic_optimizer.param_groups[0]["capturable"]
    assert torch.isfinite(restored.update(make_batch())["critic_loss"])


def test_same_seed_same_batches_gives_identical_parameters():
    agents = [make_agent(seed=3), make_agent(seed=3)]
    for agent in agents:
        torch.manual_seed(11)
        for i in range(4):
            agent.update(make_batch(i))
    assert_same_parameters(*agents)
    assert not all(torch.equal(a, b) for a, b in zip(parameters(agents[0]), parameters(make_agent(seed=3))))


def test_to_keeps_state_and_rng():
    agent = make_agent()
    agent.update(make_batch())
    obs = np.zeros((2, OBS_DIM), np.float32)
    before = agent.act(obs, deterministic=True)
    torch.manual_seed(5)
    agent.to("cpu")
    after_rng = torch.rand(1)
    torch.manual_seed(5)
    assert torch.equal(after_rng, torch.rand(1))  # rebuilding consumed no random numbers
    np.testing.assert_array_equal(before, agent.act(obs, deterministic=True))
    assert agent.num_updates == 1
    agent.update(make_batch())


# ---------------------------------------------------------------- pixels
PIXEL_SPACE = gym.spaces.Box(0, 255, (32, 32, 3), np.uint8)
PIXEL_KW = dict(encoder_feature_dim=16, encoder_num_filters=8, encoder_num_layers=2)


def pixel_batch(obs_space: gym.Space, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)

    def observation():
        images = torch.randint(0, 256, (BATCH, 32, 32, 3), generator=g, dtype=torch.uint8)
        if isinstance(obs_space, gym.spaces.Dict):
            return {"pixels": images, "state": torch.randn(BATCH, OBS_DIM, generator=g)}
        return images

    return {
        "obs": observation(),
        "action": torch.rand(BATCH, ACT_DIM, generator=g) * 2 - 1,
        "reward": torch.randn(BATCH, generator=g),
        "next_obs": observation(),
        "terminated": torch.zeros(BATCH),
    }


@pytest.mark.parametrize("dict_obs", [False, True])
def test_pixel_sac_update_and_act(dict_obs):
    obs_space = gym.spaces.Dict({"pixels": PIXEL_SPACE, "state": STATE_SPACE}) if dict_obs else PIXEL_SPACE
    agent = make_agent(obs_space=obs_space, augment=True, **PIXEL_KW)
    encoder_before = [p.clone() for p in agent.encoder.parameters()]
    batch = pixel_batch(obs_space)
    metrics = [agent.update(batch) for _ in range(3)]
    assert all(torch.isfinite(v) for m in metrics for v in m.values())
    assert not all(torch.equal(a, b) for a, b in zip(encoder_before, agent.encoder.parameters()))

    obs = {k: v[:2].numpy() for k, v in batch["obs"].items()} if dict_obs else batch["obs"][:2].numpy()
    assert agent.act(obs, deterministic=False).shape == (2, ACT_DIM)
    single = {k: v[0] for k, v in obs.items()} if dict_obs else obs[0]
    assert agent.act(single, deterministic=True).shape == (ACT_DIM,)


def test_augment_shifts_the_images_the_critic_sees():
    """augment=True: the critic's features are those of DrQ-shifted observations (pad 4); without it, those of
    the observations as given."""
    batch = pixel_batch(PIXEL_SPACE)
    for augment in (False, True):
        agent = make_agent(obs_space=PIXEL_SPACE, augment=augment, **PIXEL_KW)
        torch.manual_seed(3)
        _, (_, features) = agent._critic_forward(**batch)
        torch.manual_seed(3)
        with torch.no_grad():
            expected = agent.encoder(random_shift(batch["obs"], 4) if augment else batch["obs"])
            unshifted = agent.encoder(batch["obs"])
        torch.testing.assert_close(features, expected)
    assert not torch.allclose(features, unshifted)


def test_mixed_precision_pixel_update_stays_close_to_float32():
    """agent.mixed_precision: the encoder in bfloat16, heads and losses in float32; one update's losses and
    actions follow the float32 agent's within bfloat16 rounding."""
    batch = pixel_batch(PIXEL_SPACE)
    metrics, actions = {}, {}
    for mixed in (False, True):
        agent = make_agent(obs_space=PIXEL_SPACE, mixed_precision=mixed, **PIXEL_KW)
        torch.manual_seed(3)
        metrics[mixed] = agent.update(batch)
        actions[mixed] = agent.act(batch["obs"].numpy(), deterministic=True)
    assert agent.encoder.conv.mixed_precision
    for name, value in metrics[False].items():
        assert metrics[True][name].dtype == torch.float32, name
        torch.testing.assert_close(metrics[True][name], value, rtol=5e-2, atol=5e-2, msg=name)
    np.testing.assert_allclose(actions[True], actions[False], atol=5e-2)


def test_pixel_encoder_is_trained_by_the_critic_only():
    agent = make_agent(obs_space=PIXEL_SPACE, **PIXEL_KW)
    batch = pixel_batch(PIXEL_SPACE)
    _, (_, features) = agent._critic_forward(**batch)
    assert not features.requires_grad
    loss, _ = agent._actor_forward(features)
    loss.backward()
    assert all(p.grad is None for p in agent.encoder.parameters())
    assert all(p.grad is None for p in agent.critic.parameters())  # the actor loss uses a detached critic
    assert any(p.grad is not None for p in agent.actor.parameters())


# ---------------------------------------------------------------- compiled == eager
@contextmanager
def eager_random_numbers():
    """Compiled code draws random numbers exactly as eager code does (inductor's `fallback_random`). The setting
    is not among torch.compile's guards, so graphs compiled before (or inside) are dropped on the way in and out:
    every agent's step shares one compiled function."""
    import torch._inductor.config as inductor_config

    torch._dynamo.reset()
    try:
        with inductor_config.patch(fallback_random=True):
            yield
    finally:
        torch._dynamo.reset()


def check_compiled_equals_eager(
    batches: list[dict], tolerance: float = 1e-5, param_atol: float = 1e-6, **hparams
) -> None:
    results = {}
    with eager_random_numbers():
        for compile in (False, True):
            agent = make_agent(seed=0, compile=compile, **hparams)
            torch.manual_seed(1)
            results[compile] = (agent, [agent.update(batch) for batch in batches])
    (eager, eager_metrics), (compiled, compiled_metrics) = results[False], results[True]
    for expected, got in zip(eager_metrics, compiled_metrics):
        assert set(expected) == set(got)
        for name in expected:
            torch.testing.assert_close(got[name], expected[name], rtol=tolerance, atol=tolerance, msg=name)
    assert_same_parameters(eager, compiled, rtol=tolerance, atol=param_atol)


@pytest.mark.parametrize(
    "hparams",
    [{}, {"max_grad_norm": 0.01}, {"learn_alpha": False, "actor_update_every": 2}],
    ids=["default", "clipped", "fixed_alpha"],
)
def test_compiled_update_equals_eager(hparams):
    """The compiled steps (one graph each: gradients, clipping, Adam) match the eager ones; max_grad_norm=0.01
    clips every step."""
    check_compiled_equals_eager([make_batch(i) for i in range(4)], **hparams)


@pytest.mark.slow
@pytest.mark.parametrize("mixed_precision", [False, True])
def test_compiled_pixel_update_equals_eager(mixed_precision):
    """Pixels with DrQ shifts: the encoder is trained through the compiled critic step. In bfloat16 the fused
    kernels round differently from eager ones: losses differ by ~1e-4 (relative) after 3 updates, and Adam's
    normalised steps (lr 3e-4) turn gradient differences into weight differences of up to ~2e-4."""
    batches = [pixel_batch(PIXEL_SPACE, seed=i) for i in range(3)]
    tolerance, param_atol = (1e-3, 1e-3) if mixed_precision else (1e-5, 1e-6)
    check_compiled_equals_eager(
        batches,
        tolerance,
        param_atol,
        obs_space=PIXEL_SPACE,
        augment=True,
        mixed_precision=mixed_precision,
        **PIXEL_KW,
    )


def test_cudagraphs_off_cuda_warns_and_falls_back():
    if torch.cuda.is_available():
        pytest.skip("only meaningful without CUDA")
    with pytest.warns(UserWarning, match="cudagraphs=True needs a CUDA device"):
        agent = make_agent(cudagraphs=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.isfinite(agent.update(make_batch())["critic_loss"])


# ---------------------------------------------------------------- CUDA
@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("flags", [{"cudagraphs": True}, {"compile": True, "cudagraphs": True}])
def test_cuda_graph_update_equals_eager(flags):
    """Warm-up updates, the capture and replays: all must match eager CUDA updates."""
    batches = [make_batch(i, device="cuda") for i in range(6)]
    results = {}
    with eager_random_numbers():
        for name, extra in (("eager", {}), ("graph", flags)):
            agent = make_agent(seed=0, device="cuda", **extra)
            torch.manual_seed(1)
            results[name] = (agent, [agent.update(batch) for batch in batches])
    for expected, got in zip(results["eager"][1], results["graph"][1]):
        for name in expected:
            torch.testing.assert_close(got[name], expected[name], rtol=1e-4, atol=1e-4, msg=name)
    assert_same_parameters(results["eager"][0], results["graph"][0], rtol=1e-4, atol=1e-5)


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("flags", [{}, {"compile": True}, {"cudagraphs": True}])
def test_cuda_update_does_not_synchronise(flags):
    agent = make_agent(device="cuda", **flags)
    batch = make_batch(device="cuda")
    for _ in range(5):  # warm-up, compilation and capture
        agent.update(batch)
    torch.cuda.set_sync_debug_mode("error")
    try:
        agent.update(batch)
    finally:
        torch.cuda.set_sync_debug_mode("default")


@pytest.mark.gpu
@needs_cuda
def test_to_cuda_and_back():
    agent = make_agent()
    agent.update(make_batch())
    obs = np.zeros((2, OBS_DIM), np.float32)
    before = agent.act(obs, deterministic=True)
    agent.to("cuda")
    np.testing.assert_allclose(agent.act(obs, deterministic=True), before, rtol=1e-5, atol=1e-5)
    agent.update(make_batch(device="cuda"))
    agent.to("cpu")
    agent.update(make_batch())


@pytest.mark.gpu
@needs_cuda
def test_cuda_graph_mixed_precision_pixel_update_equals_eager():
    """bfloat16 encoder under compile + CUDA graphs: the same updates as eager mixed precision on CUDA (up to
    the fused kernels' bfloat16 rounding, as on CPU)."""
    batches = [{k: v.to("cuda") for k, v in pixel_batch(PIXEL_SPACE, seed=i).items()} for i in range(5)]
    results = {}
    with eager_random_numbers():
        for name, extra in (("eager", {}), ("graph", {"compile": True, "cudagraphs": True})):
            agent = make_agent(seed=0, device="cuda", obs_space=PIXEL_SPACE, mixed_precision=True, **PIXEL_KW, **extra)
            torch.manual_seed(1)
            results[name] = [agent.update(batch) for batch in batches]
    for expected, got in zip(results["eager"], results["graph"]):
        for name in expected:
            torch.testing.assert_close(got[name], expected[name], rtol=1e-3, atol=1e-3, msg=name)
