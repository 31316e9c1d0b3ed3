"""RePo's test-time adaptation as a run (Zhu et al., NeurIPS 2023, issue 23 section 3): a RePo agent trained on the
`train` distractors meets distractors it never saw (the `test` split); without rewards, only its image encoder
trains there, the world model's other parts, the actor and the value net frozen.

    python scripts/train.py experiment=repo_adapt checkpoint=runs/repo/dmc/walker-walk/seed1 seed=1

Flow (`RePoAdaptPipeline.run`):

    checkpoint (a run of experiment=repo / repo_cpu) --its config.yaml--> this run's env (the same task and pixels,
        env.distractors=<target_split>) and agent; the agent with the checkpoint's weights
    evaluate on the target env -> eval_before/ (videos), and on the source split -> eval_source_before/
    source frames: uniformly sampled filled rows of the checkpoint's replay (trainer.save_replay=true), else
        frames collected by the agent's policy on the source split
    target interaction, reward-free: the agent's (stochastic) policy acts with the encoder being adapted, its
        recurrent state reset at episode starts; each frame and its paired render (`PairedRenders`: the same state
        with the source distractors) go to a ring buffer; every `collect_every` steps, `updates_per_collect`
        `EncoderAdaptation.update` calls (support alignment + calibration on paired frames)
    evaluate again -> eval_after/, eval_source_after/ (does adaptation cost the source?); check that nothing but the
        encoder changed; checkpoints/latest.pt (the adapted agent, read by load_agent and scripts/evaluate.py);
        repo_adapt.json

The run's config.yaml holds the checkpoint's env (with the target split) and agent: `from_config` fills them in
from the checkpoint's config.yaml before the run directory is prepared, so `scripts/evaluate.py <this run>`
rebuilds the adapted agent on the target env. Overrides of `env.*` / `agent.*` are replaced by the checkpoint's.

Crash safety: the only checkpoint is written at the end. A killed adaptation holds none, so `resume=true` starts it
again from the source checkpoint (its outputs removed); a resume of a finished one does nothing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from embodied_rl.agents.protocol import reset_agent
from embodied_rl.agents.repo.adaptation import AdaptationConfig, EncoderAdaptation
from embodied_rl.files import write_json
from embodied_rl.pipelines.base import Pipeline
from embodied_rl.trainers.assembly import Run, config_errors
from embodied_rl.trainers.builders import ConfigError
from embodied_rl.validation import check_field_types, check_ranges, check_types, settings_from_mapping

OUT = "repo_adapt.json"
EVAL_DIRS = {  # evaluation -> its videos' folder
    "before": "eval_before",
    "after": "eval_after",
    "source_before": "eval_source_before",
    "source_after": "eval_source_after",
}
SPLITS = ("train", "test")
SUMMARY = ("success_rate", "return_mean", "return_std", "length_mean")


@dataclass
class RePoAdaptConfig:
    """`repo_adapt:` of a run (configs/repo_adapt/default.yaml) and its top-level `checkpoint`."""

    checkpoint: str | None = None  # a run directory of experiment=repo / repo_cpu, or a .pt file of one
    target_split: str = "test"  # distractor split adapted to (the source run's must be the other one)
    env_steps: int = 25_000  # agent steps in the target env (x action_repeat = control steps); paper: 50k env steps
    collect_every: int = 250  # agent steps between rounds of updates (paper: 500 env steps)
    updates_per_collect: int = 100  # encoder updates per round (paper: 100)
    buffer_size: int | None = None  # target frames kept (ring buffer); None: every frame of the run
    source_observations: int = 100_000  # source frames kept (sampled from the checkpoint's replay)
    source_collect_steps: int = 10_000  # without a replay in the checkpoint: source frames collected by the policy
    paired: bool = True  # calibration on paired renders (PairedRenders); false: support alignment only
    eval_episodes: int = 10
    eval_videos: int = 2  # videos of each evaluation (target and source, before and after)
    source_eval: bool = True  # also evaluate on the source split, before and after
    adaptation: AdaptationConfig = field(default_factory=AdaptationConfig)  # losses, optimisers, batch sizes

    def __post_init__(self) -> None:
        check_field_types(self, "repo_adapt settings", prefix="repo_adapt.")
        if self.target_split not in SPLITS:
            raise ValueError(f"invalid repo_adapt settings: target_split={self.target_split!r} (train or test)")
        ranges = {
            **dict.fromkeys(("env_steps", "collect_every", "updates_per_collect", "eval_episodes"), ">= 1"),
            **dict.fromkeys(("source_observations", "source_collect_steps"), ">= 1"),
            "buffer_size": "None or >= 1",
            "eval_videos": ">= 0",
        }
        check_ranges("repo_adapt settings", vars(self), ranges, prefix="repo_adapt.")
        if self.collect_every > self.env_steps:
            raise ValueError(
                f"invalid repo_adapt settings: collect_every={self.collect_every} > env_steps={self.env_steps} "
                "(no update would run)"
            )
        if not isinstance(self.adaptation, AdaptationConfig):
            self.adaptation = adaptation_config(self.adaptation)

    @classmethod
    def from_mapping(cls, values) -> RePoAdaptConfig:
        return settings_from_mapping(cls, values, "repo_adapt")

    @property
    def updates(self) -> int:
        return self.env_steps // self.collect_every * self.updates_per_collect


def adaptation_config(values: Mapping[str, Any] | None) -> AdaptationConfig:
    """`repo_adapt.adaptation:` as an `AdaptationConfig` (types and ranges checked); its `steps` is not a setting
    here: the budget is env_steps / collect_every * updates_per_collect."""
    values = dict(values or {})
    if "steps" in values:
        raise ValueError(
            "repo_adapt.adaptation.steps is not a setting of the run: the number of updates is "
            "repo_adapt.env_steps / collect_every * updates_per_collect"
        )
    hints = {f.name: f.type for f in dataclasses.fields(AdaptationConfig)}
    values = check_types("repo_adapt.adaptation settings", values, hints, prefix="repo_adapt.adaptation.")
    return settings_from_mapping(AdaptationConfig, values, "repo_adapt.adaptation")


class RePoAdaptPipeline(Pipeline):
    """Encoder-only, reward-free adaptation of a trained RePo agent to the other distractor split."""

    name = "repo_adapt"
    settings_class = RePoAdaptConfig
    trainer_kinds = ("online",)
    top_level_keys = ("checkpoint",)
    outputs = (OUT, *EVAL_DIRS.values())

    @classmethod
    def settings_values(cls, cfg: DictConfig) -> dict[str, Any]:
        """`repo_adapt:` with the run's top-level `checkpoint`."""
        checkpoint = cfg.get("checkpoint")
        return {**super().settings_values(cfg), "checkpoint": None if checkpoint is None else str(checkpoint)}

    @classmethod
    def from_config(cls, cfg: DictConfig) -> RePoAdaptPipeline:
        """The pipeline, with the checkpoint checked (a readable RePo run trained with distractors); fills the run
        config's env (the checkpoint's, with `distractors: <target_split>`, seeded by the run) and agent (the
        checkpoint's) in, before the run directory is named and config.yaml written."""
        pipeline = super().from_config(cfg)
        source_cfg = pipeline.check_source()
        env = OmegaConf.to_container(source_cfg.env, resolve=True)
        env["distractors"] = pipeline.settings.target_split
        if "seed" in env:
            env["seed"] = cfg.seed
        with open_dict(cfg):
            cfg.env = env
            cfg.agent = OmegaConf.to_container(source_cfg.agent, resolve=True)
        return pipeline

    def check_source(self) -> DictConfig:
        """The source run's config; ConfigError for a missing or unreadable checkpoint, another agent than RePo,
        a run without distractors or on the target split already."""
        from embodied_rl.trainers.checkpoint import checkpoint_step
        from embodied_rl.trainers.loading import find_run, load_run_config

        s = self.settings
        if s.checkpoint is None:
            raise ConfigError(
                "experiment=repo_adapt needs checkpoint=<a run directory of experiment=repo or repo_cpu, or a .pt "
                "checkpoint of one>"
            )
        try:
            _, self.checkpoint_path = find_run(s.checkpoint)
            source_cfg = load_run_config(s.checkpoint)
            self.source_step = checkpoint_step(self.checkpoint_path)
        except (FileNotFoundError, ValueError, RuntimeError, KeyError) as err:
            raise ConfigError(f"checkpoint={s.checkpoint}: {err}") from None
        agent = source_cfg.agent.get("name")
        if agent != "repo":
            raise ConfigError(
                f"checkpoint={s.checkpoint} holds an agent={agent} run, not a RePo agent: repo_adapt adapts the "
                "encoder of a run of experiment=repo (or repo_cpu)"
            )
        split = source_cfg.env.get("distractors")
        if split is None:
            raise ConfigError(
                f"checkpoint={s.checkpoint} was trained without distractors (env.distractors=null): adaptation needs "
                "a shift from the distractors it was trained on to others; adapt a run trained with "
                "env.distractors=train"
            )
        if split == s.target_split:
            raise ConfigError(
                f"checkpoint={s.checkpoint} was trained on the {split} distractors, and repo_adapt.target_split="
                f"{s.target_split}: there is no shift to adapt to; set repo_adapt.target_split to the other split"
            )
        self.source_split = str(split)
        return source_cfg

    # ------------------------------------------------------------------------------------------------ the run
    def run(self, run: Run) -> dict[str, Any]:
        from tqdm import tqdm

        from embodied_rl.envs import make_env
        from embodied_rl.envs.paired_renders import PAIRED_KEY, PairedRenders
        from embodied_rl.trainers.checkpoint import save_checkpoint
        from embodied_rl.trainers.divergence import check_finite_state
        from embodied_rl.trainers.evaluation import is_better
        from embodied_rl.trainers.loading import CheckpointError, load_agent

        s, t = self.settings, run.cfg.trainer
        if run.resuming:
            raise ConfigError(
                f"{run.run_dir} holds a finished adaptation (trainer.total_steps changed?); an adaptation run is not "
                "extended: start it afresh with overwrite=true"
            )
        if not hasattr(self, "source_split"):  # built without from_config
            self.check_source()
        target_cfg = run.env_config()
        source_cfg = {**target_cfg, "distractors": self.source_split}
        progress = bool(t.progress)
        with contextlib.ExitStack() as stack:

            def env_for(cfg: dict[str, Any], wrappers=()):
                with config_errors():
                    env = make_env(cfg, wrappers=wrappers)
                stack.callback(env.close)
                return env

            target_eval_env = env_for(target_cfg)
            source_eval_env = env_for(source_cfg)
            paired = [functools.partial(PairedRenders, source_split=self.source_split)] if s.paired else []
            target_env = env_for(target_cfg, paired)
            try:
                agent, _, ckpt = load_agent(self.checkpoint_path, env=target_eval_env, device=run.device)
            except CheckpointError as err:
                raise ConfigError(str(err)) from None
            replay = ckpt.get("buffer", {}).get("replay") if isinstance(ckpt.get("buffer"), dict) else None
            del ckpt
            frozen = frozen_state(agent)
            run.logger.summary(
                f"[repo_adapt] {self.checkpoint_path} (step {self.source_step}, {self.source_split} distractors) -> "
                f"{s.target_split} distractors: {s.env_steps} steps, {s.updates} encoder updates"
            )

            evaluations = {"before": self.evaluate(run, agent, target_eval_env, "before", 0)}
            if s.source_eval:
                evaluations["source_before"] = self.evaluate(run, agent, source_eval_env, "source_before", 0)

            generator = torch.Generator().manual_seed(run.seed)
            source_frames, source_from = self.source_frames(run, agent, source_eval_env, replay, generator)
            del replay
            adaptation = EncoderAdaptation(agent.encoder, cfg=s.adaptation, device=run.device)
            frames = FrameRing(s.buffer_size or s.env_steps + 1, agent.observation_shape, run.device, s.paired)

            obs, info = target_env.reset(seed=run.seed)
            reset_agent(agent, np.ones(1, dtype=bool))
            frames.add(obs, info.get(PAIRED_KEY))
            episodes, history = 0, []
            bar = tqdm(total=s.env_steps, desc="adapt", disable=not progress, leave=False)
            for step in range(1, s.env_steps + 1):
                obs, _, terminated, truncated, info = target_env.step(agent.act(obs))  # no reward is used
                frames.add(obs, info.get(PAIRED_KEY))
                if terminated or truncated:
                    episodes += 1
                    obs, info = target_env.reset()
                    reset_agent(agent, np.ones(1, dtype=bool))
                    frames.add(obs, info.get(PAIRED_KEY))
                if step % s.collect_every == 0:
                    metrics = [
                        adaptation.update(**self.batch(source_frames, frames, generator))
                        for _ in range(s.updates_per_collect)
                    ]
                    means = {key: torch.stack([m[key] for m in metrics]).mean() for key in metrics[0]}
                    logged = run.logger.log({**means, "updates": adaptation.num_updates}, step, prefix="adapt")
                    history.append({"step": step, **{k.removeprefix("adapt/"): v for k, v in logged.items()}})
                    bar.set_postfix(alignment=f"{logged['adapt/alignment_loss']:.3g}")
                bar.update(1)
            bar.close()

            changed = [key for key, value in frozen_state(agent).items() if not torch.equal(value, frozen[key])]
            if changed:  # a bug, never a user error: the adaptation must leave all but the encoder as it was
                raise RuntimeError(f"adaptation changed frozen parts of the agent: {', '.join(changed[:5])}")
            evaluations["after"] = self.evaluate(run, agent, target_eval_env, "after", s.env_steps)
            if s.source_eval:
                evaluations["source_after"] = self.evaluate(run, agent, source_eval_env, "source_after", s.env_steps)

        before, after = evaluations["before"], evaluations["after"]
        final = {"step": s.env_steps, **after}
        best = final if is_better(after, before) else {"step": 0, **before}
        trainer_state = {
            "step": s.env_steps,
            "updates_done": adaptation.num_updates,
            "episodes_done": episodes,
            "last_eval": final,
            "best_eval": best,
        }
        state = {"agent": agent.state_dict(), "trainer": trainer_state, "adaptation": adaptation.state_dict()}
        check_finite_state(state["agent"], s.env_steps)
        save_checkpoint(run.run_dir / "checkpoints", s.env_steps, state, keep=t.keep_checkpoints)

        budget = {
            "env_steps": s.env_steps,
            "collect_every": s.collect_every,
            "updates_per_collect": s.updates_per_collect,
            "updates": adaptation.num_updates,
            "batch_size": s.adaptation.batch_size,
            "paired_batch_size": s.adaptation.paired_batch_size if s.paired else 0,
            "paired": s.paired,
            "source_frames": len(source_frames),
            "source_frames_from": source_from,
            "target_frames_kept": len(frames),
            "target_episodes": episodes,
        }
        report = {
            "task": target_cfg["task"],
            "checkpoint": str(self.checkpoint_path),
            "source_step": self.source_step,
            "source_split": self.source_split,
            "target_split": s.target_split,
            **evaluations,
            "adaptation": {
                "first": history[0] if history else None,
                "last": history[-1] if history else None,
                "settings": {k: v for k, v in dataclasses.asdict(s.adaptation).items() if k != "steps"},
            },
            "budget": budget,
        }
        write_json(run.run_dir / OUT, report)
        source = (
            f"; source split {evaluations['source_before']['return_mean']:.1f} -> "
            f"{evaluations['source_after']['return_mean']:.1f}"
            if s.source_eval
            else ""
        )
        run.logger.summary(
            f"[repo_adapt] {s.target_split} distractors: return {before['return_mean']:.1f} -> "
            f"{after['return_mean']:.1f}, success {before['success_rate']:.2f} -> {after['success_rate']:.2f}{source}"
        )
        return {"final": final, "best": best, "steps": s.env_steps, "updates": adaptation.num_updates, **evaluations}

    # ------------------------------------------------------------------------------------------------ pieces
    def evaluate(self, run: Run, agent, env, which: str, step: int) -> dict[str, Any]:
        """Deterministic evaluation (`eval_episodes`, the same seeds before and after); videos to EVAL_DIRS[which];
        logged under eval/ (target) or eval_source/ at `step` (0 before, env_steps after)."""
        from embodied_rl.trainers.evaluation import AgentPolicy, describe_evaluation, evaluate_policy

        s = self.settings
        summary = evaluate_policy(
            AgentPolicy(agent),
            env,
            episodes=s.eval_episodes,
            seed=10_000 + run.seed * 1000,  # not the source run's evaluation seeds
            video_dir=run.run_dir / EVAL_DIRS[which] if s.eval_videos else None,
            videos=s.eval_videos,
            progress=bool(run.cfg.trainer.progress),
        )
        scalars = {key: summary[key] for key in SUMMARY}
        run.logger.log(scalars, step, prefix="eval_source" if which.startswith("source") else "eval")
        split = self.source_split if which.startswith("source") else self.settings.target_split
        run.logger.summary(
            f"[repo_adapt] {which.replace('_', ' ')} ({split} distractors): {describe_evaluation(scalars)}"
        )
        return {**scalars, "episodes": s.eval_episodes}

    def source_frames(
        self, run: Run, agent, env, replay: Mapping[str, Any] | None, generator: torch.Generator
    ) -> tuple[torch.Tensor, str]:
        """Source frames (N, 64, 64, 3) uint8 on the run's device: `source_observations` filled rows of the
        checkpoint's replay drawn uniformly without replacement, or (no replay saved, or an empty one) frames of
        the agent's policy on the source split."""
        s = self.settings
        filled = np.flatnonzero(np.asarray(replay["_episode"]) >= 0) if replay is not None else np.empty(0)
        if len(filled):
            pick = torch.randperm(len(filled), generator=generator)[: s.source_observations]
            rows = torch.as_tensor(np.sort(filled[pick.numpy()]))
            frames = replay["obs"][rows].to(torch.uint8)
            run.logger.summary(f"[repo_adapt] {len(frames)} source frames from the checkpoint's replay")
            return frames.to(run.device), "replay"
        steps = min(s.source_collect_steps, s.source_observations)
        run.logger.summary(
            f"[repo_adapt] the checkpoint holds no replay (trainer.save_replay=false): collecting {steps} source "
            f"frames with the agent's policy on the {self.source_split} distractors"
        )
        return collect_frames(agent, env, steps, seed=20_000 + run.seed * 1000, progress=bool(run.cfg.trainer.progress))

    def batch(self, source: torch.Tensor, frames: FrameRing, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """One update's frames, drawn uniformly with replacement: `batch_size` source and target frames, and
        `paired_batch_size` pairs (target frame, its source render) when calibrating."""
        cfg, device = self.settings.adaptation, source.device
        i = torch.randint(len(source), (cfg.batch_size,), generator=generator).to(device, non_blocking=True)
        j = torch.randint(len(frames), (cfg.batch_size,), generator=generator).to(device, non_blocking=True)
        batch = {"source_obs": source[i], "target_obs": frames.target[j]}
        if frames.paired is not None:
            k = torch.randint(len(frames), (cfg.paired_batch_size,), generator=generator).to(device, non_blocking=True)
            batch.update(paired_source=frames.paired[k], paired_target=frames.target[k])
        return batch


class FrameRing:
    """The newest `capacity` target frames (uint8 (capacity, 64, 64, 3) on `device`) and, with `paired`, the paired
    source render of each."""

    def __init__(self, capacity: int, shape, device: torch.device, paired: bool):
        self.target = torch.zeros((capacity, *shape), dtype=torch.uint8, device=device)
        self.paired = torch.zeros_like(self.target) if paired else None
        self.capacity, self.size, self.next = capacity, 0, 0

    def __len__(self) -> int:
        return self.size

    def add(self, frame: np.ndarray, paired: np.ndarray | None) -> None:
        self.target[self.next] = torch.as_tensor(frame).to(self.target.device)
        if self.paired is not None:
            self.paired[self.next] = torch.as_tensor(paired).to(self.target.device)
        self.next = (self.next + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)


def collect_frames(agent, env, steps: int, seed: int, progress: bool = False) -> tuple[torch.Tensor, str]:
    """`steps` observations (reset frames included) of the agent's stochastic policy in `env`, (N, *obs) uint8 on
    the agent's device."""
    from tqdm import tqdm

    obs, _ = env.reset(seed=seed)
    reset_agent(agent, np.ones(1, dtype=bool))
    frames = [obs]
    with tqdm(total=steps, initial=1, desc="source frames", disable=not progress, leave=False) as bar:
        while len(frames) < steps:
            obs, _, terminated, truncated, _ = env.step(agent.act(obs))
            frames.append(obs)
            if (terminated or truncated) and len(frames) < steps:
                obs, _ = env.reset()
                reset_agent(agent, np.ones(1, dtype=bool))
                frames.append(obs)
            bar.n = len(frames)
            bar.refresh()
    return torch.as_tensor(np.stack(frames[:steps])).to(agent.device), "collected"


def frozen_state(agent) -> dict[str, torch.Tensor]:
    """Copies of every tensor of the agent's networks that adaptation must not change: the world model but its
    encoder, the actor, the value net, log beta."""
    state = {f"world_model.{k}": v for k, v in agent.world_model.state_dict().items() if not k.startswith("encoder.")}
    state.update({f"actor.{k}": v for k, v in agent.actor.state_dict().items()})
    state.update({f"value.{k}": v for k, v in agent.value.state_dict().items()})
    state["log_beta"] = agent.dual.log_beta
    return {key: value.detach().clone() for key, value in state.items()}


__all__ = ["RePoAdaptConfig", "RePoAdaptPipeline", "adaptation_config", "collect_frames", "frozen_state"]
