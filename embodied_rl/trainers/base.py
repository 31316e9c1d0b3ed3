"""The trainer skeleton shared by every training loop: schedules, evaluation, checkpoints, resume, results.

A concrete trainer says only how it advances (`advance`: online, one vector-env step and the updates it owes;
offline, one update on a minibatch of the dataset), what its counter counts (`unit`), how long it runs (`total`)
and what it adds to a checkpoint (`extra_state` / `load_extra_state`, e.g. the replay buffer). Everything else
lives here once:

- logging every `log_every`, evaluation every `eval_every`, a checkpoint every `checkpoint_every` (each fires when
  the counter passes a multiple, so several envs stepping together never skip one), and at the end;
- a finite check of the losses whenever they are read (never inside the update path: no extra host sync);
- the best evaluation (success rate, then return) kept across resumes, and a final evaluation at the last step;
- `resume`: the agent, counters, evaluations, the trainer's own state and every RNG, the logs cut back to the
  checkpoint.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from tqdm import tqdm

from embodied_rl.trainers.checkpoint import load_checkpoint, restore_rng_state, save_checkpoint
from embodied_rl.trainers.divergence import check_finite, check_finite_state
from embodied_rl.trainers.evaluation import evaluate_and_log, is_better
from embodied_rl.validation import check_field_types, check_ranges


@dataclass
class TrainerConfig:
    """Settings every trainer has (configs/trainer/*.yaml); a subclass adds its length and its own settings."""

    batch_size: int = 256
    eval_every: int = 10_000
    eval_episodes: int = 10
    eval_videos: int = 0  # mp4s written per evaluation (0: none)
    checkpoint_every: int = 10_000
    keep_checkpoints: int = 2  # newest step_*.pt files kept (0: keep every one, e.g. for dataset recipes)
    log_every: int = 1_000
    progress: bool = True

    def __post_init__(self) -> None:
        check_field_types(self, "trainer settings", prefix="trainer.")
        check_ranges("trainer settings", vars(self), self.ranges(), prefix="trainer.")

    def ranges(self) -> dict[str, str]:
        """The allowed range of each numeric setting (`embodied_rl.validation.in_range` notation)."""
        return {
            **dict.fromkeys(("batch_size", "eval_episodes"), "> 0"),
            **dict.fromkeys(("eval_every", "eval_videos", "checkpoint_every", "keep_checkpoints", "log_every"), ">= 0"),
        }


class Trainer:
    """Train `agent`, evaluating it on `eval_env`, logging to `logger` and checkpointing into `run_dir`."""

    unit: ClassVar[str] = "step"  # what `self.step` counts, in messages: env steps, or updates
    cfg: TrainerConfig

    def __init__(
        self,
        cfg: TrainerConfig,
        eval_env,
        agent,
        logger,
        run_dir: str | Path,
        seed: int = 0,
        ref_scores: tuple[float | None, float | None] = (None, None),
    ):
        self.cfg, self.eval_env, self.agent, self.logger = cfg, eval_env, agent, logger
        self.run_dir, self.seed, self.ref_scores = Path(run_dir), seed, ref_scores
        self.step = 0
        self.best_eval: dict[str, Any] | None = None  # kept across resumes
        self.last_eval: dict[str, Any] | None = None

    # ---------------------------------------------------------------- what a trainer defines
    @property
    def total(self) -> int:
        """The value of `self.step` at which training ends."""
        raise NotImplementedError

    def start(self) -> None:
        """Called once before the loop (and after a resume): e.g. reset the envs."""

    def advance(self) -> tuple[int, dict[str, torch.Tensor] | None]:
        """One unit of work: moves `self.step` on and returns (how far, the last update's metrics or None)."""
        raise NotImplementedError

    def speed_metrics(self, per_second: float) -> dict[str, Any]:
        """What is logged about speed with the losses, from the counter's rate since the last log."""
        return {f"{self.unit}s_per_second": per_second}

    def extra_state(self) -> dict[str, Any]:
        """The trainer's own counters and generators, stored under "trainer" in checkpoints."""
        return {}

    def extra_checkpoint(self) -> dict[str, Any]:
        """Entries of a checkpoint beside "agent" and "trainer" (e.g. the replay buffer)."""
        return {}

    def load_extra_state(self, checkpoint: dict[str, Any]) -> None:
        """Restore what `extra_state` and `extra_checkpoint` saved, from the whole checkpoint dict."""

    @staticmethod
    def results(trainer_state: dict[str, Any]) -> dict[str, Any]:
        """What a run reports from the trainer's part of a checkpoint: final and best evaluation, counts."""
        return {"final": trainer_state["last_eval"], "best": trainer_state["best_eval"]}

    # ---------------------------------------------------------------- checkpoints
    def trainer_state(self) -> dict[str, Any]:
        state = {"step": self.step, "best_eval": self.best_eval, "last_eval": self.last_eval}
        return {**state, **self.extra_state(), "config": asdict(self.cfg)}

    def state_dict(self) -> dict[str, Any]:
        return {"agent": self.agent.state_dict(), "trainer": self.trainer_state(), **self.extra_checkpoint()}

    def save(self) -> Path:
        state = self.state_dict()
        check_finite_state(state["agent"], self.step, unit=self.unit)  # never checkpoint broken networks
        return save_checkpoint(self.run_dir / "checkpoints", self.step, state, keep=self.cfg.keep_checkpoints)

    def resume(self, path: str | Path) -> None:
        """Continue from the checkpoint at `path` (a file or a checkpoints directory)."""
        checkpoint = load_checkpoint(path)
        self.agent.load_state_dict(checkpoint["agent"])
        trainer = checkpoint["trainer"]
        self.step = trainer["step"]
        self.best_eval, self.last_eval = trainer.get("best_eval"), trainer.get("last_eval")
        self.load_extra_state(checkpoint)
        restore_rng_state(checkpoint["rng"])
        self.logger.truncate_after(self.step)

    # ---------------------------------------------------------------- the loop
    def train(self) -> dict[str, Any]:
        cfg = self.cfg
        self.start()
        last_metrics: dict[str, torch.Tensor] = {}
        tick, tick_step = time.perf_counter(), self.step
        bar = tqdm(total=self.total, initial=self.step, desc="train", disable=not cfg.progress, dynamic_ncols=True)
        while self.step < self.total:
            increment, metrics = self.advance()
            bar.update(increment)
            if metrics is not None:
                last_metrics = metrics
            last = self.step >= self.total
            log_now = _crossed(self.step, increment, cfg.log_every)
            evaluate_now = _crossed(self.step, increment, cfg.eval_every) or last
            save_now = _crossed(self.step, increment, cfg.checkpoint_every) or last
            if log_now:
                now = time.perf_counter()
                speed = self.speed_metrics((self.step - tick_step) / max(now - tick, 1e-9))
                self.logger.log({**last_metrics, **speed}, self.step, prefix="train")
                tick, tick_step = now, self.step
            if log_now or evaluate_now or save_now:  # never inside the update path: no extra host sync there
                check_finite(last_metrics, self.step, unit=self.unit)
            if evaluate_now:
                self.record(self.evaluate())
            if save_now:
                self.save()
        bar.close()
        if self.last_eval is None or self.last_eval.get("step") != self.step:  # no evaluation at this step yet
            self.record(self.evaluate())
        self.logger.flush()
        return self.results(self.trainer_state())

    def evaluate(self) -> dict[str, Any]:
        """Evaluate the agent now (deterministic actions) and log it; returns {"step": ..., **scalars}."""
        cfg = self.cfg
        return evaluate_and_log(
            self.agent,
            self.eval_env,
            cfg.eval_episodes,
            seed=10_000 + self.seed,
            step=self.step,
            logger=self.logger,
            videos=cfg.eval_videos,
            video_dir=self.run_dir / "videos" / f"step_{self.step:09d}",
            ref_scores=self.ref_scores,
            unit=self.unit,
        )

    def record(self, evaluation: dict[str, Any]) -> None:
        """Keep `evaluation` as the latest, and as the best when it beats the best so far."""
        self.last_eval = evaluation
        if is_better(evaluation, self.best_eval):
            self.best_eval = evaluation


def _crossed(step: int, increment: int, every: int) -> bool:
    """True when the counter moved past a multiple of `every` during the last increment."""
    return every > 0 and (step // every) != ((step - increment) // every)
