"""Gradient isolation of the agents whose losses share a backward pass or a step: IQL (value, critic and actor
losses summed into one backward), SAC (actor + temperature losses summed; the critic step before them) and
TD3+BC (critic step, then actor step with a critic evaluated inside the actor loss).

What these tests guard: each network is trained by the gradient of its own loss only. For every agent, the
losses are written out here by hand from the agent's networks and a fixed batch, and `torch.autograd.grad` of
each loss w.r.t. its own network's parameters is compared with the gradient that the agent's update actually
applied to that network, read back from Adam's first moment after one step (from zero, exp_avg = (1 - beta1) *
g), with every learning rate set to 0 so that the networks stay as they were for the later steps of the same
update. That runs through both steps `training_step(compile=...)` can build: `EagerStep` (one `backward()`;
there the `.grad` each parameter holds after the update is checked too) and `FunctionalStep` (`torch.func.grad`,
run with `torch.compile` replaced by the identity: its compiled graph is checked equal to eager by
tests/test_offline_agents.py and tests/test_sac.py). A second test per agent takes the agent's own loss methods
and checks which networks each one reaches at all: e.g. IQL's critic loss must not reach the value network
(V(s') in its target carries no gradient), SAC's actor loss must not reach the critics or log_alpha, and no loss
may reach a target network even when that network's parameters are made to require gradients (a target must be
computed under `torch.no_grad()`, not only kept out of the optimisers). Tiny networks, batches of 8, CPU."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from embodied_rl.agents import IQL, SAC, TD3BC

OBS_DIM, ACT_DIM, BATCH = 5, 2, 8
STATE_SPACE = gym.spaces.Box(-np.inf, np.inf, (OBS_DIM,), np.float32)
ACTION_SPACE = gym.spaces.Box(np.array([-1.0, 0.0], np.float32), np.array([1.0, 3.0], np.float32))
PIXEL_SPACE = gym.spaces.Dict(
    {"pixels": gym.spaces.Box(0, 255, (32, 32, 3), np.uint8), "state": STATE_SPACE}
)  # SAC only: its encoder is trained by the critic loss alone
TINY = dict(hidden_dims=(16, 16))
PIXEL_KW = dict(encoder_feature_dim=8, encoder_num_filters=4, encoder_num_layers=2)


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(params=["eager", "functional"])
def compile(request, monkeypatch) -> bool:
    """The agents' `compile` flag: False builds `EagerStep`s, True `FunctionalStep`s, here run uncompiled."""
    wrapped = []  # the functions FunctionalStep hands to torch.compile
    if request.param == "functional":
        monkeypatch.setattr(torch, "compile", lambda fn, **kwargs: wrapped.append(fn) or fn)
    yield request.param == "functional"
    assert bool(wrapped) == (request.param == "functional"), "the agent did not build the step asked for"


def make_batch(seed: int = 0, obs_space: gym.Space = STATE_SPACE) -> dict:
    g = torch.Generator().manual_seed(seed)

    def observation():
        state = torch.randn(BATCH, OBS_DIM, generator=g) * 2 + 1
        if isinstance(obs_space, gym.spaces.Dict):
            return {"pixels": torch.randint(0, 256, (BATCH, 32, 32, 3), generator=g, dtype=torch.uint8), "state": state}
        return state

    low, high = torch.as_tensor(ACTION_SPACE.low), torch.as_tensor(ACTION_SPACE.high)
    return {
        "obs": observation(),
        "action": low + (high - low) * torch.rand(BATCH, ACT_DIM, generator=g),
        "reward": torch.randn(BATCH, generator=g),
        "next_obs": observation(),
        "terminated": torch.tensor([0.0, 1.0] + [0.0] * (BATCH - 2)),
    }


def fitted(agent):
    """The agent with its normaliser fitted to observations away from N(0, 1)."""
    g = torch.Generator().manual_seed(100)
    agent.fit_normalizer(torch.randn(200, OBS_DIM, generator=g) * 3 + 2)
    return agent


def zero_learning_rates(*optimizers: torch.optim.Optimizer) -> None:
    """lr 0: a step changes no weight, so a later step of the same update sees the networks as they were."""
    for optimizer in optimizers:
        for group in optimizer.param_groups:
            group["lr"] = 0.0


def own_gradients(loss: torch.Tensor, parameters) -> list[torch.Tensor]:
    return list(torch.autograd.grad(loss, list(parameters), retain_graph=True))


def applied_gradients(optimizer: torch.optim.Adam) -> list[torch.Tensor]:
    """The gradient of the only Adam step taken so far: from zero moments, exp_avg = (1 - beta1) * g."""
    return [
        optimizer.state[p]["exp_avg"] / (1.0 - group["betas"][0])
        for group in optimizer.param_groups
        for p in group["params"]
    ]


def assert_gradients_equal(got: list, expected: list[torch.Tensor], what: str) -> None:
    assert len(got) == len(expected), what
    assert any(e.abs().max() > 0 for e in expected), f"{what}: its own loss gives it no gradient (vacuous test)"
    for index, (g, e) in enumerate(zip(got, expected)):
        assert g is not None, f"{what}: parameter {index} got no gradient"
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-6, msg=lambda m, i=index: f"{what}, parameter {i}: {m}")


def check_step_gradients(agent, compile: bool, expected: dict, optimizers: dict, untrained: dict) -> None:
    """After one update: each optimiser applied its network's own-loss gradient (`expected`); with `EagerStep`
    the `.grad` each parameter is left with is that gradient too (nothing leaked into it after its own step),
    with `FunctionalStep` no `.grad` is set; the `untrained` (target) networks require and hold no gradient."""
    for name, optimizer in optimizers.items():
        assert_gradients_equal(applied_gradients(optimizer), expected[name], f"{name} (applied by Adam)")
        params = [p for group in optimizer.param_groups for p in group["params"]]
        if compile:
            assert all(p.grad is None for p in params), name
        else:
            assert_gradients_equal([p.grad for p in params], expected[name], f"{name} (.grad after the update)")
    for name, module in untrained.items():
        assert not any(p.requires_grad for p in module.parameters()), f"{name} requires gradients"
        assert all(p.grad is None for p in module.parameters()), f"{name} holds a gradient"


def reaches(loss: torch.Tensor, module: nn.Module | list[torch.Tensor]) -> bool:
    """Whether `loss` has a nonzero gradient w.r.t. any parameter of `module` (parameters that do not require
    gradients count as unreached)."""
    params = [p for p in (module.parameters() if isinstance(module, nn.Module) else module) if p.requires_grad]
    if not params:
        return False
    grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return any(g is not None and bool(g.abs().max() > 0) for g in grads)


def check_reach(losses: dict[str, torch.Tensor], networks: dict, own: dict[str, list[str]]) -> None:
    """Each loss reaches its own networks (`own[loss]`) and no other of `networks`."""
    for loss_name, loss in losses.items():
        for name, module in networks.items():
            should = name in own[loss_name]
            assert reaches(loss, module) == should, f"the {loss_name} loss {'misses' if should else 'reaches'} {name}"


# ---------------------------------------------------------------- IQL
def iql_batch(agent: IQL, batch: dict) -> tuple[torch.Tensor, ...]:
    """Normalised obs and next_obs, [-1, 1] actions, reward, terminated: what the losses see."""
    obs, next_obs = agent.normalize(batch["obs"]), agent.normalize(batch["next_obs"])
    return obs, agent.to_unit_action(batch["action"]), batch["reward"], next_obs, batch["terminated"]


def test_iql_each_network_gets_the_gradient_of_its_own_loss(compile):
    """Value: expectile regression onto min_i Q_target_i(s, a) (eq. 5); critic: TD regression onto
    r + gamma (1 - d) V(s') with V(s') a constant (eq. 6); actor: advantage-weighted log-likelihood with the
    advantage a constant (eq. 7). The three are summed into one backward: each network must get its own."""
    torch.manual_seed(0)
    agent = fitted(IQL(STATE_SPACE, ACTION_SPACE, **TINY, compile=compile))
    zero_learning_rates(agent.value_optimizer, agent.critic_optimizer, agent.actor_optimizer)
    batch = make_batch()
    obs, action, reward, next_obs, terminated = iql_batch(agent, batch)

    target_q = agent.critic_target(obs, action).min(dim=0).values.detach()  # (B,)
    v = agent.value(obs).squeeze(-1)  # (B,)
    u = target_q - v
    value_loss = (torch.where(u < 0, 1.0 - agent.expectile, agent.expectile) * u.square()).mean()
    next_v = agent.value(next_obs).squeeze(-1).detach()  # (B,)
    critic_loss = (agent.critic(obs, action) - (reward + agent.gamma * (1.0 - terminated) * next_v)).square().mean()
    weight = torch.exp(agent.beta * u.detach()).clamp(max=agent.max_weight)
    actor_loss = -(weight * agent.actor.log_prob(obs, action)).mean()
    expected = {
        "value": own_gradients(value_loss, agent.value.parameters()),
        "critic": own_gradients(critic_loss, agent.critic.parameters()),
        "actor": own_gradients(actor_loss, agent.actor.parameters()),
    }
    # the check is sensitive: with V(s') not detached, the critic loss would give V a nonzero gradient
    leaky_target = reward + agent.gamma * (1.0 - terminated) * agent.value(next_obs).squeeze(-1)
    assert reaches((agent.critic(obs, action) - leaky_target).square().mean(), agent.value)

    agent.update(batch)
    optimizers = {"value": agent.value_optimizer, "critic": agent.critic_optimizer, "actor": agent.actor_optimizer}
    check_step_gradients(agent, compile, expected, optimizers, {"critic_target": agent.critic_target})


def test_iql_each_loss_reaches_only_its_own_network():
    """The critic loss does not reach the value network (V(s') under no_grad) nor the actor; the value loss
    neither the critics nor the actor; the actor loss (through the detached advantage) neither V nor Q; and
    none reaches the target critics, even with their parameters requiring gradients."""
    torch.manual_seed(0)
    agent = fitted(IQL(STATE_SPACE, ACTION_SPACE, **TINY))
    agent.critic_target.requires_grad_(True)
    obs, action, reward, next_obs, terminated = iql_batch(agent, make_batch())
    value_loss, advantage, _ = agent.value_loss(obs, action)
    critic_loss, _ = agent.critic_loss(obs, action, reward, next_obs, terminated)
    actor_loss, _ = agent.actor_loss(obs, action, advantage)
    combined, _ = agent._forward(*make_batch().values())  # the sum the update differentiates
    networks = {
        "value": agent.value,
        "critic": agent.critic,
        "actor": agent.actor,
        "critic_target": agent.critic_target,
    }
    check_reach(
        {"value": value_loss, "critic": critic_loss, "actor": actor_loss, "combined": combined},
        networks,
        {"value": ["value"], "critic": ["critic"], "actor": ["actor"], "combined": ["value", "critic", "actor"]},
    )


# ---------------------------------------------------------------- SAC
@pytest.mark.parametrize("obs_space", [STATE_SPACE, PIXEL_SPACE], ids=["state", "pixels"])
def test_sac_each_network_gets_the_gradient_of_its_own_loss(compile, obs_space):
    """Critic step: encoder and critics get the soft Bellman residual's gradient (eq. 5), the target (eq. 3) a
    constant. Actor + temperature step, one backward of the sum: the actor gets eq. 7's gradient (alpha and the
    critic constants; the features detached, so the encoder gets nothing), log_alpha eq. 18's (log pi a
    constant)."""
    torch.manual_seed(0)
    pixels = obs_space is PIXEL_SPACE
    agent = SAC(obs_space, ACTION_SPACE, **TINY, **(PIXEL_KW if pixels else {}), compile=compile)
    zero_learning_rates(agent.critic_optimizer, agent.actor_optimizer, agent.alpha_optimizer)
    batch = make_batch(obs_space=obs_space)
    unit_action = (batch["action"] - agent.action_bias) / agent.action_scale
    reward, terminated = batch["reward"], batch["terminated"]

    torch.manual_seed(1)  # the update below draws the same a' ~ pi(.|s') and a ~ pi(.|s), in this order
    features = agent.encoder(batch["obs"])  # (B, F)
    with torch.no_grad():
        next_features = agent.encoder(batch["next_obs"])
        next_action, next_log_prob = agent.actor(next_features).rsample_with_log_prob()
        alpha = agent.log_alpha.exp()
        soft_value = agent.critic_target(next_features, next_action).min(dim=0).values - alpha * next_log_prob
        target_q = reward + agent.gamma * (1.0 - terminated) * soft_value  # (B,)
    critic_loss = 0.5 * (agent.critic(features, unit_action) - target_q).square().mean(dim=1).sum()
    actor_features = features.detach()
    action, log_prob = agent.actor(actor_features).rsample_with_log_prob()
    actor_loss = (alpha * log_prob - agent.critic(actor_features, action).min(dim=0).values).mean()
    alpha_loss = -(agent.log_alpha.exp() * (log_prob.detach() + agent.target_entropy)).mean()
    expected = {
        "critic": own_gradients(critic_loss, [*agent.encoder.parameters(), *agent.critic.parameters()]),
        "actor": own_gradients(actor_loss, agent.actor.parameters()),
        "alpha": own_gradients(alpha_loss, [agent.log_alpha]),
    }
    # the check is sensitive: with log pi not detached, the temperature loss would give the actor a gradient
    assert reaches(-(agent.log_alpha.exp() * (log_prob + agent.target_entropy)).mean(), agent.actor)

    torch.manual_seed(1)
    agent.update(batch)
    optimizers = {"critic": agent.critic_optimizer, "actor": agent.actor_optimizer, "alpha": agent.alpha_optimizer}
    check_step_gradients(agent, compile, expected, optimizers, {"critic_target": agent.critic_target})


@pytest.mark.parametrize("obs_space", [STATE_SPACE, PIXEL_SPACE], ids=["state", "pixels"])
def test_sac_each_loss_reaches_only_its_own_network(obs_space):
    """The critic loss trains encoder and critics only: not the actor nor log_alpha (both appear in its target
    under no_grad). The actor loss trains the actor only: not the critics (detached weights), not log_alpha
    (alpha detached), not the encoder (detached features). The temperature loss trains log_alpha only (log pi
    detached). No loss reaches the target critics, even with their parameters requiring gradients."""
    torch.manual_seed(0)
    pixels = obs_space is PIXEL_SPACE
    agent = SAC(obs_space, ACTION_SPACE, **TINY, **(PIXEL_KW if pixels else {}))
    agent.critic_target.requires_grad_(True)
    batch = make_batch(obs_space=obs_space)
    reward, terminated = batch["reward"], batch["terminated"]
    critic_loss, (_, features) = agent._critic_forward(
        batch["obs"], batch["action"], reward, batch["next_obs"], terminated
    )
    assert not features.requires_grad  # the actor step's input: the encoder is the critic's
    actor_loss, log_prob = agent.actor_loss(features)
    alpha_loss = agent.alpha_loss(log_prob)
    combined, _ = agent._actor_forward(features)  # the sum the actor + temperature step differentiates
    networks = {
        "encoder": agent.encoder,
        "critic": agent.critic,
        "actor": agent.actor,
        "log_alpha": agent.temperature,
        "critic_target": agent.critic_target,
    }
    critic_own = ["encoder", "critic"] if pixels else ["critic"]  # a state encoder has no parameters
    check_reach(
        {"critic": critic_loss, "actor": actor_loss, "alpha": alpha_loss, "actor + alpha": combined},
        networks,
        {"critic": critic_own, "actor": ["actor"], "alpha": ["log_alpha"], "actor + alpha": ["actor", "log_alpha"]},
    )


# ---------------------------------------------------------------- TD3+BC
def test_td3bc_each_network_gets_the_gradient_of_its_own_loss(compile):
    """Critic step: clipped double-Q regression onto a target from the target networks (a constant). Actor step:
    -lambda mean Q_1(s, pi(s)) + mean (pi(s) - a)^2 with lambda a constant and the critic's weights constants."""
    torch.manual_seed(0)
    agent = fitted(TD3BC(STATE_SPACE, ACTION_SPACE, **TINY, policy_update_every=1, compile=compile))
    zero_learning_rates(agent.critic_optimizer, agent.actor_optimizer)
    batch = make_batch()
    obs, next_obs = agent.normalize(batch["obs"]), agent.normalize(batch["next_obs"])
    action, reward, terminated = agent.to_unit_action(batch["action"]), batch["reward"], batch["terminated"]

    torch.manual_seed(1)  # the update below draws the same target-policy noise
    with torch.no_grad():
        noise = (torch.randn_like(action) * agent.policy_noise).clamp(-agent.noise_clip, agent.noise_clip)
        next_action = (agent.actor_target(next_obs) + noise).clamp(-1.0, 1.0)
        next_q = agent.critic_target(next_obs, next_action).min(dim=0).values
        target_q = reward + agent.gamma * (1.0 - terminated) * next_q  # (B,)
    critic_loss = (agent.critic(obs, action) - target_q).square().mean(dim=1).sum()
    pi = agent.actor(obs)  # (B, A)
    q = agent.critic(obs, pi)[0]  # (B,)
    actor_loss = -(agent.alpha / q.abs().mean().detach()) * q.mean() + (pi - action).square().mean()
    expected = {
        "critic": own_gradients(critic_loss, agent.critic.parameters()),
        "actor": own_gradients(actor_loss, agent.actor.parameters()),
    }
    assert reaches(actor_loss, agent.critic)  # what the actor loss would give the critic if it leaked

    torch.manual_seed(1)
    agent.update(batch)
    optimizers = {"critic": agent.critic_optimizer, "actor": agent.actor_optimizer}
    untrained = {"critic_target": agent.critic_target, "actor_target": agent.actor_target}
    check_step_gradients(agent, compile, expected, optimizers, untrained)


def test_td3bc_each_loss_reaches_only_its_own_network():
    """The critic loss trains the critics only (its target, from the target networks, under no_grad); the actor
    loss trains the actor only (Q_1 with detached weights); neither reaches a target network, even with their
    parameters requiring gradients."""
    torch.manual_seed(0)
    agent = fitted(TD3BC(STATE_SPACE, ACTION_SPACE, **TINY))
    agent.critic_target.requires_grad_(True)
    agent.actor_target.requires_grad_(True)
    batch = make_batch()
    critic_loss, (_, obs, action) = agent._critic_forward(*batch.values())
    actor_loss, _ = agent.actor_loss(obs, action)
    networks = {
        "critic": agent.critic,
        "actor": agent.actor,
        "critic_target": agent.critic_target,
        "actor_target": agent.actor_target,
    }
    check_reach({"critic": critic_loss, "actor": actor_loss}, networks, {"critic": ["critic"], "actor": ["actor"]})
