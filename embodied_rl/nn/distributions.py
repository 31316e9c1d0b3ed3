"""The tanh-squashed diagonal Normal policy distribution of SAC (Haarnoja et al. 2018, Appendix C).

u ~ N(loc, scale^2) elementwise, a = tanh(u) in (-1, 1)^D. By the change of variables,

    log pi(a) = sum_i [ log N(u_i; loc_i, scale_i) - log(1 - tanh(u_i)^2) ],

and the correction is computed without forming 1 - tanh(u)^2 (which rounds to 0 for |u| > ~9 in float32):

    log(1 - tanh(u)^2) = 2 * (log 2 - u - softplus(-2u)).

A plain class rather than a `torch.distributions.Distribution`: no argument validation (which synchronises
with the device) and nothing that gets in the way of `torch.compile`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_LOG_2 = math.log(2.0)


def log_abs_det_tanh_jacobian(pre_tanh: torch.Tensor) -> torch.Tensor:
    """log |d tanh(u) / du| = log(1 - tanh(u)^2), elementwise and stable for any u."""
    return 2.0 * (_LOG_2 - pre_tanh - F.softplus(-2.0 * pre_tanh))


class TanhNormal:
    """Distribution of tanh(u), u ~ N(loc, scale^2), independent over the last (action) dim.

    `loc`, `scale`: (..., D). Log-probabilities are summed over D: (...,).
    """

    def __init__(self, loc: torch.Tensor, scale: torch.Tensor):
        self.loc = loc
        self.scale = scale

    def _log_prob_from_noise(self, noise: torch.Tensor, pre_tanh: torch.Tensor) -> torch.Tensor:
        """log pi(tanh(u)) where u = loc + scale * noise (noise given, so no division by scale)."""
        gaussian = -0.5 * noise.square() - self.scale.log() - _HALF_LOG_2PI
        return (gaussian - log_abs_det_tanh_jacobian(pre_tanh)).sum(-1)

    def rsample_with_log_prob(self) -> tuple[torch.Tensor, torch.Tensor]:
        """A reparameterised sample a = tanh(loc + scale * eps), eps ~ N(0, I), and its log-probability.

        The log-probability uses eps and u directly, never atanh(a), so it stays exact when a rounds to +-1.
        """
        noise = torch.randn_like(self.loc)
        pre_tanh = self.loc + self.scale * noise
        return torch.tanh(pre_tanh), self._log_prob_from_noise(noise, pre_tanh)

    def rsample(self) -> torch.Tensor:
        """A reparameterised sample (gradients flow to loc and scale)."""
        return torch.tanh(self.loc + self.scale * torch.randn_like(self.loc))

    @torch.no_grad()
    def sample(self) -> torch.Tensor:
        return self.rsample()

    def log_prob(self, action: torch.Tensor, pre_tanh: torch.Tensor | None = None, eps: float = 1e-6) -> torch.Tensor:
        """log pi(action), summed over the last dim.

        Pass `pre_tanh` (u with action = tanh(u)) when known; otherwise u = atanh(action), with the action
        clipped to +-(1 - eps) so that actions on the boundary (e.g. from a dataset) stay finite.
        """
        if pre_tanh is None:
            pre_tanh = torch.atanh(action.clamp(-1.0 + eps, 1.0 - eps))
        noise = (pre_tanh - self.loc) / self.scale
        return self._log_prob_from_noise(noise, pre_tanh)

    @property
    def median(self) -> torch.Tensor:
        """tanh(loc): exact median of each coordinate (tanh is monotonic)."""
        return torch.tanh(self.loc)

    @property
    def mode(self) -> torch.Tensor:
        """The deterministic action used for evaluation, tanh(loc) (as in SAC).

        Strictly this is the median; the density's true mode moves towards +-1 when scale is large, and the
        mean tanh(u) has no closed form, so the median stands in for both.
        """
        return self.median
