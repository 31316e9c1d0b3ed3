"""Online off-policy training loop (SAC and friends) over gymnasium vector envs.

The trainer owns the interaction: it steps the envs, fills the storage (a replay buffer), calls `agent.update`
at the configured update-to-data ratio; schedules, evaluation, checkpoints and resume are the skeleton's
(`trainers.base.Trainer`). Agents never step envs. Update metrics stay tensors until they are logged, so the hot
loop never waits on the device.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from embodied_rl.agents.protocol import reset_agent
from embodied_rl.envs import subenv_seeds
from embodied_rl.trainers.base import Trainer, TrainerConfig


@dataclass
class OnlineTrainerConfig(TrainerConfig):
    total_steps: int = 100_000  # env steps, summed over the vector envs
    seed_steps: int = 5_000  # uniform-random actions before learning starts
    utd_ratio: float = 1.0  # gradient updates per env step
    save_replay: bool = True  # put the replay buffer into checkpoints (needed for an exact resume)

    def ranges(self) -> dict[str, str]:
        return {**super().ranges(), "total_steps": "> 0", "utd_ratio": "> 0", "seed_steps": ">= 0"}


class OnlineTrainer(Trainer):
    """Run `agent` on `envs` (a gymnasium VectorEnv) for `cfg.total_steps` env steps, storing what it sees in
    `storage`: a `ReplayBuffer`, or any object with the same `add(obs, action, reward, next_obs, terminated,
    truncated=)`, `sample(batch_size)`, `state_dict()` and `load_state_dict()` (e.g. a sequence store for a world
    model). Agents with recurrent state get `reset(done_mask)` at every episode start (`agents.protocol`)."""

    unit = "step"

    def __init__(self, cfg: OnlineTrainerConfig, envs, eval_env, agent, storage, logger, run_dir, seed: int = 0):
        super().__init__(cfg, eval_env, agent, logger, run_dir, seed=seed)
        self.envs, self.storage = envs, storage
        self.updates_done = 0
        self.update_debt = 0.0  # updates owed by a fractional utd_ratio, carried across vector steps
        self.episodes_done = 0
        self.warmup_until = cfg.seed_steps  # random actions and no updates before this step
        self.num_envs = envs.num_envs
        self.action_rng = np.random.default_rng(seed)
        self._next_obs_from_final = _autoreset_is_same_step(envs)

    @property
    def total(self) -> int:
        return self.cfg.total_steps

    # ---------------------------------------------------------------- resume
    def extra_state(self) -> dict[str, Any]:
        return {
            "updates_done": self.updates_done,
            "update_debt": self.update_debt,
            "episodes_done": self.episodes_done,
            "action_rng": self.action_rng.bit_generator.state,
        }

    def extra_checkpoint(self) -> dict[str, Any]:
        return {"buffer": self.storage.state_dict()} if self.cfg.save_replay else {}

    @staticmethod
    def results(trainer_state: dict[str, Any]) -> dict[str, Any]:
        counts = {"steps": trainer_state["step"], "updates": trainer_state["updates_done"]}
        return {**Trainer.results(trainer_state), **counts}

    def load_extra_state(self, checkpoint: dict[str, Any]) -> None:
        """A checkpoint without the replay buffer (`save_replay=false`) restarts the warm-up: `seed_steps`
        random steps (at least `batch_size`) refill the buffer before updates resume."""
        trainer = checkpoint["trainer"]
        self.updates_done = trainer["updates_done"]
        self.update_debt = trainer.get("update_debt", 0.0)  # absent from checkpoints before 2026-11-23
        self.episodes_done = trainer["episodes_done"]
        self.action_rng.bit_generator.state = trainer["action_rng"]
        if "buffer" in checkpoint:
            self.storage.load_state_dict(checkpoint["buffer"])
        else:
            self.warmup_until = self.step + max(self.cfg.seed_steps, self.cfg.batch_size)
            self.update_debt = 0.0
            self.logger.warning(
                f"[resume] warning: the checkpoint holds no replay buffer (save_replay=false); "
                f"{self.warmup_until - self.step} random steps refill it before updates resume"
            )

    # ---------------------------------------------------------------- loop
    def start(self) -> None:
        # After a resume the envs restart from fresh episodes seeded by the step, so resumed runs differ
        # from uninterrupted ones only in where the interrupted episodes were cut. The reset seed is
        # seed + step (0 at the start), spread over the sub-envs so that at the start of a run they never
        # share a seed with another run's sub-envs (after a resume, seed + step may equal another run's seed).
        self.obs, _ = self.envs.reset(seed=subenv_seeds(self.seed + self.step, self.num_envs))
        self.episode_return = np.zeros(self.num_envs)
        self.episode_success = np.zeros(self.num_envs, dtype=bool)
        reset_agent(self.agent, np.ones(self.num_envs, dtype=bool))

    def advance(self) -> tuple[int, dict[str, torch.Tensor] | None]:
        """One step of every env (random actions during the warm-up), then the updates it owes."""
        if self.step < self.warmup_until:
            space = self.envs.action_space
            action = self.action_rng.uniform(space.low, space.high, size=space.shape).astype(space.dtype)
        else:
            action = self.agent.act(self.obs, deterministic=False)
        next_obs, reward, terminated, truncated, info = self.envs.step(action)
        done = terminated | truncated
        stored_next_obs = _final_observations(next_obs, info, done) if self._next_obs_from_final else next_obs
        self.storage.add(self.obs, action, reward, stored_next_obs, terminated, truncated=truncated)
        self.episode_return += reward
        self.episode_success |= _step_success(info, done, self.num_envs)
        self.obs = next_obs
        self.step += self.num_envs
        for i in np.flatnonzero(done):
            self.episodes_done += 1
            self.logger.log(
                {
                    "return": self.episode_return[i],
                    "success": float(self.episode_success[i]),
                    "episodes": self.episodes_done,
                },
                self.step,
                prefix="train",
            )
            self.episode_return[i], self.episode_success[i] = 0.0, False
        if done.any():
            reset_agent(self.agent, done)

        metrics = None
        if self.step >= self.warmup_until:
            self.update_debt += self.cfg.utd_ratio * self.num_envs
            while self.update_debt >= 1.0:
                metrics = self.agent.update(self._sample_batch())
                self.updates_done += 1
                self.update_debt -= 1.0
        return self.num_envs, metrics

    def speed_metrics(self, per_second: float) -> dict[str, Any]:
        return {"steps_per_second": per_second, "updates": self.updates_done}

    def _sample_batch(self):
        """A batch from the storage, on the agent's device (`trainer.replay_device` may keep it elsewhere)."""
        batch = self.storage.sample(self.cfg.batch_size)
        if getattr(self.agent, "device", None) is None:
            return batch
        device = torch.device(self.agent.device)  # tensors already there are not copied
        return batch.to(device, non_blocking=device.type == "cuda")  # a copy to the host must be synchronous


def _autoreset_is_same_step(envs) -> bool:
    from gymnasium.vector import AutoresetMode

    mode = envs.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
    if mode == AutoresetMode.NEXT_STEP:
        raise ValueError("OnlineTrainer needs vector envs with autoreset_mode=SAME_STEP (make_vector_env does this)")
    return mode == AutoresetMode.SAME_STEP


def _step_success(info: dict, done: np.ndarray, num_envs: int) -> np.ndarray:
    """Per-env `success` of the last step. With SAME_STEP autoreset the info of a finished env comes from
    its reset: its last step's info is in `info["final_info"]`."""
    success = np.asarray(info.get("success", np.zeros(num_envs, bool)), dtype=bool).copy()
    final = info.get("final_info", {})
    if done.any() and "success" in final:
        success[done] = np.asarray(final["success"], dtype=bool)[done]
    return success


def _final_observations(next_obs, info: dict, done: np.ndarray):
    """With SAME_STEP autoreset, `next_obs` of a finished env is already the next episode's first obs:
    the true last observation is in `info["final_obs"]`."""
    if not done.any():
        return next_obs
    final = info["final_obs"]
    if isinstance(next_obs, dict):
        out = {k: v.copy() for k, v in next_obs.items()}
        for i in np.flatnonzero(done):
            for k in out:
                out[k][i] = final[i][k]
        return out
    out = next_obs.copy()
    for i in np.flatnonzero(done):
        out[i] = final[i]
    return out
