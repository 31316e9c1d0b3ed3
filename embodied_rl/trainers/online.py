"""Online off-policy training loop (SAC and friends) over gymnasium vector envs.

The trainer owns the interaction: it steps the envs, fills the replay buffer, calls `agent.update`
at the configured update-to-data ratio, evaluates deterministically, logs and checkpoints. Agents never
step envs. Update metrics stay tensors until they are logged, so the hot loop never waits on the device.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from embodied_rl.envs import subenv_seeds
from embodied_rl.trainers.checkpoint import load_checkpoint, restore_rng_state, save_checkpoint
from embodied_rl.trainers.divergence import check_finite, check_finite_state
from embodied_rl.trainers.evaluation import evaluate_and_log, is_better
from embodied_rl.validation import check_field_types, check_ranges


@dataclass
class OnlineTrainerConfig:
    total_steps: int = 100_000  # env steps, summed over the vector envs
    seed_steps: int = 5_000  # uniform-random actions before learning starts
    utd_ratio: float = 1.0  # gradient updates per env step
    batch_size: int = 256
    eval_every: int = 10_000
    eval_episodes: int = 10
    eval_videos: int = 0  # mp4s written per evaluation (0: none)
    checkpoint_every: int = 10_000
    keep_checkpoints: int = 2  # newest step_*.pt files kept (0: keep every one, e.g. for dataset recipes)
    save_replay: bool = True  # put the replay buffer into checkpoints (needed for an exact resume)
    log_every: int = 1_000
    progress: bool = True

    def __post_init__(self) -> None:
        check_field_types(self, "trainer settings", prefix="trainer.")
        ranges = {
            **dict.fromkeys(("total_steps", "utd_ratio", "batch_size", "eval_episodes"), "> 0"),
            **dict.fromkeys(("seed_steps", "eval_every", "eval_videos", "checkpoint_every"), ">= 0"),
            **dict.fromkeys(("keep_checkpoints", "log_every"), ">= 0"),
        }
        check_ranges("trainer settings", vars(self), ranges, prefix="trainer.")


class OnlineTrainer:
    """Run `agent` on `envs` (a gymnasium VectorEnv) for `cfg.total_steps` env steps."""

    def __init__(self, cfg: OnlineTrainerConfig, envs, eval_env, agent, buffer, logger, run_dir, seed: int = 0):
        self.cfg = cfg
        self.envs, self.eval_env = envs, eval_env
        self.agent, self.buffer, self.logger = agent, buffer, logger
        self.run_dir = Path(run_dir)
        self.seed = seed
        self.step = 0
        self.updates_done = 0
        self.update_debt = 0.0  # updates owed by a fractional utd_ratio, carried across vector steps
        self.episodes_done = 0
        self.best_eval: dict[str, Any] | None = None  # kept across resumes
        self.last_eval: dict[str, Any] | None = None
        self.warmup_until = cfg.seed_steps  # random actions and no updates before this step
        self.num_envs = envs.num_envs
        self.action_rng = np.random.default_rng(seed)
        self._next_obs_from_final = _autoreset_is_same_step(envs)

    # ---------------------------------------------------------------- resume
    def state_dict(self) -> dict[str, Any]:
        state = {"agent": self.agent.state_dict(), "trainer": self._trainer_state()}
        if self.cfg.save_replay:
            state["buffer"] = self.buffer.state_dict()
        return state

    def _trainer_state(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "updates_done": self.updates_done,
            "update_debt": self.update_debt,
            "episodes_done": self.episodes_done,
            "best_eval": self.best_eval,
            "last_eval": self.last_eval,
            "action_rng": self.action_rng.bit_generator.state,
            "config": asdict(self.cfg),
        }

    @staticmethod
    def results(trainer_state: dict[str, Any]) -> dict[str, Any]:
        """What a run reports from the trainer's part of a checkpoint: final and best evaluation, steps, updates."""
        final, best = trainer_state["last_eval"], trainer_state["best_eval"]
        return {"final": final, "best": best, "steps": trainer_state["step"], "updates": trainer_state["updates_done"]}

    def resume(self, path: str | Path) -> None:
        """Continue from the checkpoint at `path` (a file or a checkpoints directory).

        A checkpoint without the replay buffer (`save_replay=false`) restarts the warm-up: `seed_steps`
        random steps (at least `batch_size`) refill the buffer before updates resume.
        """
        ckpt = load_checkpoint(path)
        self.agent.load_state_dict(ckpt["agent"])
        trainer = ckpt["trainer"]
        self.step, self.updates_done = trainer["step"], trainer["updates_done"]
        self.update_debt = trainer.get("update_debt", 0.0)  # absent from checkpoints before 2026-11-23
        self.episodes_done = trainer["episodes_done"]
        self.best_eval, self.last_eval = trainer.get("best_eval"), trainer.get("last_eval")
        self.action_rng.bit_generator.state = trainer["action_rng"]
        if "buffer" in ckpt:
            self.buffer.load_state_dict(ckpt["buffer"])
        else:
            self.warmup_until = self.step + max(self.cfg.seed_steps, self.cfg.batch_size)
            self.update_debt = 0.0
            self.logger.warning(
                f"[resume] warning: the checkpoint holds no replay buffer (save_replay=false); "
                f"{self.warmup_until - self.step} random steps refill it before updates resume"
            )
        restore_rng_state(ckpt["rng"])
        self.logger.truncate_after(self.step)

    def save(self) -> Path:
        state = self.state_dict()
        check_finite_state(state["agent"], self.step)  # never checkpoint broken networks
        return save_checkpoint(self.run_dir / "checkpoints", self.step, state, keep=self.cfg.keep_checkpoints)

    # ---------------------------------------------------------------- loop
    def train(self) -> dict[str, Any]:
        cfg = self.cfg
        # After a resume the envs restart from fresh episodes seeded by the step, so resumed runs differ
        # from uninterrupted ones only in where the interrupted episodes were cut. The reset seed is
        # seed + step (0 at the start), spread over the sub-envs so that at the start of a run they never
        # share a seed with another run's sub-envs (after a resume, seed + step may equal another run's seed).
        obs, _ = self.envs.reset(seed=subenv_seeds(self.seed + self.step, self.num_envs))
        episode_return = np.zeros(self.num_envs)
        episode_success = np.zeros(self.num_envs, dtype=bool)
        last_metrics: dict[str, torch.Tensor] = {}
        tick, tick_step = time.perf_counter(), self.step
        bar = tqdm(total=cfg.total_steps, initial=self.step, desc="train", disable=not cfg.progress, dynamic_ncols=True)
        while self.step < cfg.total_steps:
            if self.step < self.warmup_until:
                space = self.envs.action_space
                action = self.action_rng.uniform(space.low, space.high, size=space.shape).astype(space.dtype)
            else:
                action = self.agent.act(obs, deterministic=False)
            next_obs, reward, terminated, truncated, info = self.envs.step(action)
            done = terminated | truncated
            stored_next_obs = _final_observations(next_obs, info, done) if self._next_obs_from_final else next_obs
            self.buffer.add(obs, action, reward, stored_next_obs, terminated)
            episode_return += reward
            episode_success |= _step_success(info, done, self.num_envs)
            obs = next_obs
            self.step += self.num_envs
            bar.update(self.num_envs)
            for i in np.flatnonzero(done):
                self.episodes_done += 1
                self.logger.log(
                    {"return": episode_return[i], "success": float(episode_success[i]), "episodes": self.episodes_done},
                    self.step,
                    prefix="train",
                )
                episode_return[i], episode_success[i] = 0.0, False

            if self.step >= self.warmup_until:
                self.update_debt += cfg.utd_ratio * self.num_envs
                while self.update_debt >= 1.0:
                    last_metrics = self.agent.update(self._sample_batch())
                    self.updates_done += 1
                    self.update_debt -= 1.0

            log_now = _crossed(self.step, self.num_envs, cfg.log_every)
            evaluate_now = _crossed(self.step, self.num_envs, cfg.eval_every) or self.step >= cfg.total_steps
            save_now = _crossed(self.step, self.num_envs, cfg.checkpoint_every) or self.step >= cfg.total_steps
            if log_now:
                now = time.perf_counter()
                speed = {
                    "steps_per_second": (self.step - tick_step) / max(now - tick, 1e-9),
                    "updates": self.updates_done,
                }
                self.logger.log({**last_metrics, **speed}, self.step, prefix="train")
                tick, tick_step = now, self.step
            if log_now or evaluate_now or save_now:  # never inside the update path: no extra host sync there
                check_finite(last_metrics, self.step)
            if evaluate_now:
                self.last_eval = self.evaluate()
                if is_better(self.last_eval, self.best_eval):
                    self.best_eval = self.last_eval
            if save_now:
                self.save()
        bar.close()
        if self.last_eval is None or self.last_eval.get("step") != self.step:  # no evaluation at this step yet
            self.last_eval = self.evaluate()
            if is_better(self.last_eval, self.best_eval):
                self.best_eval = self.last_eval
        self.logger.flush()
        return self.results(self._trainer_state())

    def _sample_batch(self):
        """A batch from the buffer, on the agent's device (`trainer.replay_device` may keep the buffer elsewhere)."""
        batch = self.buffer.sample(self.cfg.batch_size)
        if getattr(self.agent, "device", None) is None:
            return batch
        device = torch.device(self.agent.device)  # tensors already there are not copied
        return batch.to(device, non_blocking=device.type == "cuda")  # a copy to the host must be synchronous

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
        )


def _crossed(step: int, increment: int, every: int) -> bool:
    """True when the counter moved past a multiple of `every` during the last increment."""
    return every > 0 and (step // every) != ((step - increment) // every)


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
