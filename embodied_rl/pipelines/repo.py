"""RePo (Zhu et al., NeurIPS 2023) as a run: a world model trained on pixels whose background, textures, lighting and
floating bodies keep changing (the `train` distractor split), judged on the same split and on distractors it never
saw (the `test` split). Dreamer-v1, its baseline, is the same run with `agent.objective=dreamer`.

    python scripts/train.py experiment=repo env.task=dmc/walker-walk seed=1
    python scripts/train.py experiment=repo env.task=dmc/walker-walk agent.objective=dreamer seed=1

Flow (`RePoPipeline.run`):

    pixels with train distractors --online trainer--> TransitionSequences (per-env streams of the world-model
        layout: o_t, a_{t-1}, r_{t-1}, is_first) --B windows of seq_len steps--> RePo.update (world model with
        the KL-constrained objective, actor-critic in imagination), the policy carrying its recurrent state
        (reset at episode starts by the trainer)
    the final agent --evaluated on the test split--> repo.json (train and test distractors, side by side) and
        test_eval/ (its videos)

The update schedule is the trainer's: `trainer.utd_ratio` updates per agent step after `trainer.seed_steps` random
ones (the paper's 100 updates every 500 steps is 0.2). The agent's settings are configs/agent/repo.yaml; the
sequence length and the test evaluation are `repo:` (configs/repo/default.yaml).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from embodied_rl.files import write_json
from embodied_rl.pipelines.base import Pipeline
from embodied_rl.trainers.assembly import Run, check_replay_fits
from embodied_rl.trainers.builders import ConfigError
from embodied_rl.validation import check_field_types, check_ranges, settings_from_mapping

OUT = "repo.json"
TEST_EVAL = "test_eval"


@dataclass
class RePoRunConfig:
    """`repo:` of a run (configs/repo/default.yaml)."""

    seq_len: int = 50  # steps per training window (the paper's batch is 50 windows of 50 steps: trainer.batch_size)
    test_split: bool = True  # evaluate the final agent on the unseen `test` distractors too
    test_episodes: int = 10
    test_videos: int = 2

    def __post_init__(self) -> None:
        check_field_types(self, "repo settings", prefix="repo.")
        ranges = {"seq_len": ">= 2", "test_episodes": ">= 1", "test_videos": ">= 0"}
        check_ranges("repo settings", vars(self), ranges, prefix="repo.")

    @classmethod
    def from_mapping(cls, values) -> RePoRunConfig:
        return settings_from_mapping(cls, values, "repo")


class RePoPipeline(Pipeline):
    """World-model training on distracted pixels, then the test-split evaluation."""

    name = "repo"
    settings_class = RePoRunConfig
    trainer_kinds = ("online",)
    outputs = (OUT, TEST_EVAL)
    resumable = ("test_split", "test_episodes", "test_videos")

    def run(self, run: Run) -> dict[str, Any]:
        env = run.env_config()
        if run.cfg.agent.name != "repo":
            raise ConfigError(f"experiment=repo trains agent=repo, not agent={run.cfg.agent.name}")
        if env.get("obs_mode") != "pixels" or env.get("image_size") != 64 or env.get("frame_stack", 1) != 1:
            raise ConfigError("RePo learns from 64x64 pixels: env.obs_mode=pixels env.image_size=64 env.frame_stack=1")
        results = run.train_online(storage=self.sequences)
        if self.settings.test_split and env.get("distractors") is not None:
            results["test_distractors"] = self.evaluate_on_test_split(run)
        report = {
            "task": env["task"],
            "objective": run.cfg.agent.objective,
            "train_distractors": {k: v for k, v in (results.get("final") or {}).items() if k != "per_episode"},
            "test_distractors": results.get("test_distractors"),
            "steps": results.get("steps"),
            "updates": results.get("updates"),
        }
        write_json(run.run_dir / OUT, report)
        return results

    def sequences(self, run: Run, envs, device: torch.device):
        """The trainer's storage: a `SequenceReplay` of `trainer.replay_size` rows, one stream per env, fed
        transition by transition (`TransitionSequences`); pixels stay uint8."""
        from embodied_rl.data.sequences import TransitionSequences

        t = run.cfg.trainer
        space, action_space = envs.single_observation_space, envs.single_action_space
        if t.replay_size // t.num_envs < self.settings.seq_len:
            raise ConfigError(
                f"trainer.replay_size={t.replay_size} over {t.num_envs} envs holds no window of "
                f"repo.seq_len={self.settings.seq_len} steps"
            )
        need = TransitionSequences.nbytes(t.replay_size, space.shape, action_space.shape[0], space.dtype.itemsize)
        check_replay_fits(need, t, device, what="one copy of each observation")
        obs_dtype = torch.uint8 if space.dtype == np.uint8 else torch.float32
        return TransitionSequences.create(
            t.replay_size, space.shape, action_space.shape[0], self.settings.seq_len, t.num_envs, device, obs_dtype
        )

    def evaluate_on_test_split(self, run: Run) -> dict[str, Any]:
        """The trained agent (latest checkpoint) on the `test` distractor split: success, returns, videos."""
        from embodied_rl.envs import make_env
        from embodied_rl.trainers.evaluation import AgentPolicy, evaluate_policy
        from embodied_rl.trainers.loading import load_agent

        s, t = self.settings, run.cfg.trainer
        env = make_env({**run.env_config(), "distractors": "test"})
        try:
            agent, _, _ = load_agent(run.run_dir, env=env, device=run.device)
            summary = evaluate_policy(
                AgentPolicy(agent),
                env,
                episodes=s.test_episodes,
                seed=10_000 + run.seed * 1000,  # not the training evaluation's seeds
                video_dir=run.run_dir / TEST_EVAL if s.test_videos else None,
                videos=s.test_videos,
            )
        finally:
            env.close()
        summary.pop("per_episode", None)
        run.logger.summary(
            f"[repo] test distractors: success {summary['success_rate']:.2f}, return {summary['return_mean']:.1f} "
            f"over {s.test_episodes} episodes (after {t.total_steps} steps)"
        )
        return summary
