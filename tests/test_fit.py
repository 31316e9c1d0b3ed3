"""The shared supervised fit loop (embodied_rl.nn.fit): best weights, early stopping, logging axis, determinism,
and the validation split by trajectory. Tiny linear regressions; validation metrics are scripted where a test
needs a known curve."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from embodied_rl.data import Trajectory
from embodied_rl.nn.fit import FitSettings, fit, split_validation


@pytest.fixture(autouse=True)
def few_threads():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the test machine's cores are shared
    yield
    torch.set_num_threads(threads)


class Regression:
    """y = x @ w_true on 64 examples, and a linear model (initialised from `init_seed`) with its minibatch loss."""

    def __init__(self, init_seed: int = 0):
        data_rng = torch.Generator().manual_seed(100)
        self.x = torch.randn(64, 3, generator=data_rng)  # (N, 3)
        self.y = self.x @ torch.tensor([1.0, -2.0, 0.5])  # (N,)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(init_seed)
            self.model = nn.Linear(3, 1)
        self.batches_seen = []  # indices of every minibatch, in order

    def batch_loss(self, idx: torch.Tensor) -> torch.Tensor:
        self.batches_seen.append(idx.clone())
        return (self.model(self.x[idx]).squeeze(-1) - self.y[idx]).square().mean()

    def weights(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}


class ScriptedValidation:
    """Returns the given metric values one evaluation after another, and keeps the weights seen at each one."""

    def __init__(self, task: Regression, values: list[float]):
        self.task, self.values, self.weights_seen = task, list(values), []

    def __call__(self) -> dict[str, float]:
        self.weights_seen.append(self.task.weights())
        return {"error": self.values[len(self.weights_seen) - 1], "other": 0.0}


class Recorder:
    def __init__(self):
        self.calls = []

    def log(self, metrics, step, prefix=""):
        self.calls.append((dict(metrics), step, prefix))


def settings(**overrides) -> FitSettings:
    return FitSettings(**{"steps": 50, "batch_size": 8, "lr": 0.05, "eval_every": 10, **overrides})


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


# ---------------------------------------------------------------- model selection


def test_the_weights_of_the_best_evaluation_are_restored():
    task = Regression()
    validation = ScriptedValidation(task, [3.0, 1.0, 1.0, 2.0, 4.0])  # best at the 2nd evaluation (step 20)
    report = fit(task.model, task.batch_loss, 64, settings(select_metric="error"), validation)

    assert report.eval_steps == [10, 20, 30, 40, 50] and report.best_step == 20
    assert report.best_metrics == {"error": 1.0, "other": 0.0}  # a tie (step 30) is no improvement
    assert report.val_metrics == {"error": [3.0, 1.0, 1.0, 2.0, 4.0], "other": [0.0] * 5}
    assert_same_weights(task.weights(), validation.weights_seen[1])
    assert not torch.equal(task.model.weight, validation.weights_seen[-1]["weight"])  # the last ones differ


def test_without_validation_the_last_weights_are_kept():
    task = Regression()
    report = fit(task.model, task.batch_loss, 64, settings(steps=25))
    assert report.eval_steps == [10, 20, 25] and report.best_step == 25 and report.best_metrics == {}
    assert report.val_metrics == {} and len(report.train_loss) == 3 and not report.stopped_early


def test_an_unknown_select_metric_is_a_clear_error():
    task = Regression()
    with pytest.raises(KeyError, match="'nll' is not a validation metric"):
        fit(task.model, task.batch_loss, 64, settings(select_metric="nll"), ScriptedValidation(task, [1.0] * 5))


# ---------------------------------------------------------------- early stopping


def test_early_stopping_stops_after_patience_evaluations_without_improvement():
    task = Regression()
    values = [3.0, 2.0, 2.5, 2.0, 1.0, 0.5, 0.1, 0.1, 0.1, 0.1]  # no improvement at evaluations 3 and 4
    validation = ScriptedValidation(task, values)
    report = fit(task.model, task.batch_loss, 64, settings(steps=100, patience=2, select_metric="error"), validation)

    assert report.stopped_early and report.eval_steps == [10, 20, 30, 40]
    assert len(task.batches_seen) == 40  # no update after the stop
    assert report.best_step == 20
    assert_same_weights(task.weights(), validation.weights_seen[1])


def test_early_stopping_is_off_by_default():
    task = Regression()
    validation = ScriptedValidation(task, [1.0, 2.0, 3.0, 4.0, 5.0])  # worse and worse
    report = fit(task.model, task.batch_loss, 64, settings(select_metric="error"), validation)
    assert not report.stopped_early and report.eval_steps == [10, 20, 30, 40, 50] and report.best_step == 10


def test_a_run_whose_patience_runs_out_at_the_last_step_did_not_stop_early():
    task = Regression()
    validation = ScriptedValidation(task, [1.0, 2.0, 3.0])
    report = fit(task.model, task.batch_loss, 64, settings(steps=30, patience=2, select_metric="error"), validation)
    assert report.eval_steps == [10, 20, 30] and not report.stopped_early


# ---------------------------------------------------------------- logging


def test_the_logger_gets_the_metrics_on_the_fits_own_step_axis():
    task = Regression()
    logger = Recorder()
    validation = ScriptedValidation(task, [3.0, 2.0, 1.0])
    fit_settings = settings(steps=25, select_metric="error")
    report = fit(
        task.model,
        task.batch_loss,
        64,
        fit_settings,
        validation,
        logger=logger,
        log_prefix="reward_model",
        loss_name="mse",
    )

    assert [step for _, step, _ in logger.calls] == [10, 20, 25]  # updates, not evaluations or a run's steps
    assert {prefix for _, _, prefix in logger.calls} == {"reward_model"}
    for (metrics, _, _), train_loss, error in zip(logger.calls, report.train_loss, [3.0, 2.0, 1.0]):
        assert metrics == {"train_mse": train_loss, "val_error": error, "val_other": 0.0}


def test_the_logged_training_loss_is_the_mean_since_the_previous_evaluation():
    task = Regression()
    losses = []

    def batch_loss(idx):
        loss = task.batch_loss(idx)
        losses.append(float(loss.detach()))
        return loss

    report = fit(task.model, batch_loss, 64, settings(steps=25))
    expected = [np.mean(losses[:10]), np.mean(losses[10:20]), np.mean(losses[20:])]
    assert report.train_loss == pytest.approx(expected, rel=1e-6)


# ---------------------------------------------------------------- minibatches and determinism


def test_a_fit_is_deterministic_for_a_seed_and_leaves_the_global_rng_alone():
    def run(seed):
        task = Regression()
        torch.manual_seed(7)
        validation = ScriptedValidation(task, [1.0] * 5)
        report = fit(task.model, task.batch_loss, 64, settings(select_metric="error"), validation, seed=seed)
        return task, report, torch.rand(3)

    a, report_a, after_a = run(seed=3)
    b, report_b, after_b = run(seed=3)
    c, _, _ = run(seed=4)

    assert_same_weights(a.weights(), b.weights())
    assert report_a == report_b and torch.equal(after_a, after_b)
    assert all(torch.equal(x, y) for x, y in zip(a.batches_seen, b.batches_seen))
    assert not all(torch.equal(x, y) for x, y in zip(a.batches_seen, c.batches_seen))  # the seed picks the batches
    torch.manual_seed(7)
    assert torch.equal(after_a, torch.rand(3))  # the fit drew nothing from the global RNG


def test_ensemble_members_get_their_own_minibatches_and_independent_losses():
    torch.manual_seed(0)
    weights = nn.Parameter(torch.zeros(2, 3))  # two linear members, (E, 3)
    model = nn.Module()
    model.weights = weights
    x = torch.randn(64, 3)
    y = x @ torch.tensor([1.0, -2.0, 0.5])
    shapes = []

    def batch_loss(idx):  # (E, B) indices -> (E,) losses
        shapes.append(tuple(idx.shape))
        prediction = torch.einsum("ebd,ed->eb", x[idx], weights)  # (E, B)
        return (prediction - y[idx]).square().mean(dim=-1)

    fit(model, batch_loss, 64, settings(steps=200, lr=0.05), ensemble_size=2)
    assert set(shapes) == {(2, 8)}
    assert torch.allclose(weights, torch.tensor([[1.0, -2.0, 0.5]] * 2), atol=1e-2)  # each member learnt the map


def test_fit_settings_are_checked():
    with pytest.raises(ValueError, match=r"steps=0 \(must be >= 1\).*patience=-1 \(must be >= 0\)"):
        FitSettings(steps=0, batch_size=4, patience=-1)


# ---------------------------------------------------------------- validation split


def trajectory(episode_id: int) -> Trajectory:
    steps = 3
    zeros = np.zeros(steps, dtype=bool)
    observations = np.full((steps + 1, 2), episode_id, np.float32)
    actions = np.zeros((steps, 1), np.float32)
    return Trajectory(observations, actions, np.zeros(steps), zeros, zeros, zeros, episode_id=episode_id)


def test_the_validation_split_holds_out_whole_trajectories_deterministically():
    trajectories = [trajectory(e) for e in range(10, 30)]
    train, val = split_validation(trajectories, 0.25, seed=1)

    train_ids, val_ids = [t.episode_id for t in train], [t.episode_id for t in val]
    assert len(val_ids) == 5 and not set(train_ids) & set(val_ids)  # no trajectory on both sides
    assert sorted(train_ids + val_ids) == list(range(10, 30))  # and none lost
    assert train_ids == sorted(train_ids) and val_ids == sorted(val_ids)  # each side in the input order

    def val_ids_for(seed: int) -> list[int]:
        return [t.episode_id for t in split_validation(trajectories, 0.25, seed=seed)[1]]

    assert val_ids_for(1) == val_ids  # the same split for the same seed
    assert any(val_ids_for(seed) != val_ids for seed in range(2, 5))


@pytest.mark.parametrize(
    "count, fraction, num_val",
    [(1, 0.5, 0), (2, 0.01, 1), (2, 0.9, 1), (10, 0.0, 0), (10, 0.14, 1), (10, 0.15, 2)],
)
def test_the_validation_split_sizes(count, fraction, num_val):
    """round(fraction * N), at least one when there are two or more, never all of them."""
    train, val = split_validation([trajectory(e) for e in range(count)], fraction, seed=0)
    assert len(val) == num_val and len(train) == count - num_val


# ---------------------------------------------------------------- the inverse dynamics model uses it


def test_the_inverse_dynamics_model_stops_early_with_patience():
    from embodied_rl.labelling import IDMConfig, train_inverse_dynamics

    rng = np.random.default_rng(0)
    trajectories = []
    for e in range(6):
        actions = rng.uniform(-0.9, 0.9, size=(20, 2)).astype(np.float32)  # (T, A)
        states = np.concatenate([rng.normal(size=(1, 2)), actions], axis=0).cumsum(axis=0).astype(np.float32)
        zeros = np.zeros(20, dtype=bool)
        flipped = -actions if e >= 4 else actions  # the validation trajectories' inverse dynamics is the opposite
        trajectories.append(Trajectory(states, flipped, np.zeros(20), zeros, zeros, zeros, episode_id=e))
    cfg = IDMConfig(hidden_dims=(16,), steps=400, eval_every=20, lr=3e-3, batch_size=32, patience=2)

    _, report = train_inverse_dynamics(trajectories[:4], cfg, validation=trajectories[4:])
    assert report.eval_steps[-1] < 400 and report.eval_steps[-1] == report.best_step + 2 * 20
    assert report.best_val_nll == min(report.val_nll)
