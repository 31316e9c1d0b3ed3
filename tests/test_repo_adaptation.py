"""RePo's test-time encoder adaptation (embodied_rl.agents.repo.adaptation) and paired renders
(embodied_rl.envs.paired_renders): tiny networks, toy Gaussian embeddings, 32 px renders."""

import copy
import functools

import gymnasium as gym
import mujoco
import numpy as np
import pytest
import torch
from torch import nn

from embodied_rl.agents.repo.adaptation import AdaptationConfig, EncoderAdaptation
from embodied_rl.envs import make_env
from embodied_rl.envs.distractors import DistractorWrapper
from embodied_rl.envs.paired_renders import PAIRED_KEY, PairedRenders

E = 4  # toy embedding size
TINY = dict(
    batch_size=256,
    discriminator_hidden_dims=(64, 64),
    discriminator_latent_dim=8,
    density_ratio_hidden_dims=(64, 64),
)


class TinyConvEncoder(nn.Module):
    """Stand-in for the RePo agent's encoder: uint8 (..., 64, 64, 3) channels-last -> (..., 8)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(3, 4, 4, stride=4), nn.ReLU(), nn.Conv2d(4, 4, 4, stride=4), nn.ReLU())
        self.linear = nn.Linear(4 * 4 * 4, 8)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        lead = obs.shape[:-3]
        x = obs.reshape(-1, *obs.shape[-3:]).permute(0, 3, 1, 2).float() / 255.0 - 0.5  # (N, 3, 64, 64)
        return self.linear(self.conv(x).flatten(1)).reshape(*lead, -1)


def identity_encoder() -> nn.Linear:
    """A linear 'encoder' starting as the identity, for toy embeddings."""
    encoder = nn.Linear(E, E)
    with torch.no_grad():
        encoder.weight.copy_(torch.eye(E))
        encoder.bias.zero_()
    return encoder


def test_only_the_encoder_changes():
    torch.manual_seed(0)
    agent = nn.Module()
    agent.encoder = TinyConvEncoder()
    agent.world_model = nn.GRUCell(8, 8)  # stand-ins for the frozen parts of the agent
    agent.actor = nn.Linear(8, 2)
    before = copy.deepcopy(agent.state_dict())
    adaptation = EncoderAdaptation(agent.encoder, cfg=AdaptationConfig(**TINY))
    source_before = copy.deepcopy(adaptation.source_encoder.state_dict())
    rng = np.random.default_rng(0)
    frames = lambda *lead: torch.as_tensor(rng.integers(0, 256, (*lead, 64, 64, 3), dtype=np.uint8))  # noqa: E731
    for _ in range(3):
        metrics = adaptation.update(frames(2, 3), frames(2, 3), paired_source=frames(4), paired_target=frames(4))
    assert all(isinstance(v, torch.Tensor) and not v.requires_grad and v.ndim == 0 for v in metrics.values())
    after = agent.state_dict()
    for name in before:
        changed = not torch.equal(before[name], after[name])
        assert changed == name.startswith("encoder."), name
    assert all(p.grad is None for p in [*agent.world_model.parameters(), *agent.actor.parameters()])
    assert all(torch.equal(source_before[k], v) for k, v in adaptation.source_encoder.state_dict().items())
    assert adaptation.encoder is agent.encoder, "the agent's own encoder is adapted in place"


def test_adaptation_removes_a_shift_of_the_embeddings():
    """Source embeddings N(0, I); the target observations are shifted by +3, so their embeddings start at +3."""
    torch.manual_seed(0)
    encoder = identity_encoder()
    cfg = AdaptationConfig(**TINY, encoder_lr=1e-3, discriminator_lr=1e-3)
    adaptation = EncoderAdaptation(encoder, cfg=cfg)

    def shift() -> float:
        with torch.no_grad():
            return (encoder(torch.randn(4000, E) + 3.0).mean(0).norm() / E**0.5).item()  # per-dimension shift

    assert shift() == pytest.approx(3.0, abs=0.1)
    adaptation.adapt(lambda: dict(source_obs=torch.randn(256, E), target_obs=torch.randn(256, E) + 3.0), steps=300)
    assert shift() < 0.75


def test_density_ratio_mean_is_pulled_to_one_by_its_dual_variable():
    """With the discriminator silenced (d = 0), only the constraint E[w] = 1 acts on the density ratio: from
    a batch mean of 3 (or 0.3) the multiplier u rises (falls) and the mean is driven across one."""
    torch.manual_seed(0)
    cfg = AdaptationConfig(**TINY, discriminator_lr=1e-12, density_ratio_lr=1e-3, ratio_dual_lr=5e-2)
    for start in (3.0, 0.3):
        adaptation = EncoderAdaptation(identity_encoder(), cfg=cfg)
        adaptation.build(E)
        with torch.no_grad():
            adaptation.discriminator.head[-1].weight.zero_()
            adaptation.discriminator.head[-1].bias.zero_()
            adaptation.density_ratio.net[-1].weight.zero_()
            adaptation.density_ratio.net[-1].bias.fill_(np.log(start))
        means, duals = [], []
        for _ in range(60):
            metrics = adaptation.update(torch.randn(256, E), torch.randn(256, E))
            means.append(metrics["density_ratio_mean"].item())
            duals.append(metrics["ratio_dual"].item())
        assert means[0] == pytest.approx(start, rel=0.05)
        assert np.sign(duals[10] - cfg.ratio_init_dual) == np.sign(start - 1.0), "u rises while E[w] > 1"
        crossed = int(np.argmax(np.sign(np.array(means) - 1.0) != np.sign(start - 1.0)))
        assert crossed > 0, f"the batch mean of w never reached one: {means}"
        gaps = np.abs(np.array(means[: crossed + 1]) - 1.0)
        assert np.all(np.diff(gaps[:-1]) < 5e-3), (start, means[: crossed + 1])


def test_vdb_dual_rises_above_the_information_constraint_and_falls_below():
    torch.manual_seed(0)
    obs = lambda: torch.randn(64, E)  # noqa: E731
    tight = EncoderAdaptation(identity_encoder(), cfg=AdaptationConfig(**TINY, information_constraint=0.0))
    betas = [tight.update(obs(), obs())["vdb_dual"].item() for _ in range(5)]
    assert betas[0] > tight.cfg.vdb_init_dual and all(b1 > b0 for b0, b1 in zip(betas, betas[1:]))
    loose = EncoderAdaptation(identity_encoder(), cfg=AdaptationConfig(**TINY, information_constraint=1e3))
    betas = [loose.update(obs(), obs())["vdb_dual"].item() for _ in range(5)]
    assert betas[-1] == 0.0, "beta is projected onto >= 0 when the KL is below the constraint"


def test_calibration_loss_is_zero_on_matching_pairs_and_trains_to_zero():
    torch.manual_seed(0)
    adaptation = EncoderAdaptation(identity_encoder(), cfg=AdaptationConfig(**TINY))
    pairs = torch.randn(32, E)
    assert adaptation.update(pairs, pairs, pairs, pairs.clone())["calibration_loss"].item() == 0.0

    # Target renders differ from source renders by a fixed offset; calibration alone learns to undo it.
    torch.manual_seed(0)
    cfg = AdaptationConfig(**TINY, encoder_lr=5e-2, alignment_weight=0.0)
    adaptation = EncoderAdaptation(identity_encoder(), cfg=cfg)
    offset = torch.tensor([1.0, -2.0, 0.5, 1.5])
    losses = []
    for _ in range(200):
        source = torch.randn(64, E)
        losses.append(adaptation.update(source, source, source, source + offset)["calibration_loss"].item())
    assert losses[0] == pytest.approx(0.5 * offset.square().mean().item(), rel=0.1) and losses[-1] < 1e-3


def test_state_dict_round_trip_continues_identically():
    torch.manual_seed(0)
    batches = [(torch.randn(32, E), torch.randn(32, E) + 1, torch.randn(8, E), torch.randn(8, E)) for _ in range(4)]
    first = EncoderAdaptation(identity_encoder(), cfg=AdaptationConfig(**TINY))
    for batch in batches[:3]:
        first.update(*batch)
    second = EncoderAdaptation(identity_encoder(), cfg=AdaptationConfig(**TINY))
    second.load_state_dict(copy.deepcopy(first.state_dict()))
    torch.manual_seed(1)
    expected = first.update(*batches[3])
    torch.manual_seed(1)
    got = second.update(*batches[3])
    assert second.num_updates == 4
    assert all(torch.equal(expected[k], got[k]) for k in expected)
    with pytest.raises(ValueError, match="state_dict"):
        second.load_state_dict({"encoder": {}})


def test_bad_settings_and_half_pairs_are_clear_errors():
    with pytest.raises(ValueError, match="encoder_lr"):
        AdaptationConfig(encoder_lr=0.0)
    adaptation = EncoderAdaptation(identity_encoder(), cfg=AdaptationConfig(**TINY))
    with pytest.raises(ValueError, match="paired"):
        adaptation.update(torch.randn(8, E), torch.randn(8, E), paired_source=torch.randn(8, E))


# ------------------------------------------------------------------------------------------------------------
# Paired renders
# ------------------------------------------------------------------------------------------------------------

SIZE = 32


def paired_hopper(target_split: str, source_split: str | None, kinds=("background", "bodies")) -> PairedRenders:
    base = gym.make("Hopper-v5").unwrapped
    target = DistractorWrapper(base, target_split, list(kinds), seed=0, image_size=SIZE)
    return PairedRenders(target, source_split, seed=0)


def test_paired_renders_differ_only_where_distractors_are():
    env = paired_hopper("test", None, kinds=("background",))
    _, info = env.reset(seed=3)
    for _ in range(2):
        _, _, _, _, info = env.step(env.action_space.sample())
    target, source = env.render(), info[PAIRED_KEY]
    assert source.shape == target.shape == (SIZE, SIZE, 3) and source.dtype == np.uint8
    with mujoco.Renderer(env.unwrapped.model, SIZE, SIZE) as renderer:  # the same state, plain: where is the sky
        renderer.update_scene(env.unwrapped.data, camera=env.target.camera)
        plain = renderer.render()
        renderer.enable_segmentation_rendering()
        segmentation = renderer.render()
    assert np.array_equal(source, plain), "source_split=None: the paired frame has no distractors"
    background = env.target.scenery_geoms[np.maximum(segmentation[..., 0], 0)] | (segmentation[..., 1] == -1)
    differs = np.any(source != target, axis=-1)
    assert differs.any() and not differs[~background].any(), "the robot's pixels are the same in both renders"
    env.close()


def test_paired_renders_follow_the_state_and_equal_the_target_for_the_same_split():
    env = paired_hopper("test", "test")
    env.reset(seed=1)
    for _ in range(3):
        _, _, _, _, info = env.step(env.action_space.sample())
    assert np.array_equal(info[PAIRED_KEY], env.render()), "same split, same seed: identical frames"
    env.close()

    env = paired_hopper("test", "train")
    _, info = env.reset(seed=1)
    first = info[PAIRED_KEY]
    assert not np.array_equal(first, env.render())
    _, _, _, _, info = env.step(env.action_space.sample())
    assert not np.array_equal(first, info[PAIRED_KEY]), "the paired frame moves with the state and the step"
    env.close()


def test_paired_renders_need_distractors():
    with pytest.raises(ValueError, match="DistractorWrapper"):
        PairedRenders(gym.make("Hopper-v5"))


def test_paired_renders_through_make_env_with_action_repeat():
    """Outermost around a full env: the pixel observation is the target frame; with the test split as source
    too and the same seed, the paired frame equals it after every (repeated) step."""
    env = make_env(
        "mujoco/Hopper-v5",
        obs_mode="pixels",
        image_size=SIZE,
        action_repeat=2,
        distractors="test",
        seed=0,
        wrappers=[functools.partial(PairedRenders, source_split="test", seed=0)],
    )
    observation, info = env.reset(seed=0)
    for _ in range(2):
        assert np.array_equal(info[PAIRED_KEY], observation)
        observation, _, _, _, info = env.step(env.action_space.sample())
    assert env.target.elapsed_steps == 4
    env.close()
