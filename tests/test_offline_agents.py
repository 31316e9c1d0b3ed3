"""embodied_rl.agents IQL, TD3BC and BC: acting, losses by hand, learning on toy bandits, delayed updates,
observation normalisation, save/load, configs, torch.compile == eager. Tiny networks (hidden (32, 32)) and
batches of 32 on CPU; the compile check of BC is `slow`, the CUDA-graph checks `gpu`."""

from __future__ import annotations

import functools
import inspect
import io
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from test_sac import eager_random_numbers

from embodied_rl.agents import BC, IQL, TD3BC
from embodied_rl.agents.iql import expectile_loss
from embodied_rl.data import Transitions
from embodied_rl.trainers.builders import make_agent as build_from_config

OBS_DIM, ACT_DIM, BATCH = 6, 3, 32
STATE_SPACE = gym.spaces.Box(-np.inf, np.inf, (OBS_DIM,), np.float32)
ACTION_SPACE = gym.spaces.Box(-1.0, 1.0, (ACT_DIM,), np.float32)
SMALL = dict(hidden_dims=(32, 32))
CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs" / "agent"
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

# name -> (class, extra constructor arguments)
AGENTS = {
    "iql": (IQL, {}),
    "iql_schedule": (IQL, {"actor_lr_schedule_steps": 10}),
    "td3bc": (TD3BC, {}),
    "bc_mse": (BC, {"loss": "mse"}),
    "bc_nll": (BC, {"loss": "nll"}),
}
METRICS = {
    IQL: {"value_loss", "critic_loss", "actor_loss", "q_mean", "v_mean", "advantage_mean", "weight_mean"},
    TD3BC: {"critic_loss", "q_mean", "target_q_mean", "actor_loss", "bc_loss", "lambda"},
}


def make(name: str, seed: int = 0, obs_space=STATE_SPACE, action_space=ACTION_SPACE, **hparams):
    cls, extra = AGENTS[name]
    torch.manual_seed(seed)
    return cls(obs_space, action_space, **{**SMALL, **extra, **hparams})


def make_batch(seed: int = 0, batch: int = BATCH, device: str = "cpu", obs_shift: float = 0.0) -> dict:
    g = torch.Generator().manual_seed(seed)
    data = {
        "obs": torch.randn(batch, OBS_DIM, generator=g) * 3 + obs_shift,
        "action": torch.rand(batch, ACT_DIM, generator=g) * 2 - 1,
        "reward": torch.randn(batch, generator=g),
        "next_obs": torch.randn(batch, OBS_DIM, generator=g) * 3 + obs_shift,
        "terminated": (torch.rand(batch, generator=g) < 0.2).float(),
    }
    return {k: v.to(device) for k, v in data.items()}


def fitted(agent, seed: int = 100):
    """The agent with its normaliser fitted to observations far from N(0, 1)."""
    g = torch.Generator().manual_seed(seed)
    agent.fit_normalizer(torch.randn(500, OBS_DIM, generator=g) * (torch.arange(OBS_DIM) + 2.0) + 5.0)
    return agent


def parameters(agent) -> list[torch.Tensor]:
    tensors = [p for m in agent._modules().values() for p in m.parameters()]
    return [t.detach().clone() for t in [*tensors, agent.normalizer.mean, agent.normalizer.std]]


def assert_same_parameters(a, b, **tolerance) -> None:
    for x, y in zip(parameters(a), parameters(b), strict=True):
        if tolerance:
            torch.testing.assert_close(x, y, **tolerance)
        else:
            assert torch.equal(x, y)


def assert_same_metrics(expected: dict, got: dict, **tolerance) -> None:
    assert set(expected) == set(got)
    for name in expected:
        if tolerance:
            torch.testing.assert_close(got[name], expected[name], msg=name, **tolerance)
        else:
            assert torch.equal(expected[name], got[name]), name


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny networks gain nothing from intra-op threads, and on a busy shared CPU waiting threads make them
    many times slower; the previous setting is restored after each test."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---------------------------------------------------------------- construction and acting
@pytest.mark.parametrize("name", AGENTS)
def test_act_shapes_bounds_and_determinism(name):
    low, high = np.array([0.0, -2.0, 10.0], np.float32), np.array([1.0, 2.0, 12.0], np.float32)
    action_space = gym.spaces.Box(low, high, dtype=np.float32)
    agent = fitted(make(name, action_space=action_space))
    obs = np.random.default_rng(0).normal(size=(200, OBS_DIM)).astype(np.float32) * 5
    single, batched = agent.act(obs[0]), agent.act(obs)
    assert single.shape == (ACT_DIM,) and batched.shape == (200, ACT_DIM)
    assert single.dtype == np.float32 and batched.dtype == np.float32
    for action in (single[None], batched):
        assert np.all(action >= low) and np.all(action <= high)
    deterministic = agent.act(obs, deterministic=True)
    np.testing.assert_array_equal(deterministic, agent.act(obs, deterministic=True))
    np.testing.assert_allclose(agent.act(obs[2], deterministic=True), deterministic[2], rtol=1e-6, atol=1e-6)
    if name.startswith("iql") or name == "bc_nll":  # Gaussian policy: samples spread around the mean
        samples = agent.act(np.repeat(obs[:1], 200, 0))
        assert samples.std(axis=0).min() > 0.05
        with torch.no_grad():
            mean, _ = agent.actor(agent.normalize(torch.as_tensor(obs)))
        np.testing.assert_allclose(deterministic, low + (mean.numpy() + 1) / 2 * (high - low), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cls", [IQL, TD3BC, BC])
@pytest.mark.parametrize(
    "obs_space, action_space",
    [
        (gym.spaces.Box(0, 255, (16, 16, 3), np.uint8), ACTION_SPACE),
        (gym.spaces.Dict({"state": STATE_SPACE}), ACTION_SPACE),
        (gym.spaces.Discrete(4), ACTION_SPACE),
        (STATE_SPACE, gym.spaces.Discrete(3)),
        (STATE_SPACE, gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)),
        (STATE_SPACE, gym.spaces.Box(-1, 1, (2, 2), np.float32)),
    ],
)
def test_rejects_unsupported_spaces(cls, obs_space, action_space):
    with pytest.raises(ValueError, match=cls.name):
        cls(obs_space, action_space, **SMALL)


def test_bad_hyperparameters_are_rejected():
    with pytest.raises(ValueError):
        BC(STATE_SPACE, ACTION_SPACE, loss="l1")
    with pytest.raises(ValueError):
        IQL(STATE_SPACE, ACTION_SPACE, expectile=1.0)
    with pytest.raises(ValueError):
        TD3BC(STATE_SPACE, ACTION_SPACE, policy_update_every=0)


@pytest.mark.parametrize("name", ["iql", "td3bc", "bc"])
def test_config_keys_are_the_constructor_arguments(name):
    cfg = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / f"{name}.yaml"))
    assert cfg["name"] == name
    cls = {"iql": IQL, "td3bc": TD3BC, "bc": BC}[name]
    signature = inspect.signature(cls.__init__).parameters
    keywords = {k for k, p in signature.items() if p.kind is p.KEYWORD_ONLY} - {"device"}
    assert set(cfg) - {"name"} == keywords
    for key in keywords:  # the config's defaults are the constructor's
        default = signature[key].default
        assert cfg[key] == (list(default) if isinstance(default, tuple) else default), key
    agent = build_from_config({**cfg, "hidden_dims": [16]}, STATE_SPACE, ACTION_SPACE, torch.device("cpu"))
    assert isinstance(agent, cls)


# ---------------------------------------------------------------- update
@pytest.mark.parametrize("name", AGENTS)
def test_update_returns_detached_finite_scalars(name):
    agent = fitted(make(name))
    metrics = [agent.update(make_batch(i)) for i in range(2)][-1]
    expected = METRICS.get(type(agent), {"bc_loss"} | ({"log_std_mean"} if name == "bc_nll" else set()))
    assert set(metrics) == expected
    for key, value in metrics.items():
        assert isinstance(value, torch.Tensor) and value.shape == () and not value.requires_grad, key
        assert torch.isfinite(value), key
    assert agent.num_updates == 2


@pytest.mark.parametrize("name", ["iql", "td3bc", "bc_nll"])
def test_update_accepts_transitions_and_column_rewards(name):
    batch = make_batch()
    column = {**batch, "reward": batch["reward"][:, None], "terminated": batch["terminated"][:, None]}
    results = []
    for data in (batch, Transitions(**column)):
        agent = fitted(make(name))
        torch.manual_seed(1)
        results.append([agent.update(data) for _ in range(2)][-1])
    assert_same_metrics(*results)


@pytest.mark.parametrize("name", ["iql_schedule", "td3bc", "bc_nll"])
def test_update_does_no_host_sync(name, monkeypatch):
    """A CPU proxy for the GPU sync check: no tensor is read back into Python during `update`."""
    agent = fitted(make(name))
    batch = make_batch()
    agent.update(batch)

    def forbidden(*args, **kwargs):
        raise AssertionError("host sync in update()")

    for method in ("item", "tolist", "numpy", "cpu", "__bool__", "__float__", "__int__"):
        monkeypatch.setattr(torch.Tensor, method, forbidden)
    agent.update(batch)
    agent.update(batch)


# ---------------------------------------------------------------- observation normalisation
@pytest.mark.parametrize("name", ["iql", "td3bc", "bc_mse"])
def test_act_normalises_raw_observations(name):
    agent = fitted(make(name))
    mean, std = agent.normalizer.mean.clone(), agent.normalizer.std.clone()
    assert torch.all(std > 1.5) and torch.all(mean.abs() > 3)  # fitted, not the identity
    raw = np.random.default_rng(0).normal(5.0, 3.0, size=(8, OBS_DIM)).astype(np.float32)
    with torch.no_grad():
        normalised = (torch.as_tensor(raw) - mean) / std
        expected = agent._policy(normalised, deterministic=True).numpy()
    np.testing.assert_allclose(agent.act(raw, deterministic=True), expected, rtol=1e-5, atol=1e-6)
    # Without normalisation, fit_normalizer is a no-op and the policy sees the raw observations.
    plain = make(name, normalize_obs=False)
    plain.fit_normalizer(torch.randn(100, OBS_DIM) + 5)
    assert torch.equal(plain.normalizer.mean, torch.zeros(OBS_DIM))
    with torch.no_grad():
        expected = plain._policy(torch.as_tensor(raw), deterministic=True).numpy()
    np.testing.assert_allclose(plain.act(raw, deterministic=True), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["iql", "td3bc", "bc_nll"])
def test_update_normalises_raw_observations(name):
    """A fitted agent fed raw observations updates exactly like an unnormalised one fed normalised ones."""
    batches = [make_batch(i, obs_shift=5.0) for i in range(3)]
    agent = fitted(make(name, seed=0))
    reference = make(name, seed=0, normalize_obs=False)
    mean, std = agent.normalizer.mean, agent.normalizer.std
    for batch in batches:
        normalised = {**batch, "obs": (batch["obs"] - mean) / std, "next_obs": (batch["next_obs"] - mean) / std}
        torch.manual_seed(3)
        expected = agent.update(batch)
        torch.manual_seed(3)
        got = reference.update(normalised)
        assert_same_metrics(expected, got, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["iql", "td3bc", "bc_mse", "bc_nll"])
def test_update_losses_see_normalised_obs_and_next_obs_and_unit_actions(name):
    """The first update's losses are the loss methods applied to (obs - mean) / std, (next_obs - mean) / std and
    the dataset actions rescaled from the action space's bounds to [-1, 1]."""
    low, high = np.array([0.0, -2.0, 10.0], np.float32), np.array([1.0, 2.0, 12.0], np.float32)
    extra = {"policy_update_every": 1} if name == "td3bc" else {}  # TD3+BC: an actor step in the first update
    agent = fitted(make(name, action_space=gym.spaces.Box(low, high, dtype=np.float32), **extra))
    b = make_batch(obs_shift=5.0)
    unit_action = b["action"]
    env_action = torch.as_tensor(low) + (unit_action + 1) / 2 * torch.as_tensor(high - low)
    mean, std = agent.normalizer.mean, agent.normalizer.std
    obs, next_obs = (b["obs"] - mean) / std, (b["next_obs"] - mean) / std
    expected = {}
    torch.manual_seed(3)
    with torch.no_grad():
        if isinstance(agent, BC):
            expected["bc_loss"] = agent.bc_loss(obs, unit_action)
        else:
            expected["critic_loss"] = agent.critic_loss(obs, unit_action, b["reward"], next_obs, b["terminated"])[0]
        if isinstance(agent, IQL):
            expected["value_loss"], advantage, _ = agent.value_loss(obs, unit_action)
            expected["actor_loss"] = agent.actor_loss(obs, unit_action, advantage)[0]
        if isinstance(agent, TD3BC):  # the actor is unchanged by the critic step that precedes its own
            expected["bc_loss"] = agent.actor_loss(obs, unit_action)[1]["bc_loss"]
    torch.manual_seed(3)
    metrics = agent.update({**b, "action": env_action})
    for key, value in expected.items():
        torch.testing.assert_close(metrics[key], value, msg=key)


# ---------------------------------------------------------------- IQL losses by hand
def test_expectile_loss_by_hand():
    """u = (-1, 2), tau = 0.7: weights (0.3, 0.7) -> mean(0.3 * 1, 0.7 * 4) = 1.55; tau = 0.5 is MSE / 2."""
    diff = torch.tensor([-1.0, 2.0])
    torch.testing.assert_close(expectile_loss(diff, 0.7), torch.tensor(1.55))
    torch.testing.assert_close(expectile_loss(diff, 0.9), torch.tensor((0.1 * 1 + 0.9 * 4) / 2))
    torch.testing.assert_close(expectile_loss(diff, 0.5), diff.square().mean() / 2)


def test_iql_losses_match_a_hand_computation():
    agent = make("iql", gamma=0.9, beta=2.0, max_weight=3.0, normalize_obs=False)  # the hand computation's raw obs
    for i in range(3):  # move the critic away from its target
        agent.update(make_batch(i))
    b = make_batch(7)
    obs, action, next_obs = b["obs"], b["action"], b["next_obs"]
    with torch.no_grad():
        target_q = torch.minimum(*agent.critic_target(obs, action)).numpy()  # (B,)
        v = agent.value(obs).squeeze(-1).numpy()
        next_v = agent.value(next_obs).squeeze(-1).numpy()
        q = agent.critic(obs, action).numpy()  # (2, B)
        log_prob = agent.actor.log_prob(obs, action).numpy()
    # eq. 5: expectile 0.7
    u = target_q - v
    expected_value_loss = np.mean(np.where(u < 0, 0.3, 0.7) * u**2)
    value_loss, advantage, _ = agent.value_loss(obs, action)
    np.testing.assert_allclose(value_loss.item(), expected_value_loss, rtol=1e-5)
    np.testing.assert_allclose(advantage.numpy(), u, rtol=1e-5, atol=1e-6)
    # eq. 6: the target bootstraps V(s') unless terminated
    target = b["reward"].numpy() + 0.9 * (1 - b["terminated"].numpy()) * next_v
    critic_loss, _ = agent.critic_loss(obs, action, b["reward"], next_obs, b["terminated"])
    np.testing.assert_allclose(critic_loss.item(), np.mean((q - target) ** 2), rtol=1e-5)
    # eq. 7: weights exp(beta * A) clipped at max_weight; advantages chosen to hit the clip
    adv = torch.linspace(-2.0, 2.0, BATCH)
    actor_loss, weight = agent.actor_loss(obs, action, adv)
    expected_weight = np.minimum(np.exp(2.0 * adv.numpy()), 3.0)
    np.testing.assert_allclose(weight.numpy(), expected_weight, rtol=1e-6)
    assert (expected_weight == 3.0).sum() > 5
    np.testing.assert_allclose(actor_loss.item(), -np.mean(expected_weight * log_prob), rtol=1e-5)


def test_gaussian_actor_log_prob_is_the_normal_density():
    agent = make("iql")
    with torch.no_grad():
        agent.actor.log_std.copy_(torch.tensor([-1.0, 0.0, 0.5]))
    obs, action = torch.randn(5, OBS_DIM), torch.rand(5, ACT_DIM) * 2 - 1
    mean, log_std = agent.actor(obs)
    expected = torch.distributions.Normal(mean, log_std.exp()).log_prob(action).sum(-1)
    torch.testing.assert_close(agent.actor.log_prob(obs, action), expected)


def test_iql_target_network_is_polyak_averaged():
    agent = make("iql", tau=0.1, normalize_obs=False)
    before = [p.clone() for p in agent.critic_target.parameters()]
    agent.update(make_batch())
    for old, target, online in zip(before, agent.critic_target.parameters(), agent.critic.parameters()):
        torch.testing.assert_close(target, old + 0.1 * (online - old))
        assert not torch.equal(target, old)


def test_iql_cosine_actor_lr_schedule():
    agent = make("iql", actor_lr=1e-3, actor_lr_schedule_steps=4, normalize_obs=False)
    lrs = []
    for i in range(6):
        agent.update(make_batch(i))
        lrs.append(float(agent.actor_optimizer.param_groups[0]["lr"]))
    # rate of update k (0-based) is 1e-3 * (1 + cos(pi * min(k, 4) / 4)) / 2; the last applied is k = i
    expected = [1e-3 * (1 + np.cos(np.pi * min(k, 4) / 4)) / 2 for k in range(6)]
    np.testing.assert_allclose(lrs, expected, rtol=1e-6, atol=1e-12)
    assert agent.critic_optimizer.param_groups[0]["lr"] == 3e-4  # only the actor is scheduled
    restored = make("iql", actor_lr=1e-3, actor_lr_schedule_steps=4, normalize_obs=False, seed=1)
    agent_state = make("iql", actor_lr=1e-3, actor_lr_schedule_steps=4, normalize_obs=False)
    for i in range(2):
        agent_state.update(make_batch(i))
    restored.load_state_dict(agent_state.state_dict())
    restored.update(make_batch(2))
    np.testing.assert_allclose(float(restored.actor_optimizer.param_groups[0]["lr"]), expected[2], rtol=1e-6)


# ---------------------------------------------------------------- TD3+BC
def test_td3bc_delays_actor_and_target_updates():
    agent = make("td3bc", normalize_obs=False)
    modules = (agent.actor, agent.actor_target, agent.critic_target)

    def snapshot():
        return [[p.clone() for p in m.parameters()] for m in modules]

    def changed(before):
        return [not all(torch.equal(a, b) for a, b in zip(old, m.parameters())) for old, m in zip(before, modules)]

    critic_before = [p.clone() for p in agent.critic.parameters()]
    for i in range(1, 7):
        before = snapshot()
        metrics = agent.update(make_batch(i))
        on_actor_step = i % 2 == 0
        assert changed(before) == [on_actor_step] * 3, i
        assert ("actor_loss" in metrics) == (i >= 2)
    assert not all(torch.equal(a, b) for a, b in zip(critic_before, agent.critic.parameters()))
    every_third = make("td3bc", policy_update_every=3, normalize_obs=False)
    before = [p.clone() for p in every_third.actor.parameters()]
    for i in range(2):
        every_third.update(make_batch(i))
    assert all(torch.equal(a, b) for a, b in zip(before, every_third.actor.parameters()))


def test_td3bc_actor_loss_by_hand():
    agent = make("td3bc", alpha=2.5)
    obs, action = torch.randn(BATCH, OBS_DIM), torch.rand(BATCH, ACT_DIM) * 2 - 1
    loss, metrics = agent.actor_loss(obs, action)
    with torch.no_grad():
        pi = agent.actor(obs)
        q1 = agent.critic(obs, pi)[0]
    lmbda = 2.5 / q1.abs().mean()
    torch.testing.assert_close(metrics["lambda"], lmbda)
    torch.testing.assert_close(loss, -lmbda * q1.mean() + ((pi - action) ** 2).mean())
    loss.backward()
    assert all(p.grad is None for p in agent.critic.parameters())  # lambda and Q carry no critic gradient


def test_td3bc_critic_loss_by_hand_sums_the_critics_mean_squared_errors():
    """TD3 Algorithm 1 with noise-free smoothing (policy_noise=0): y = r + gamma (1 - d) min_i Q'_i(s', pi'(s'))."""
    agent = make("td3bc", policy_noise=0.0, gamma=0.9, normalize_obs=False)
    g = torch.Generator().manual_seed(5)
    obs, next_obs = torch.randn(BATCH, OBS_DIM, generator=g), torch.randn(BATCH, OBS_DIM, generator=g)
    action, reward = torch.rand(BATCH, ACT_DIM, generator=g) * 2 - 1, torch.randn(BATCH, generator=g)
    terminated = (torch.rand(BATCH, generator=g) < 0.3).float()
    loss, _ = agent.critic_loss(obs, action, reward, next_obs, terminated)
    with torch.no_grad():
        next_q = agent.critic_target(next_obs, agent.actor_target(next_obs))  # (E, B)
        y = reward + 0.9 * (1 - terminated) * next_q.min(dim=0).values
        q = agent.critic(obs, action)  # (E, B)
    assert q.shape[0] == 2
    torch.testing.assert_close(loss, sum(((q[i] - y) ** 2).mean() for i in range(2)))


def test_td3bc_target_networks_are_polyak_averaged_on_actor_steps():
    agent = make("td3bc", tau=0.1, normalize_obs=False)  # policy_update_every=2: targets move at update 2
    agent.update(make_batch(1))
    before = [[p.clone() for p in m.parameters()] for m in (agent.actor_target, agent.critic_target)]
    agent.update(make_batch(2))
    pairs = ((agent.actor_target, agent.actor), (agent.critic_target, agent.critic))
    for old, (target, online) in zip(before, pairs):
        for old_p, target_p, online_p in zip(old, target.parameters(), online.parameters()):
            torch.testing.assert_close(target_p, old_p + 0.1 * (online_p - old_p))
            assert not torch.equal(target_p, old_p)


def test_gaussian_actor_clips_log_sigma_to_its_bounds():
    agent = make("iql", log_std_bounds=(-5.0, 2.0), normalize_obs=False)
    obs, action = torch.randn(4, OBS_DIM), torch.rand(4, ACT_DIM) * 2 - 1
    for raw, clipped in ((5.0, 2.0), (-30.0, -5.0)):
        with torch.no_grad():
            agent.actor.log_std.fill_(raw)
        mean, log_std = agent.actor(obs)
        assert torch.equal(log_std, torch.full((ACT_DIM,), clipped))
        expected = torch.distributions.Normal(mean, torch.exp(torch.tensor(clipped))).log_prob(action).sum(-1)
        torch.testing.assert_close(agent.actor.log_prob(obs, action), expected)


def test_bc_mse_loss_is_summed_over_action_dimensions():
    agent = make("bc_mse", normalize_obs=False)
    obs, action = torch.randn(BATCH, OBS_DIM), torch.rand(BATCH, ACT_DIM) * 2 - 1
    with torch.no_grad():
        expected = ((agent.actor(obs) - action) ** 2).sum(-1).mean()
    torch.testing.assert_close(agent.bc_loss(obs, action), expected)


def test_td3bc_target_uses_smoothed_target_policy():
    """Terminal transitions: the target is the reward; otherwise it bootstraps clipped noisy target actions."""
    agent = make("td3bc", noise_clip=0.0)
    b = make_batch()
    _, metrics = agent.critic_loss(b["obs"], b["action"], b["reward"], b["next_obs"], torch.ones(BATCH))
    torch.testing.assert_close(metrics["target_q_mean"], b["reward"].mean())
    _, metrics = agent.critic_loss(b["obs"], b["action"], b["reward"], b["next_obs"], torch.zeros(BATCH))
    with torch.no_grad():  # noise_clip = 0: the smoothed action is the target policy's own
        next_q = agent.critic_target(b["next_obs"], agent.actor_target(b["next_obs"])).min(0).values
    torch.testing.assert_close(metrics["target_q_mean"], (b["reward"] + 0.99 * next_q).mean())


def test_td3bc_target_clips_the_noise_and_the_smoothed_action():
    """a' = clip(pi_target(s') + clip(eps, -c, c), -1, 1), eps ~ N(0, sigma^2): a target policy near the bound +1
    and large noise make both clips matter."""
    agent = make("td3bc", policy_noise=1.0, noise_clip=0.5, gamma=0.9)
    with torch.no_grad():
        agent.actor_target.net[-1].bias.fill_(2.0)  # tanh(f(s')) near 1
    b = make_batch()
    torch.manual_seed(3)
    noise = (torch.randn(BATCH, ACT_DIM) * 1.0).clamp(-0.5, 0.5)
    with torch.no_grad():
        smoothed = agent.actor_target(b["next_obs"]) + noise
        assert (smoothed > 1).any() and (noise.abs() == 0.5).any()
        next_q = agent.critic_target(b["next_obs"], smoothed.clamp(-1.0, 1.0)).min(0).values
    target = b["reward"] + 0.9 * (1 - b["terminated"]) * next_q
    torch.manual_seed(3)
    _, metrics = agent.critic_loss(b["obs"], b["action"], b["reward"], b["next_obs"], b["terminated"])
    torch.testing.assert_close(metrics["target_q_mean"], target.mean())


def test_td3bc_lambda_carries_no_gradient():
    """lambda = alpha / mean |Q_1| is a constant for the actor's gradient (Fujimoto & Gu eq. 4)."""
    agent = make("td3bc", alpha=2.5)
    obs, action = torch.randn(BATCH, OBS_DIM), torch.rand(BATCH, ACT_DIM) * 2 - 1
    loss, metrics = agent.actor_loss(obs, action)
    loss.backward()
    grads = [p.grad.clone() for p in agent.actor.parameters()]
    agent.actor.zero_grad()
    pi = agent.actor(obs)
    (-metrics["lambda"] * agent.critic(obs, pi)[0].mean() + (pi - action).square().mean()).backward()
    for got, p in zip(grads, agent.actor.parameters(), strict=True):
        torch.testing.assert_close(got, p.grad)


# ---------------------------------------------------------------- learning
def bandit_data(n: int, seed: int, behaviour_noise: float | None, behaviour_offset: float = 0.0):
    """One-step, terminal: reward -10 (a - s / 2)^2, s ~ U(-1, 1). Dataset actions uniform on [-1, 1]
    (`behaviour_noise=None`) or s / 2 + behaviour_offset + N(0, behaviour_noise^2), clipped."""
    g = torch.Generator().manual_seed(seed)
    s = torch.rand(n, 1, generator=g) * 2 - 1
    if behaviour_noise is None:
        a = torch.rand(n, 1, generator=g) * 2 - 1
    else:
        a = (s / 2 + behaviour_offset + behaviour_noise * torch.randn(n, 1, generator=g)).clamp(-1, 1)
    r = -10 * (a - s / 2).square().sum(-1)
    return {"obs": s, "action": a, "reward": r, "next_obs": s, "terminated": torch.ones(n)}, g


def train_on(agent, data, g, updates: int, batch: int = 128):
    agent.fit_normalizer(data["obs"])
    n = data["obs"].shape[0]
    for _ in range(updates):
        idx = torch.randint(n, (batch,), generator=g)
        agent.update({k: v[idx] for k, v in data.items()})


TEST_OBS = np.linspace(-0.9, 0.9, 19, dtype=np.float32)[:, None]


def action_error(agent) -> float:
    return float(np.abs(agent.act(TEST_OBS, deterministic=True) - TEST_OBS / 2).mean())


def test_iql_finds_the_best_action_in_the_data():
    """Uniformly random dataset actions: cloning them gives ~0 everywhere, IQL must pick a = s / 2."""
    space = gym.spaces.Box(-1, 1, (1,), np.float32)
    data, g = bandit_data(4096, seed=0, behaviour_noise=None)
    torch.manual_seed(0)
    agent = IQL(space, space, hidden_dims=(32, 32), actor_lr=3e-3, critic_lr=3e-3, value_lr=3e-3)
    initial = action_error(agent)
    train_on(agent, data, g, updates=500)
    assert initial > 0.15 and action_error(agent) < 0.06
    torch.manual_seed(0)
    cloner = BC(space, space, hidden_dims=(32, 32), lr=3e-3)
    train_on(cloner, data, g, updates=300)
    assert action_error(cloner) > 0.15  # the data's average action is far from the best one


@pytest.mark.parametrize("loss", ["mse", "nll"])
def test_bc_clones_the_behaviour_policy(loss):
    space = gym.spaces.Box(-1, 1, (1,), np.float32)
    data, g = bandit_data(4096, seed=1, behaviour_noise=0.1)
    torch.manual_seed(0)
    agent = BC(space, space, hidden_dims=(32, 32), lr=3e-3, loss=loss)
    initial = action_error(agent)
    train_on(agent, data, g, updates=300)
    assert initial > 0.15 and action_error(agent) < 0.05
    if loss == "nll":  # sigma falls from 1 towards the behaviour noise, 0.1
        assert float(agent.actor.log_std.detach().exp()) < 0.5


def test_td3bc_improves_on_a_biased_behaviour_policy():
    """Behaviour a = s / 2 + 0.25 + noise: cloning it is 0.25 off, the Q term must pull the policy to s / 2."""
    space = gym.spaces.Box(-1, 1, (1,), np.float32)
    results = {}
    for cls, hparams, updates in ((TD3BC, dict(actor_lr=3e-3, critic_lr=3e-3), 400), (BC, dict(lr=3e-3), 300)):
        data, g = bandit_data(4096, seed=2, behaviour_noise=0.3, behaviour_offset=0.25)
        torch.manual_seed(2)
        agent = cls(space, space, hidden_dims=(32, 32), **hparams)
        results[cls] = action_error(agent)
        train_on(agent, data, g, updates=updates)
        results[cls] = (results[cls], action_error(agent))
    assert results[TD3BC][0] > 0.1 and results[TD3BC][1] < 0.08
    assert results[BC][1] > 0.15


# ---------------------------------------------------------------- persistence
@pytest.mark.parametrize("name", AGENTS)
def test_state_dict_round_trip_gives_identical_actions_and_training(name):
    agent = fitted(make(name, seed=0))
    for i in range(3):  # 3 updates: TD3+BC's next update is an actor step
        agent.update(make_batch(i))
    buffer = io.BytesIO()
    torch.save(agent.state_dict(), buffer)
    buffer.seek(0)
    restored = make(name, seed=123)
    restored.load_state_dict(torch.load(buffer, weights_only=False))
    assert restored.num_updates == 3
    assert_same_parameters(agent, restored)
    obs = np.random.default_rng(0).normal(5.0, 3.0, size=(4, OBS_DIM)).astype(np.float32)
    np.testing.assert_array_equal(agent.act(obs, deterministic=True), restored.act(obs, deterministic=True))
    for i in range(3, 5):
        torch.manual_seed(7 + i)
        expected = agent.update(make_batch(i))
        torch.manual_seed(7 + i)
        assert_same_metrics(expected, restored.update(make_batch(i)))
    assert_same_parameters(agent, restored)


@pytest.mark.parametrize("name", ["iql", "td3bc"])
def test_load_state_dict_does_not_share_tensors_with_the_source(name):
    agent = fitted(make(name, seed=0), seed=99)
    agent.update(make_batch(0))
    clone = make(name, seed=1)
    clone.load_state_dict(agent.state_dict())
    snapshot = parameters(clone)
    for i in range(2):
        agent.update(make_batch(i + 1))
    fitted(agent)
    for before, after in zip(snapshot, parameters(clone)):
        assert torch.equal(before, after)


@pytest.mark.parametrize("name", ["iql_schedule", "td3bc", "bc_nll"])
def test_to_keeps_state_and_rng(name):
    agent = fitted(make(name))
    agent.update(make_batch())
    obs = np.zeros((2, OBS_DIM), np.float32)
    before = agent.act(obs, deterministic=True)
    torch.manual_seed(5)
    agent.to("cpu")
    after_rng = torch.rand(1)
    torch.manual_seed(5)
    assert torch.equal(after_rng, torch.rand(1))
    np.testing.assert_array_equal(before, agent.act(obs, deterministic=True))
    assert agent.num_updates == 1
    agent.update(make_batch())


# ---------------------------------------------------------------- compiled == eager
def check_compiled_equals_eager(name: str, updates: int = 4) -> None:
    batches = [make_batch(i) for i in range(updates)]
    results = {}
    with eager_random_numbers():
        for compile in (False, True):
            agent = fitted(make(name, seed=0, compile=compile))
            torch.manual_seed(1)
            results[compile] = (agent, [agent.update(batch) for batch in batches])
    (eager, eager_metrics), (compiled, compiled_metrics) = results[False], results[True]
    for expected, got in zip(eager_metrics, compiled_metrics):
        assert_same_metrics(expected, got, rtol=1e-5, atol=1e-5)
    assert_same_parameters(eager, compiled, rtol=1e-5, atol=1e-6)


def test_iql_compiled_update_equals_eager():
    check_compiled_equals_eager("iql_schedule")


def test_td3bc_compiled_update_equals_eager():
    """Also the compiled Polyak step of a network that the step does not train (the critic, in the actor step)."""
    check_compiled_equals_eager("td3bc")


def test_iql_checkpoint_moves_between_compiled_and_eager():
    """The compiled step keeps Adam's state in the optimisers: a compiled agent's checkpoint continues in an
    eager agent, and an eager one's in a compiled agent, exactly as in an agent of its own kind."""
    batches = [make_batch(i) for i in range(4)]
    first, second = fitted(make("iql_schedule", compile=True)), fitted(make("iql_schedule"))
    for agent in (first, second):
        for batch in batches[:2]:
            agent.update(batch)
    for source in (first, second):
        continuations = []
        for compile in (False, True):
            agent = make("iql_schedule", seed=7, compile=compile)
            agent.load_state_dict(source.state_dict())
            for batch in batches[2:]:
                agent.update(batch)
            assert agent.actor_optimizer.state_dict()["state"][0]["step"].item() == 4
            continuations.append(agent)
        assert_same_parameters(*continuations, rtol=1e-5, atol=1e-6)
    assert_same_parameters(first, second, rtol=1e-5, atol=1e-6)  # the sources were updated alike too


def test_functional_step_rejects_what_it_cannot_do():
    from embodied_rl.agents.functional_step import FunctionalStep

    net, other = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
    loss = lambda x: (net(x).sum(), {})  # noqa: E731
    with pytest.raises(ValueError, match="plain Adam"):
        FunctionalStep([(net, torch.optim.Adam(net.parameters(), weight_decay=0.1))], loss, compile=False)
    with pytest.raises(ValueError, match="its own module"):
        FunctionalStep([(net, torch.optim.Adam(other.parameters()))], loss, compile=False)
    with pytest.raises(ValueError, match="needs an optimiser"):
        FunctionalStep([(net, torch.optim.Adam([net.weight]))], loss, compile=False)


@pytest.mark.slow
def test_bc_compiled_update_equals_eager():
    check_compiled_equals_eager("bc_nll")


@pytest.mark.parametrize("name", ["iql", "td3bc", "bc_mse"])
def test_cudagraphs_off_cuda_warns_and_falls_back(name):
    if torch.cuda.is_available():
        pytest.skip("only meaningful without CUDA")
    with pytest.warns(UserWarning, match="cudagraphs=True needs a CUDA device"):
        agent = fitted(make(name, cudagraphs=True))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        metrics = agent.update(make_batch())
    assert all(torch.isfinite(v) for v in metrics.values())


# ---------------------------------------------------------------- CUDA
@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("name", ["iql_schedule", "td3bc", "bc_nll"])
@pytest.mark.parametrize("flags", [{"cudagraphs": True}, {"compile": True, "cudagraphs": True}])
def test_cuda_graph_update_equals_eager(name, flags):
    """Warm-up updates, the capture and replays: all must match eager CUDA updates."""
    batches = [make_batch(i, device="cuda") for i in range(8)]
    results = {}
    with eager_random_numbers():
        for mode, extra in (("eager", {}), ("graph", flags)):
            agent = fitted(make(name, seed=0, device="cuda", **extra))
            torch.manual_seed(1)
            results[mode] = (agent, [agent.update(batch) for batch in batches])
    for expected, got in zip(results["eager"][1], results["graph"][1]):
        assert_same_metrics(expected, got, rtol=1e-4, atol=1e-4)
    assert_same_parameters(results["eager"][0], results["graph"][0], rtol=1e-4, atol=1e-5)


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("name", ["iql_schedule", "td3bc"])
@pytest.mark.parametrize("flags", [{}, {"compile": True}, {"cudagraphs": True}])
def test_cuda_update_does_not_synchronise(name, flags):
    agent = fitted(make(name, device="cuda", **flags))
    batch = make_batch(device="cuda")
    for _ in range(6):  # warm-up, compilation and capture
        agent.update(batch)
    torch.cuda.set_sync_debug_mode("error")
    try:
        agent.update(batch)
        agent.update(batch)
    finally:
        torch.cuda.set_sync_debug_mode("default")


@pytest.mark.parametrize("name", ["iql", "td3bc", "bc"])
def test_make_agent_passes_every_config_key_to_the_agent(name, monkeypatch):
    cls = {"iql": IQL, "td3bc": TD3BC, "bc": BC}[name]
    cfg = {**OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / f"{name}.yaml")), "hidden_dims": [16]}
    received = {}
    constructor = cls.__init__

    @functools.wraps(constructor)  # make_agent reads the signature to reject unknown keys
    def recording_constructor(self, *args, **kwargs):
        received.update(kwargs)
        constructor(self, *args, **kwargs)

    monkeypatch.setattr(cls, "__init__", recording_constructor)
    build_from_config(cfg, STATE_SPACE, ACTION_SPACE, torch.device("cpu"))
    assert received == {**{k: v for k, v in cfg.items() if k != "name"}, "device": "cpu"}
