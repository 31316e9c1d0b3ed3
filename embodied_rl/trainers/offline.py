"""Offline training loop: minibatches from a fixed dataset, periodic evaluation in the env, checkpoints.

Used by IQL, TD3+BC and BC, and by the pipelines that label or relabel a dataset before training.
The dataset lives on the agent's device as one `Transitions`; minibatch indices are drawn there by a
seeded generator, so the hot loop never waits on the host. Losses stay tensors until they are logged.
Schedules, evaluation, checkpoints and resume are the skeleton's (`trainers.base.Trainer`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from embodied_rl.agents.protocol import prepare_agent
from embodied_rl.data import Transitions
from embodied_rl.trainers.base import Trainer, TrainerConfig


@dataclass
class OfflineTrainerConfig(TrainerConfig):
    checkpoint_every: int = 50_000
    total_updates: int = 1_000_000  # gradient steps

    def ranges(self) -> dict[str, str]:
        return {**super().ranges(), "total_updates": "> 0"}


class OfflineTrainer(Trainer):
    """Train `agent` on `data` for `cfg.total_updates` updates, evaluating on `eval_env`. The agent's optional
    `prepare(data)` hook runs first (offline learners fit their observation normaliser there)."""

    unit = "update"

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
        super().__init__(cfg, eval_env, agent, logger, run_dir, seed=seed, ref_scores=ref_scores)
        self.data = data
        self.generator = torch.Generator(device=data.reward.device).manual_seed(seed)
        prepare_agent(agent, data)

    @property
    def total(self) -> int:
        return self.cfg.total_updates

    def advance(self) -> tuple[int, dict[str, torch.Tensor]]:
        metrics = self.agent.update(self.data.sample(self.cfg.batch_size, self.generator))
        self.step += 1
        return 1, metrics

    # ---------------------------------------------------------------- resume
    def extra_state(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    @staticmethod
    def results(trainer_state: dict[str, Any]) -> dict[str, Any]:
        return {**Trainer.results(trainer_state), "updates": trainer_state["step"]}

    def load_extra_state(self, checkpoint: dict[str, Any]) -> None:
        try:
            self.generator.set_state(checkpoint["trainer"]["generator"])
        except RuntimeError:  # drawn on another kind of device: `device=auto` resumed on a machine without a GPU
            self.generator.manual_seed(self.seed + self.step)
            self.logger.warning(
                "[resume] warning: the checkpoint's minibatch generator ran on another kind of device; reseeded, so "
                "the minibatches from here on differ from those of an uninterrupted run"
            )
