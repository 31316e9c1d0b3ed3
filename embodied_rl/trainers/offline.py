"""Offline training loop: minibatches from a fixed dataset, periodic evaluation in the env, checkpoints.

Used by IQL, TD3+BC and BC (and by the pipelines that relabel data before training, e.g. SS-ORL).
The dataset lives on the agent's device as one `Transitions`; minibatch indices are drawn there by a
seeded generator, so the hot loop never waits on the host. Losses stay tensors until they are logged.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from embodied_rl.data import Transitions
from embodied_rl.trainers.checkpoint import load_checkpoint, restore_rng_state, save_checkpoint
from embodied_rl.trainers.divergence import check_finite, check_finite_state
from embodied_rl.trainers.evaluation import evaluate_and_log, is_better
from embodied_rl.validation import check_field_types, check_ranges


@dataclass
class OfflineTrainerConfig:
    total_updates: int = 1_000_000  # gradient steps
    batch_size: int = 256
    eval_every: int = 10_000
    eval_episodes: int = 10
    eval_videos: int = 0  # mp4s written per evaluation (0: none)
    checkpoint_every: int = 50_000
    keep_checkpoints: int = 2
    log_every: int = 1_000
    progress: bool = True

    def __post_init__(self) -> None:
        check_field_types(self, "trainer settings", prefix="trainer.")
        ranges = {
            **dict.fromkeys(("total_updates", "batch_size", "eval_episodes"), "> 0"),
            **dict.fromkeys(("eval_every", "eval_videos", "checkpoint_every", "keep_checkpoints", "log_every"), ">= 0"),
        }
        check_ranges("trainer settings", vars(self), ranges, prefix="trainer.")


class OfflineTrainer:
    """Train `agent` on `data` for `cfg.total_updates` updates, evaluating on `eval_env`."""

    def __init__(
        self,
        cfg: OfflineTrainerConfig,
        data: Transitions,
        eval_env,
        agent,
        logger,
        run_dir: str | Path,
        seed: int = 0,
        ref_scores: tuple[float | None, float | None] = (None, None),
    ):
        self.cfg, self.data, self.eval_env = cfg, data, eval_env
        self.agent, self.logger, self.run_dir, self.seed = agent, logger, Path(run_dir), seed
        self.ref_min, self.ref_max = ref_scores
        self.step = 0
        self.best_eval: dict[str, Any] | None = None
        self.last_eval: dict[str, Any] | None = None
        self.generator = torch.Generator(device=data.reward.device).manual_seed(seed)
        if not getattr(agent, "normalizer_fitted", True):  # offline agents normalise with the data's statistics
            agent.fit_normalizer(data.obs)

    # ---------------------------------------------------------------- resume
    def state_dict(self) -> dict[str, Any]:
        return {"agent": self.agent.state_dict(), "trainer": self._trainer_state()}

    def _trainer_state(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "best_eval": self.best_eval,
            "last_eval": self.last_eval,
            "config": asdict(self.cfg),
            "generator": self.generator.get_state(),
        }

    @staticmethod
    def results(trainer_state: dict[str, Any]) -> dict[str, Any]:
        """What a run reports from the trainer's part of a checkpoint: final and best evaluation, updates."""
        final, best = trainer_state["last_eval"], trainer_state["best_eval"]
        return {"final": final, "best": best, "updates": trainer_state["step"]}

    def resume(self, path: str | Path) -> None:
        ckpt = load_checkpoint(path)
        self.agent.load_state_dict(ckpt["agent"])
        self.step = ckpt["trainer"]["step"]
        self.best_eval = ckpt["trainer"]["best_eval"]
        self.last_eval = ckpt["trainer"].get("last_eval")
        try:
            self.generator.set_state(ckpt["trainer"]["generator"])
        except RuntimeError:  # drawn on another kind of device: `device=auto` resumed on a machine without a GPU
            self.generator.manual_seed(self.seed + self.step)
            self.logger.warning(
                "[resume] warning: the checkpoint's minibatch generator ran on another kind of device; reseeded, so "
                "the minibatches from here on differ from those of an uninterrupted run"
            )
        restore_rng_state(ckpt["rng"])
        self.logger.truncate_after(self.step)

    def save(self) -> Path:
        state = self.state_dict()
        check_finite_state(state["agent"], self.step, unit="update")  # never checkpoint broken networks
        return save_checkpoint(self.run_dir / "checkpoints", self.step, state, keep=self.cfg.keep_checkpoints)

    # ---------------------------------------------------------------- loop
    def train(self) -> dict[str, Any]:
        cfg = self.cfg
        last_metrics: dict[str, torch.Tensor] = {}
        tick, tick_step = time.perf_counter(), self.step
        bar = tqdm(
            total=cfg.total_updates, initial=self.step, desc="train", disable=not cfg.progress, dynamic_ncols=True
        )
        while self.step < cfg.total_updates:
            last_metrics = self.agent.update(self.data.sample(cfg.batch_size, self.generator))
            self.step += 1
            bar.update(1)
            last = self.step >= cfg.total_updates
            log_now = cfg.log_every > 0 and self.step % cfg.log_every == 0
            evaluate_now = (cfg.eval_every > 0 and self.step % cfg.eval_every == 0) or last
            save_now = (cfg.checkpoint_every > 0 and self.step % cfg.checkpoint_every == 0) or last
            if log_now:
                now = time.perf_counter()
                speed = {"updates_per_second": (self.step - tick_step) / max(now - tick, 1e-9)}
                self.logger.log({**last_metrics, **speed}, self.step, prefix="train")
                tick, tick_step = now, self.step
            if log_now or evaluate_now or save_now:  # never inside the update path: no extra host sync there
                check_finite(last_metrics, self.step, unit="update")
            if evaluate_now:
                self.last_eval = self.evaluate()
                if is_better(self.last_eval, self.best_eval):
                    self.best_eval = self.last_eval
            if save_now:
                self.save()
        bar.close()
        if self.last_eval is None or self.last_eval.get("step") != self.step:  # no evaluation at this update yet
            self.last_eval = self.evaluate()
            if is_better(self.last_eval, self.best_eval):
                self.best_eval = self.last_eval
        self.logger.flush()
        return self.results(self._trainer_state())

    def evaluate(self) -> dict[str, Any]:
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
            ref_scores=(self.ref_min, self.ref_max),
            unit="update",
        )
