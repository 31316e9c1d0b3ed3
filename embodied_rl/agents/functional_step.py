"""A training step (gradients, optional clipping, Adam, Polyak) behind one interface, `step(*inputs) -> (aux,
grad_norm)`: `EagerStep`, the usual PyTorch step, and `FunctionalStep`, the whole step as one function of tensors
for `torch.compile`. `training_step(..., compile=...)` picks one; every agent builds its steps with it.

The usual step runs a compiled forward, then `loss.backward()`, one `Adam.step()` per network and a Polyak
update, each called from Python. On a small model on a CPU those calls cost about as much as all the
non-matrix arithmetic: for IQL with 2x256 networks on 2 cores, ~2 ms of Python around ~4 ms of matrix products
per update. `FunctionalStep` instead takes the gradients with `torch.func.grad` over `torch.func.functional_call`,
writes out Adam's update (Kingma & Ba 2015, Algorithm 1, with the arithmetic of `torch.optim.Adam`) and the
Polyak average, all in one function that `torch.compile` turns into one graph with fused elementwise kernels.

The `torch.optim.Adam` objects keep owning the moment estimates and step counts (their state is created here
on first use exactly as Adam creates it), so checkpoints, `load_state_dict` and the eager path stay unchanged,
and a checkpoint moves freely between a compiled and an eager agent.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, grad

from embodied_rl.agents.common import soft_update_


class _Holder(nn.Module):
    """The trained modules as children of one module, so that one `functional_call` swaps all their parameters;
    its forward is the loss function, which reaches the same module objects through the agent."""

    def __init__(self, modules: Sequence[nn.Module], loss_fn: Callable[..., Any]):
        super().__init__()
        self.trained = nn.ModuleList(modules)
        self.loss_fn = loss_fn

    def forward(self, *inputs: torch.Tensor) -> Any:
        return self.loss_fn(*inputs)


class FunctionalStep:
    """`step(*inputs) -> (aux, grad_norm)`: one optimisation step of `pairs` (module, its Adam optimiser) on the
    loss `loss_fn(*inputs) -> (loss, aux)`, then `target <- lerp(target, source, tau)` for each of `polyak`.

    `loss_fn` uses the modules as usual (e.g. an agent's method reading `self.critic`); the modules' parameters
    are swapped for differentiable ones while it runs. `max_grad_norm` clips the gradient of the first pair's
    parameters to that total 2-norm as `nn.utils.clip_grad_norm_` does, and `grad_norm` is its norm before
    clipping (None without clipping). Only plain Adam (no weight decay, amsgrad or maximize) is supported.
    `compile=False` runs the same function eagerly (slower than the usual step; for tests).
    """

    def __init__(
        self,
        pairs: Sequence[tuple[nn.Module, torch.optim.Adam]],
        loss_fn: Callable[..., tuple[torch.Tensor, dict[str, torch.Tensor]]],
        polyak: Sequence[tuple[nn.Module, nn.Module, float]] = (),
        max_grad_norm: float | None = None,
        compile: bool = True,
        compile_mode: str | None = None,
    ):
        self.holder = _Holder([module for module, _ in pairs], loss_fn)
        trained_ids = {id(m) for module, _ in pairs for m in module.modules()}
        name_of = {id(p): name for name, p in self.holder.named_parameters()}
        # One entry per trained parameter: (name, parameter, optimiser, param-group index).
        self.entries: list[tuple[str, nn.Parameter, torch.optim.Adam, int]] = []
        for module, optimizer in pairs:
            owned = {id(p) for p in module.parameters()}
            for index, group in enumerate(optimizer.param_groups):
                if group["weight_decay"] or group["amsgrad"] or group["maximize"]:
                    raise ValueError("FunctionalStep supports plain Adam only (no weight_decay, amsgrad, maximize)")
                for p in group["params"]:
                    if id(p) not in owned:
                        raise ValueError("each optimiser must hold parameters of its own module only")
                    self.entries.append((name_of[id(p)], p, optimizer, index))
        if len(self.entries) != len(name_of):
            raise ValueError("every parameter of the trained modules needs an optimiser")
        first = {id(p) for p in pairs[0][0].parameters()}
        self.clipped = [name for name, p, _, _ in self.entries if id(p) in first]
        self.max_grad_norm = max_grad_norm
        # Polyak pairs: (target, source, tau, names of the source's parameters if it is trained here, else None).
        # Trained sources are read from the step's own parameters so that no tensor enters the graph twice.
        self.polyak = [
            (
                target,
                source,
                float(tau),
                [name_of[id(p)] for p in source.parameters()] if id(source) in trained_ids else None,
            )
            for target, source, tau in polyak
        ]
        self._step = torch.compile(self._pure_step, mode=compile_mode) if compile else self._pure_step

    def _adam_state(self, p: nn.Parameter, optimizer: torch.optim.Adam) -> dict[str, torch.Tensor]:
        """Adam's per-parameter state, created as fused `torch.optim.Adam` creates it if missing."""
        state = optimizer.state[p]
        if not state:
            state["step"] = torch.zeros((), dtype=torch.float32, device=p.device)
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return state

    def __call__(self, *inputs: torch.Tensor) -> tuple[Any, torch.Tensor | None]:
        names, params, steps, exp_avgs, exp_avg_sqs, hyper = [], [], [], [], [], []
        for name, p, optimizer, index in self.entries:  # gathered per call: load_state_dict replaces state
            state = self._adam_state(p, optimizer)
            group = optimizer.param_groups[index]
            names.append(name)
            params.append(p.detach())
            steps.append(state["step"])
            exp_avgs.append(state["exp_avg"])
            exp_avg_sqs.append(state["exp_avg_sq"])
            hyper.append((group["lr"], *group["betas"], group["eps"]))
        polyak = [
            (
                [t.detach() for t in target.parameters()],
                source_names or [p.detach() for p in source.parameters()],
                tau,
            )
            for target, source, tau, source_names in self.polyak
        ]
        return self._step(names, params, steps, exp_avgs, exp_avg_sqs, hyper, polyak, inputs)

    def _pure_step(self, names, params, steps, exp_avgs, exp_avg_sqs, hyper, polyak, inputs) -> tuple[Any, Any]:
        def loss(parameters: dict[str, torch.Tensor]):
            return functional_call(self.holder, parameters, inputs)

        grads, aux = grad(loss, has_aux=True)(dict(zip(names, params)))
        grad_norm = None
        with torch.no_grad():
            if self.max_grad_norm is not None:
                grad_norm = torch.linalg.vector_norm(
                    torch.stack([torch.linalg.vector_norm(grads[name]) for name in self.clipped])
                )
                scale = (self.max_grad_norm / (grad_norm + 1e-6)).clamp(max=1.0)
                grads = {name: g * scale if name in self.clipped else g for name, g in grads.items()}
            for name, p, step, m, v, (lr, beta1, beta2, eps) in zip(names, params, steps, exp_avgs, exp_avg_sqs, hyper):
                g = grads[name]
                step.add_(1)
                m.lerp_(g, 1.0 - beta1)  # first moment
                v.mul_(beta2).addcmul_(g, g, value=1.0 - beta2)  # second moment
                step_size = lr / (1.0 - beta1**step)  # bias corrections
                denom = v.sqrt() / (1.0 - beta2**step).sqrt() + eps
                p.sub_(step_size * m / denom)
            trained = dict(zip(names, params))
            for targets, sources, tau in polyak:  # sources: tensors, or names of trained parameters
                sources = [trained[s] if isinstance(s, str) else s for s in sources]
                torch._foreach_lerp_(targets, sources, tau)
        return aux, grad_norm


class EagerStep:
    """The usual step behind `FunctionalStep`'s interface: `loss_fn(*inputs) -> (loss, aux)`, `loss.backward()`,
    clipping of the first pair's gradients to `max_grad_norm` (`nn.utils.clip_grad_norm_`; `grad_norm` is their
    norm before clipping, None without clipping), one `optimizer.step()` per pair, then the Polyak updates."""

    def __init__(
        self,
        pairs: Sequence[tuple[nn.Module, torch.optim.Optimizer]],
        loss_fn: Callable[..., tuple[torch.Tensor, Any]],
        polyak: Sequence[tuple[nn.Module, nn.Module, float]] = (),
        max_grad_norm: float | None = None,
    ):
        self.optimizers = [optimizer for _, optimizer in pairs]
        self.clipped = list(pairs[0][0].parameters())
        self.loss_fn, self.polyak, self.max_grad_norm = loss_fn, list(polyak), max_grad_norm

    def __call__(self, *inputs: torch.Tensor) -> tuple[Any, torch.Tensor | None]:
        loss, aux = self.loss_fn(*inputs)
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = None
        if self.max_grad_norm is not None:
            grad_norm = nn.utils.clip_grad_norm_(self.clipped, self.max_grad_norm).detach()
        for optimizer in self.optimizers:
            optimizer.step()
        for target, source, tau in self.polyak:
            soft_update_(target, source, tau)
        return aux, grad_norm


def training_step(
    pairs: Sequence[tuple[nn.Module, torch.optim.Optimizer]],
    loss_fn: Callable[..., tuple[torch.Tensor, Any]],
    polyak: Sequence[tuple[nn.Module, nn.Module, float]] = (),
    max_grad_norm: float | None = None,
    compile: bool = False,
    compile_mode: str | None = None,
) -> EagerStep | FunctionalStep:
    """`FunctionalStep` (one compiled graph) when `compile`, else `EagerStep`; the same arguments and results."""
    if compile:
        return FunctionalStep(pairs, loss_fn, polyak, max_grad_norm, compile_mode=compile_mode)
    return EagerStep(pairs, loss_fn, polyak, max_grad_norm)
