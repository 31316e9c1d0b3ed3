"""RePo's reward-free test-time adaptation of the encoder to shifted distractors.

Zhu, Simchowitz, Gadipudi, Gupta, "RePo: Resilient Model-Based Reinforcement Learning by Regularizing
Posterior Predictability", NeurIPS 2023 (arXiv:2309.00082), the test-time adaptation section; the
hyperparameters follow the authors' released adaptation script (``experiments/adapt_repo.py`` of
zchuning/repo, calibration mode "simple_pair", alignment mode "support"). This module is written from
the paper and that script's settings, not copied from it.

The world model, actor and critic trained on the source distractors stay frozen; only the encoder
e_phi (pixels -> embeddings) trains, on observations of the target environment, without rewards. A
frozen copy e_src of the source encoder gives the source embeddings. Equations numbered (A1)-(A7)
here (the paper's own numbering is not reproduced); z_s = e_src(o_s), o_s from the source replay
buffer, z_t = e_phi(o_t), o_t from the target environment.

Support alignment: the target embeddings must lie where source embeddings lie, not follow their
density (the target policy visits other states than the source data). A density ratio w(z_s) >= 0
reweights the source so that only the support has to match, and the divergence is Pearson chi^2 in
its variational (f-GAN, Nowozin et al. 2016) form, conjugate f*(t) = t + t^2 / 4:

    (A1)  D(w p_s || p_t) = max_d  E_{z_s}[ w(z_s) d(z_s) ] - E_{z_t}[ d(z_t) + d(z_t)^2 / 4 ]
    (A2)  min_phi  min_{w >= 0, E_{z_s}[w] = 1}  D(w p_s || p_t)

The discriminator d is a variational discriminator bottleneck (VDB, Peng et al. 2019, "Variational
Discriminator Bottleneck", ICLR): an encoder q(c | z) = N(mu(z), sigma(z)^2) to a code c, a head
d = h(c), and the mutual information between inputs and code bounded by I_c through the KL of the
code to the prior N(0, I), enforced by a dual variable beta >= 0; a zero-centred gradient penalty on
the source inputs (Mescheder et al. 2018, R1) steadies it further:

    (A3)  L_d = -E_{z_s}[ w d(z_s) ] + E_{z_t}[ d(z_t) + d(z_t)^2 / 4 ]
                + beta * ( 1/2 (E_{z_s} KL(q(c|z_s) || N(0, I)) + E_{z_t} KL(q(c|z_t) || N(0, I))) - I_c )
                + lambda_gp * E_{z_s} || grad_{z_s} d(z_s) ||^2
    (A4)  beta <- max(0, beta + lr_beta * (KL - I_c))                    (projected dual ascent)

The encoder minimises the target half of (A1); the density ratio w = exp(g(z_s)) minimises (A1) over
the reweighting, its batch mean held at one by the Lagrange multiplier u (dual ascent on u):

    (A5)  L_align(phi) = -E_{z_t}[ d(z_t) + d(z_t)^2 / 4 ]
    (A6)  L_w = E_{z_s}[ w(z_s) d(z_s) ] + u * (E_{z_s}[w] - 1),     L_u = -u * (E_{z_s}[w] - 1)

Calibration: paired observations, one state rendered with source distractors (o_s^pair) and with
target distractors (o_t^pair), pull the target embedding to the frozen source embedding:

    (A7)  L_cal(phi) = 1/2 * mean_{batch, dims} ( e_phi(o_t^pair) - e_src(o_s^pair) )^2

and the encoder's loss is alignment_weight * L_align + calibration_weight * L_cal.

One `update` = discriminator step (A3) and dual step (A4), then encoder step (A5, A7) against the
updated discriminator, then density-ratio step and its dual step (A6); all from one batch.

Deviations from the anchor, all deliberate:
- (A7) is the anchor's unit-variance Gaussian negative log-likelihood of the source embedding under the
  target one, minus its constant 1/2 log(2 pi): the same gradient, and zero when the embeddings agree.
- log w is bounded softly, log w = b tanh(g / b) with b = log_ratio_bound (the anchor's log w = g is
  free), so a runaway density ratio cannot overflow.
- The batch is of single frames, any leading shape (the anchor samples 50 sequences of 50 steps and
  flattens them: `batch_size = 2500` reproduces its number of embeddings per update).
- Optional gradient-norm clipping of the encoder (`max_grad_norm`, off by default as in the anchor).
- The anchor's source encoder also acts in the target environment while paired data are collected; here
  the paired observations come from `PairedRenders` (embodied_rl.envs.paired_renders), collected by the
  caller.
Not included: the anchor's dynamics-consistency variant ("pair" mode, through an inverse-dynamics or
disagreement model) and plain distribution alignment (a JS-GAN discriminator without the density ratio).

Speed: `update` has no host sync and returns detached tensors.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from embodied_rl.agents.common import check_state_keys, load_optimizer_state, make_adam
from embodied_rl.devices import resolve_device
from embodied_rl.nn import mlp
from embodied_rl.validation import check_ranges

# Allowed values of the settings (embodied_rl.validation.in_range)
ADAPTATION_RANGES = {
    **dict.fromkeys(("steps", "batch_size", "paired_batch_size", "discriminator_latent_dim"), ">= 1"),
    **dict.fromkeys(("encoder_lr", "discriminator_lr", "density_ratio_lr", "vdb_dual_lr", "ratio_dual_lr"), "> 0"),
    **dict.fromkeys(("information_constraint", "vdb_init_dual", "gradient_penalty"), ">= 0"),
    **dict.fromkeys(("alignment_weight", "calibration_weight"), ">= 0"),
    "log_ratio_bound": "> 0",
    "max_grad_norm": "None or > 0",
}


@dataclass
class AdaptationConfig:
    """Settings of RePo's test-time encoder adaptation; defaults are the authors' adaptation script's
    (``experiments/adapt_repo.py`` of zchuning/repo), named after its keys where they differ."""

    steps: int = 10_000  # encoder updates; anchor: 50k env steps x 100 updates per 500 steps (budget)
    batch_size: int = 2_500  # source and target frames per update; anchor: 50 sequences x 50 steps
    paired_batch_size: int = 2_500  # paired frames per update for calibration; anchor: as batch_size
    encoder_lr: float = 3e-4  # Adam; anchor: model_lr
    discriminator_lr: float = 3e-4  # Adam; anchor: f_lr
    discriminator_hidden_dims: tuple[int, ...] = (256, 256, 256, 256)  # LeakyReLU; anchor: 4 x f_hidden_size
    discriminator_latent_dim: int = 64  # VDB code size; anchor: f_latent_size
    information_constraint: float = 0.1  # I_c, bound on the VDB code's KL to N(0, I); anchor: f_target_kl
    vdb_dual_lr: float = 5e-3  # step of the projected dual ascent on beta (A4); anchor: VDB beta_lr
    vdb_init_dual: float = 0.1  # initial beta; anchor: VDB init_beta
    gradient_penalty: float = 1.0  # lambda_gp, zero-centred penalty on source inputs; anchor: VDB gp_weight
    density_ratio_hidden_dims: tuple[int, ...] = (256, 256, 256, 256)  # LeakyReLU (ours); anchor: 4 x 256
    density_ratio_lr: float = 5e-5  # Adam on w's network; anchor: tau_lr
    ratio_dual_lr: float = 5e-3  # Adam on the multiplier u of E[w] = 1; anchor: u_lr
    ratio_init_dual: float = 1e-4  # initial u; anchor: init_u
    alignment_weight: float = 1.0  # anchor: aln_coef
    calibration_weight: float = 1.0  # anchor: calib_coef
    log_ratio_bound: float = 10.0  # |log w| < this, softly (ours; the anchor leaves log w free)
    max_grad_norm: float | None = None  # clip the encoder's gradient norm (ours; off in the anchor)

    def __post_init__(self) -> None:
        self.discriminator_hidden_dims = tuple(int(h) for h in self.discriminator_hidden_dims)
        self.density_ratio_hidden_dims = tuple(int(h) for h in self.density_ratio_hidden_dims)
        check_ranges("adaptation settings", vars(self), ADAPTATION_RANGES)


class VDBDiscriminator(nn.Module):
    """Embedding (..., E) -> score d (...,), through a Gaussian code N(mu, sigma^2) of `latent_dim` dims
    (Peng et al. 2019): sampled by reparameterisation, or its mean with `sample=False`."""

    def __init__(self, input_dim: int, hidden_dims: Sequence[int], latent_dim: int):
        super().__init__()
        self.latent_dim = latent_dim
        self.encoder = mlp(input_dim, hidden_dims, 2 * latent_dim, activation="leaky_relu")
        self.head = nn.Sequential(nn.LeakyReLU(), nn.Linear(latent_dim, 1))

    def forward(self, z: torch.Tensor, sample: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Score (...,) and the code's KL to N(0, I) (...,)."""
        mean, log_std = self.encoder(z).chunk(2, dim=-1)  # (..., L) each
        code = mean + log_std.exp() * torch.randn_like(mean) if sample else mean
        kl = 0.5 * (mean.square() + (2 * log_std).exp() - 1.0 - 2 * log_std).sum(-1)
        return self.head(code).squeeze(-1), kl


class DensityRatio(nn.Module):
    """Source embedding (..., E) -> w(z) = exp(b * tanh(g(z) / b)) > 0 (...,): log w ~ g(z), softly bounded by
    b = `log_bound` (a hard clamp would leave a saturated ratio with no gradient, stuck for good)."""

    def __init__(self, input_dim: int, hidden_dims: Sequence[int], log_bound: float):
        super().__init__()
        self.net = mlp(input_dim, hidden_dims, 1, activation="leaky_relu")
        self.log_bound = log_bound

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return (self.log_bound * torch.tanh(self.net(z).squeeze(-1) / self.log_bound)).exp()


def pearson_conjugate(d: torch.Tensor) -> torch.Tensor:
    """f*(t) = t + t^2 / 4, the convex conjugate of Pearson chi^2's f(u) = (u - 1)^2 (Nowozin et al. 2016)."""
    return d + 0.25 * d.square()


class EncoderAdaptation:
    """Adapts `encoder` to a shifted environment with everything else of the agent frozen (see module docstring).

    `EncoderAdaptation(encoder, source_encoder=None, cfg=AdaptationConfig(), device="cpu")`: `encoder` is the
    agent's own module (trained in place, e.g. `agent.encoder`); `source_encoder` the frozen source encoder,
    by default a copy of `encoder` taken now (so build this before any adaptation). The encoder maps
    observations (..., *obs_shape), e.g. uint8 (..., 64, 64, 3), to embeddings (..., E).

    `update(source_obs, target_obs, paired_source=None, paired_target=None)` does one step of every part and
    returns a dict of detached scalar tensors; `adapt(sample)` runs `cfg.steps` of them.
    """

    def __init__(
        self,
        encoder: nn.Module,
        source_encoder: nn.Module | None = None,
        cfg: AdaptationConfig | Mapping[str, Any] | None = None,
        device: str | torch.device = "cpu",
    ):
        cfg = AdaptationConfig() if cfg is None else cfg
        self.cfg = cfg if isinstance(cfg, AdaptationConfig) else AdaptationConfig(**cfg)
        self.device = resolve_device(device)
        self.encoder = encoder.to(self.device)
        source = copy.deepcopy(encoder) if source_encoder is None else source_encoder
        self.source_encoder = source.to(self.device).eval().requires_grad_(False)
        self.embedding_dim: int | None = None
        self.discriminator: VDBDiscriminator | None = None  # built at the first update, when E is known
        self.density_ratio: DensityRatio | None = None
        self.encoder_optimizer = make_adam(self.encoder.parameters(), self.cfg.encoder_lr)
        self.vdb_dual = torch.tensor(float(self.cfg.vdb_init_dual), device=self.device)  # beta >= 0 (A4)
        self.ratio_dual = nn.Parameter(torch.tensor(float(self.cfg.ratio_init_dual), device=self.device))  # u
        self.ratio_dual_optimizer = make_adam([self.ratio_dual], self.cfg.ratio_dual_lr)
        self.num_updates = 0

    # ----------------------------------------------------------------------------------------------------
    # Networks, built lazily from the embedding size
    # ----------------------------------------------------------------------------------------------------

    def build(self, embedding_dim: int) -> None:
        """Create the discriminator, the density ratio and their optimisers for embeddings of `embedding_dim`."""
        cfg = self.cfg
        self.embedding_dim = int(embedding_dim)
        self.discriminator = VDBDiscriminator(
            self.embedding_dim, cfg.discriminator_hidden_dims, cfg.discriminator_latent_dim
        ).to(self.device)
        self.density_ratio = DensityRatio(self.embedding_dim, cfg.density_ratio_hidden_dims, cfg.log_ratio_bound).to(
            self.device
        )
        self.discriminator_optimizer = make_adam(self.discriminator.parameters(), cfg.discriminator_lr)
        self.density_ratio_optimizer = make_adam(self.density_ratio.parameters(), cfg.density_ratio_lr)

    def _embed(self, encoder: nn.Module, obs: Any) -> torch.Tensor:
        """Observations (..., *obs_shape) -> embeddings flattened to (N, E)."""
        obs = torch.as_tensor(obs, device=self.device)
        z = encoder(obs)
        return z.reshape(-1, z.shape[-1])

    # ----------------------------------------------------------------------------------------------------
    # One update
    # ----------------------------------------------------------------------------------------------------

    def update(
        self,
        source_obs: Any,
        target_obs: Any,
        paired_source: Any | None = None,
        paired_target: Any | None = None,
    ) -> dict[str, torch.Tensor]:
        """One adaptation step on source frames (source replay), target frames (shifted env) and, optionally,
        paired frames (the same states with source and target distractors). Returns detached scalars."""
        if (paired_source is None) != (paired_target is None):
            raise ValueError("give both paired_source and paired_target, or neither")
        cfg = self.cfg
        with torch.no_grad():
            z_s = self._embed(self.source_encoder, source_obs)  # (N_s, E), frozen
        z_t = self._embed(self.encoder, target_obs)  # (N_t, E), trains the encoder
        if self.discriminator is None:
            self.build(z_s.shape[-1])
        metrics: dict[str, torch.Tensor] = {}

        # Discriminator step (A3): tell reweighted source embeddings from target ones.
        with torch.no_grad():
            w = self.density_ratio(z_s)  # (N_s,)
        z_s_input = z_s.clone().requires_grad_(True)  # for the gradient penalty
        d_s, kl_s = self.discriminator(z_s_input)
        d_t, kl_t = self.discriminator(z_t.detach())
        chi2_source = (w * d_s).mean()
        chi2_target = pearson_conjugate(d_t).mean()
        kl = 0.5 * (kl_s.mean() + kl_t.mean())
        (grad_s,) = torch.autograd.grad(d_s.sum(), z_s_input, create_graph=True)
        penalty = grad_s.square().sum(-1).mean()
        kl_violation = kl - cfg.information_constraint
        discriminator_loss = -chi2_source + chi2_target + self.vdb_dual * kl_violation + cfg.gradient_penalty * penalty
        self.discriminator_optimizer.zero_grad(set_to_none=True)
        discriminator_loss.backward()
        self.discriminator_optimizer.step()

        # Dual step on beta (A4): projected gradient ascent on the information constraint.
        with torch.no_grad():
            self.vdb_dual.copy_((self.vdb_dual + cfg.vdb_dual_lr * kl_violation).clamp_min(0.0))

        # Encoder step (A5, A7) against the updated discriminator; the discriminator's weights get no step.
        d_t, _ = self.discriminator(z_t)
        alignment_loss = -pearson_conjugate(d_t).mean()
        encoder_loss = cfg.alignment_weight * alignment_loss
        if paired_source is not None:
            with torch.no_grad():
                paired_z_s = self._embed(self.source_encoder, paired_source)  # (N_p, E)
            paired_z_t = self._embed(self.encoder, paired_target)  # (N_p, E)
            calibration_loss = 0.5 * (paired_z_t - paired_z_s).square().mean()
            encoder_loss = encoder_loss + cfg.calibration_weight * calibration_loss
            metrics["calibration_loss"] = calibration_loss.detach()
        self.encoder_optimizer.zero_grad(set_to_none=True)
        encoder_loss.backward()
        if cfg.max_grad_norm is not None:
            metrics["encoder_grad_norm"] = nn.utils.clip_grad_norm_(self.encoder.parameters(), cfg.max_grad_norm)
        self.encoder_optimizer.step()

        # Density-ratio step (A6): minimise the reweighted source term, E[w] = 1 held by the multiplier u.
        with torch.no_grad():
            d_s, _ = self.discriminator(z_s)
        w = self.density_ratio(z_s)  # (N_s,)
        ratio_violation = w.mean() - 1.0
        density_ratio_loss = (w * d_s).mean() + self.ratio_dual.detach() * ratio_violation
        self.density_ratio_optimizer.zero_grad(set_to_none=True)
        density_ratio_loss.backward()
        self.density_ratio_optimizer.step()
        ratio_dual_loss = -self.ratio_dual * ratio_violation.detach()
        self.ratio_dual_optimizer.zero_grad(set_to_none=True)
        ratio_dual_loss.backward()
        self.ratio_dual_optimizer.step()
        self.discriminator_optimizer.zero_grad(set_to_none=True)  # drop the grads the encoder step left there

        self.num_updates += 1
        metrics.update(
            discriminator_loss=discriminator_loss.detach(),
            discriminator_source=chi2_source.detach(),
            discriminator_target=chi2_target.detach(),
            discriminator_kl=kl.detach(),
            gradient_penalty=penalty.detach(),
            vdb_dual=self.vdb_dual.clone(),
            alignment_loss=alignment_loss.detach(),
            encoder_loss=encoder_loss.detach(),
            density_ratio_loss=density_ratio_loss.detach(),
            density_ratio_mean=w.mean().detach(),
            ratio_dual=self.ratio_dual.detach().clone(),
        )
        return metrics

    def adapt(
        self,
        sample: Callable[[], Mapping[str, Any]],
        steps: int | None = None,
        log: Callable[[int, dict[str, torch.Tensor]], None] | None = None,
    ) -> dict[str, torch.Tensor]:
        """`steps` (default `cfg.steps`) updates on batches from `sample()`, a mapping with `source_obs`,
        `target_obs` and optionally `paired_source`, `paired_target` (the caller's buffers, sized by
        `cfg.batch_size` and `cfg.paired_batch_size`); `log(update_index, metrics)` after each. Returns the
        last update's metrics."""
        metrics: dict[str, torch.Tensor] = {}
        for _ in range(self.cfg.steps if steps is None else steps):
            metrics = self.update(**sample())
            if log is not None:
                log(self.num_updates, metrics)
        return metrics

    # ----------------------------------------------------------------------------------------------------
    # Checkpoints
    # ----------------------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        built = self.discriminator is not None
        return {
            "config": asdict(self.cfg),
            "embedding_dim": self.embedding_dim,
            "encoder": self.encoder.state_dict(),
            "source_encoder": self.source_encoder.state_dict(),
            "discriminator": self.discriminator.state_dict() if built else None,
            "density_ratio": self.density_ratio.state_dict() if built else None,
            "encoder_optimizer": self.encoder_optimizer.state_dict(),
            "discriminator_optimizer": self.discriminator_optimizer.state_dict() if built else None,
            "density_ratio_optimizer": self.density_ratio_optimizer.state_dict() if built else None,
            "ratio_dual_optimizer": self.ratio_dual_optimizer.state_dict(),
            "vdb_dual": self.vdb_dual.clone(),
            "ratio_dual": self.ratio_dual.detach().clone(),
            "num_updates": self.num_updates,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        check_state_keys(self, state)
        self.encoder.load_state_dict(state["encoder"])
        self.source_encoder.load_state_dict(state["source_encoder"])
        if state["embedding_dim"] is not None:
            if self.embedding_dim != state["embedding_dim"]:
                self.build(state["embedding_dim"])
            self.discriminator.load_state_dict(state["discriminator"])
            self.density_ratio.load_state_dict(state["density_ratio"])
            load_optimizer_state(self.discriminator_optimizer, copy.deepcopy(state["discriminator_optimizer"]))
            load_optimizer_state(self.density_ratio_optimizer, copy.deepcopy(state["density_ratio_optimizer"]))
        load_optimizer_state(self.encoder_optimizer, copy.deepcopy(state["encoder_optimizer"]))
        load_optimizer_state(self.ratio_dual_optimizer, copy.deepcopy(state["ratio_dual_optimizer"]))
        with torch.no_grad():
            self.vdb_dual.copy_(state["vdb_dual"])
            self.ratio_dual.copy_(state["ratio_dual"])
        self.num_updates = int(state["num_updates"])


__all__ = [
    "AdaptationConfig",
    "DensityRatio",
    "EncoderAdaptation",
    "VDBDiscriminator",
    "pearson_conjugate",
]
