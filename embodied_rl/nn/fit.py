"""One supervised fit loop for learned labellers and reward models (inverse dynamics, preference reward models).

The model-specific parts stay with the model: the caller gives the loss of a batch of example indices and,
optionally, a validation function returning a dict of metrics. `fit` does the rest: seeded minibatches, Adam,
validation every `eval_every` updates (and after the last one), best weights on a named metric (lower is
better) restored at the end, optional early stopping, a tqdm bar, and logging on the fit's own step axis.
`split_validation` holds out whole trajectories, so no trajectory's examples are on both sides of the split.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn
from tqdm import trange

from embodied_rl.validation import check_ranges

Item = TypeVar("Item")


def split_validation(items: Sequence[Item], val_fraction: float, seed: int) -> tuple[list[Item], list[Item]]:
    """Hold out round(val_fraction * N) of the N items (trajectories; at least 1 when N >= 2 and val_fraction > 0,
    and never all of them), drawn uniformly at random. Returns (train, validation), each in the input order."""
    n = len(items)
    num_val = 0 if n < 2 or val_fraction <= 0 else min(n - 1, max(1, int(math.floor(val_fraction * n + 0.5))))
    val_positions = set(np.random.default_rng(seed).choice(n, size=num_val, replace=False).tolist())
    train = [item for i, item in enumerate(items) if i not in val_positions]
    return train, [item for i, item in enumerate(items) if i in val_positions]


@dataclass
class FitSettings:
    """The loop's settings; a model's config (e.g. `IDMConfig`) builds one from its own fields."""

    steps: int  # optimizer updates
    batch_size: int  # examples per minibatch (per ensemble member when `fit` gets `ensemble_size`)
    lr: float = 1e-3  # Adam, unless `fit` is given its own optimizer
    eval_every: int = 1_000  # validation every N updates (and after the last one)
    select_metric: str = "loss"  # key of the validation metrics whose best (lowest) weights are kept
    patience: int = 0  # stop after this many validations without improvement; 0: never stop early
    progress: bool = False  # tqdm progress bar

    def __post_init__(self) -> None:
        ranges = {**dict.fromkeys(("steps", "batch_size", "eval_every"), ">= 1"), "lr": "> 0", "patience": ">= 0"}
        check_ranges("fit settings", vars(self), ranges)

    @classmethod
    def from_config(cls, config: Any) -> FitSettings:
        """The fit settings of a model's config that has these fields under the same names (e.g. `IDMConfig`)."""
        return cls(**{f.name: getattr(config, f.name) for f in fields(cls)})


@dataclass
class FitReport:
    """Curves and model selection of one fit (numbers are floats, ready to log or save)."""

    eval_steps: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)  # mean training loss since the previous evaluation
    val_metrics: dict[str, list[float]] = field(default_factory=dict)  # metric name -> value at each eval step
    best_step: int = 0  # update whose weights were returned (the last one when there is no validation)
    best_metrics: dict[str, float] = field(default_factory=dict)  # validation metrics at best_step
    stopped_early: bool = False


def fit(
    model: nn.Module,
    batch_loss: Callable[[torch.Tensor], torch.Tensor],
    num_examples: int,
    settings: FitSettings,
    validate: Callable[[], dict[str, float]] | None = None,
    *,
    ensemble_size: int | None = None,
    seed: int = 0,
    optimizer: torch.optim.Optimizer | None = None,
    logger: Any = None,
    log_prefix: str = "fit",
    loss_name: str = "loss",
    desc: str = "fit",
) -> FitReport:
    """Train `model` for `settings.steps` updates on minibatches of example indices drawn uniformly (with
    replacement) from range(num_examples) by a torch.Generator seeded with `seed`, on the model's device.

    `batch_loss(indices)` gets (B,) indices, or (E, B) with `ensemble_size=E` (each member its own minibatch),
    and returns a loss: a scalar, or one independent loss per member (E,). The gradient is that of their sum
    and the logged training loss is their mean. `validate()` (optional) returns a dict of metrics; it is called
    in eval mode, without gradients, every `settings.eval_every` updates and after the last one. The weights at
    the lowest `settings.select_metric` are restored at the end; without `validate` the last weights are kept.
    `logger` (optional): an object with `log(metrics, step, prefix)`, given `train_<loss_name>` and
    `val_<metric>` on the fit's own step axis (the update count) under `log_prefix`.
    """
    device = next(model.parameters()).device
    optimizer = optimizer if optimizer is not None else torch.optim.Adam(model.parameters(), lr=settings.lr)
    generator = torch.Generator(device).manual_seed(seed)
    batch_shape = (settings.batch_size,) if ensemble_size is None else (ensemble_size, settings.batch_size)
    report = FitReport()
    best_value, best_state, evals_without_improvement = math.inf, None, 0
    running_loss, updates_since_eval = torch.zeros((), device=device), 0

    bar = trange(1, settings.steps + 1, desc=desc, disable=not settings.progress, leave=False)
    for step in bar:
        indices = torch.randint(num_examples, batch_shape, generator=generator, device=device)
        loss = batch_loss(indices)  # () or (E,)
        optimizer.zero_grad(set_to_none=True)
        loss.sum().backward()  # independent members: the sum gives each its own gradient
        optimizer.step()
        running_loss += loss.detach().mean()  # stays on the device: no host sync between evaluations
        updates_since_eval += 1
        if step % settings.eval_every and step != settings.steps:
            continue

        metrics = {f"train_{loss_name}": float(running_loss) / updates_since_eval}
        running_loss.zero_()
        updates_since_eval = 0
        report.eval_steps.append(step)
        report.train_loss.append(metrics[f"train_{loss_name}"])
        if validate is not None:
            val_metrics = _validate(model, validate)
            metrics.update({f"val_{name}": value for name, value in val_metrics.items()})
            for name, value in val_metrics.items():
                report.val_metrics.setdefault(name, []).append(value)
            if settings.select_metric not in val_metrics:
                known = ", ".join(val_metrics)
                raise KeyError(f"select_metric {settings.select_metric!r} is not a validation metric ({known})")
            if val_metrics[settings.select_metric] < best_value:
                best_value = val_metrics[settings.select_metric]
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                report.best_step, report.best_metrics = step, dict(val_metrics)
                evals_without_improvement = 0
            else:
                evals_without_improvement += 1
        bar.set_postfix({k: f"{v:.4g}" for k, v in metrics.items()})
        if logger is not None:
            logger.log(metrics, step=step, prefix=log_prefix)
        if settings.patience and evals_without_improvement >= settings.patience:
            report.stopped_early = step != settings.steps
            break
    bar.close()

    if best_state is not None:
        model.load_state_dict(best_state)  # model selection: the best validation weights, not the last ones
    else:
        report.best_step = report.eval_steps[-1]
    return report


@torch.no_grad()
def _validate(model: nn.Module, validate: Callable[[], dict[str, float]]) -> dict[str, float]:
    was_training = model.training
    model.eval()
    metrics = validate()
    model.train(was_training)
    return metrics
