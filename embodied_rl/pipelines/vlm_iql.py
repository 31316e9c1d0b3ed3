"""Offline RL from vision-language-model preference labels: RL-VLM-F's labelling (Wang et al., ICML 2024) on an
offline dataset, then IQL, as in "Real-World Offline Reinforcement Learning from Vision Language Model Feedback"
(Venkataraman et al. 2024). Flow, top to bottom (`VLMIQLPipeline.prepare`):

    offline dataset with rendered frames --sample_frame_pairs--> frame pairs (random episodes and times)
    frame pairs --VLM: analysis query, then label query (or the scripted teacher)--> labels 1 / 2 / dropped
    labelled frame pairs --train_image_reward_model (CNN ensemble, Bradley-Terry)--> r(frame)
    dataset --relabel_with_image_reward: transition t gets r(frames[t + 1])--> IQL (the run's offline learner)

Arms (`arm`), from the same command:
- `vlm`: labels from the VLM the run's `llm:` settings reach (`llm.base_url=... llm.model=...`);
- `scripted`: the same frame pairs labelled by the scripted teacher (B-Pref, from the frames' true rewards) instead;
- `env_reward`: IQL on the env's own reward (nothing labelled);
and `agent=bc vlm_iql.arm=env_reward`: behaviour cloning, which reads no reward.
`labelling.noise` flips that fraction of the labels (either teacher).

Choices made here (ours): the policy and critics see the state observations, only the reward model sees frames; the
relabelled rewards keep the model's scale and `trainer.reward.normalize` (returns) rescales them, as for PEARL.

Every intermediate stays in the run directory: labels/ (the labelling run: pairs, progress, labels, summary, LLM
usage), vlm_iql/reward_model.pt, reward/ (the reward model's curves) and vlm_iql.json (report). A resumed run asks
nothing again (finished labels are read back; the LLM client's cache holds every answer) and reuses the reward model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from embodied_rl.data import DatasetError
from embodied_rl.data.minari_io import open_dataset
from embodied_rl.data.preferences import PreferencePairs
from embodied_rl.data.trajectory import Trajectory
from embodied_rl.files import write_json
from embodied_rl.labelling.frame_pairs import check_frames
from embodied_rl.labelling.vlm_teacher import ChatAPI, LabellingSettings, frames_required_message, run_labelling
from embodied_rl.pipelines.base import Pipeline
from embodied_rl.pipelines.offline_datasets import METAWORLD_TIERS, metaworld_tiers
from embodied_rl.rewards.image_reward import (
    ImageRewardConfig,
    load_image_reward_model,
    pair_frames,
    relabel_with_image_reward,
    save_image_reward_model,
    train_image_reward_model,
)
from embodied_rl.rewards.preference import return_correlation
from embodied_rl.trainers.assembly import Run, dataset_id_of
from embodied_rl.trainers.builders import ConfigError
from embodied_rl.validation import check_field_types, check_ranges, settings_from_mapping

ARMS = ("vlm", "scripted", "env_reward")


@dataclass
class VLMIQLConfig:
    """The settings of the vlm_iql pipeline: configs/vlm_iql/default.yaml (`vlm_iql:`) and the run's `llm:`."""

    arm: str = "vlm"
    labelling: LabellingSettings = field(default_factory=LabellingSettings)  # its `teacher` is set by the arm
    reward: ImageRewardConfig = field(default_factory=ImageRewardConfig)
    llm: dict = field(default_factory=dict)  # embodied_rl.llm.LLMSettings (configs/llm/default.yaml)
    frames: int = 64  # frame size of a dataset built here (a dataset without frames is rebuilt with them)
    build_datasets: bool = True  # build a missing Meta-World tier, or rebuild one without frames, first
    dataset_episodes: int = 50  # episodes of a tier built here

    def __post_init__(self) -> None:
        if self.arm not in ARMS:
            raise ValueError(f"vlm_iql.arm={self.arm!r} is not one of {', '.join(ARMS)}")
        if not isinstance(self.labelling, LabellingSettings):
            self.labelling = LabellingSettings.from_mapping(self.labelling)
        teacher = "scripted" if self.arm == "scripted" else "vlm"
        self.labelling = replace(self.labelling, teacher=teacher, llm=dict(self.llm))
        if not isinstance(self.reward, ImageRewardConfig):
            self.reward = ImageRewardConfig.from_mapping(self.reward)
        check_field_types(self, "vlm_iql settings", prefix="vlm_iql.")
        check_ranges("vlm_iql settings", vars(self), dict.fromkeys(("frames", "dataset_episodes"), ">= 1"))
        if self.arm == "vlm":
            from embodied_rl.llm import LLMSettings

            LLMSettings.from_mapping(self.llm)  # a bad llm key is an error before anything runs

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> VLMIQLConfig:
        return settings_from_mapping(cls, values, "vlm_iql")


class VLMIQLPipeline(Pipeline):
    """VLM-labelled offline RL as a run: `experiment=vlm_iql env.task=... llm.base_url=... llm.model=...`."""

    name = "vlm_iql"
    settings_class = VLMIQLConfig
    trainer_kinds = ("offline",)
    top_level_keys = ("llm",)
    outputs = ("vlm_iql.json", "vlm_iql", "labels", "reward")
    resumable = ("labelling.chunk_size", "llm.concurrency", "llm.timeout_s", "llm.max_attempts")

    @classmethod
    def settings_values(cls, cfg: DictConfig) -> dict[str, Any]:
        """`vlm_iql:` with the run's `llm:`."""
        llm = OmegaConf.to_container(cfg.llm, resolve=True) if cfg.get("llm") is not None else {}
        return {**super().settings_values(cfg), "llm": llm}

    def run(self, run: Run) -> dict[str, Any]:
        s = self.settings
        if run.cfg.agent.name == "bc" and s.arm != "env_reward":
            raise ConfigError(
                "agent=bc learns from the actions alone and reads no reward: run it with vlm_iql.arm=env_reward "
                "(nothing is labelled)"
            )
        if s.arm != "env_reward":
            self.ensure_frames(run)
        return run.train_offline(prepare=self.prepare)

    def ensure_frames(self, run: Run) -> None:
        """The run's dataset must carry rendered frames: a missing Meta-World tier, or one stored without frames,
        is built with them (`build_datasets`); otherwise a DatasetError with the command that builds it."""
        s = self.settings
        dataset_id, tier, task = dataset_id_of(run.cfg), run.cfg.trainer.dataset, run.cfg.env.task
        try:
            metadata = open_dataset(dataset_id).storage.metadata
        except DatasetError:
            metadata = None
        if metadata is not None and metadata.get("embodied_rl", {}).get("record_frames"):
            return
        if not (s.build_datasets and tier in METAWORLD_TIERS and task.startswith("metaworld/")):
            if metadata is None:
                raise DatasetError(f"no dataset {dataset_id}")
            raise DatasetError(frames_required_message(dataset_id, metadata, task))
        env = run.cfg.env
        recipe = {"episodes": s.dataset_episodes, "seed": 0, "time_limit": env.get("time_limit")}
        if metadata is not None:  # the same episodes again (count, seeds, time limit, references), with frames
            ours = metadata.get("embodied_rl", {})
            recipe = {
                "episodes": int(metadata.get("total_episodes", s.dataset_episodes)),
                "seed": int(ours.get("seed", 0)),
                "time_limit": ours.get("env", {}).get("time_limit", env.get("time_limit")),
                "reference_episodes": int(metadata.get("num_episodes_average_score", 10)),
            }
        what = "building" if metadata is None else "rebuilding (the same episodes, with frames)"
        run.logger.summary(f"[vlm_iql] {what} {dataset_id}: {recipe['episodes']} episodes, {s.frames}px frames")
        episodes = recipe.pop("episodes")
        metaworld_tiers(
            task,
            episodes,
            tiers=[tier],
            frames=s.frames,
            shadows=env.get("shadows", True),
            overwrite=metadata is not None,
            **recipe,
        )

    # ---------------------------------------------------------------- the method's steps
    def prepare(self, run: Run, dataset: list[Trajectory], env: Any) -> list[Trajectory]:
        """The dataset relabelled by this arm's image reward (its intermediates kept in the run directory)."""
        s = self.settings
        if s.arm == "env_reward":
            return list(dataset)
        check_frames(dataset, run.cfg.trainer.dataset)
        labels_dir = run.run_dir / "labels"
        labelling = run_labelling(
            dataset,
            labels_dir,
            s.labelling,
            task=run.cfg.env.task,
            dataset_id=dataset_id_of(run.cfg),
            chat=self.chat(labels_dir) if s.arm == "vlm" else None,
        )
        if not labelling["complete"]:
            from embodied_rl.llm import LLMError

            usage = labelling["usage"]
            raise LLMError(
                f"labelling stopped with {labelling['finished_pairs']} of {labelling['requested_pairs']} frame pairs "
                f"answered ({usage['errors']} queries failed; the first: {usage['first_error']}); the finished "
                f"labels are kept in {labels_dir} and every answer is cached: run the same command with resume=true "
                "to continue"
            )
        labelled = PreferencePairs.load(labels_dir / "labels.npz")
        if len(labelled) < 2:
            raise DatasetError(
                f"only {len(labelled)} labelled frame pairs (dropped: {labelling['dropped']}): too few to train a "
                f"reward model; see {labels_dir / 'summary.json'}"
            )
        model, reward_report = self.reward_model(run, labelled, dataset)
        relabelled = relabel_with_image_reward(model, dataset)
        report = {
            "arm": s.arm,
            "task": run.cfg.env.task,
            "labelling": labelling,
            "reward_model": reward_report,
            "return_correlation": return_correlation(relabelled, [t.rewards for t in dataset]),
        }
        write_json(run.run_dir / "vlm_iql.json", report)
        if not run.resuming:
            agreement = labelling["agreement_with_scripted"].get("agreement")
            run.logger.log(
                {
                    "labelled_pairs": len(labelled),
                    "agreement_with_scripted": float("nan") if agreement is None else agreement,
                    "reward_val_accuracy": reward_report.get("best_val_accuracy", float("nan")),
                    "return_correlation": report["return_correlation"]["spearman"],
                },
                step=0,
                prefix="vlm_iql",
            )
        return relabelled

    def chat(self, labels_dir: Path) -> ChatAPI:
        """The VLM the run's `llm:` settings reach; its usage is written beside the labels."""
        from embodied_rl.llm import LLMClient, LLMSettings, system_message, user_message

        client = LLMClient(LLMSettings.from_mapping(self.settings.llm), usage_path=labels_dir / "llm_usage.json")
        return ChatAPI(client, user_message, system_message)

    def reward_model(self, run: Run, labelled: PreferencePairs, dataset: list[Trajectory]) -> tuple[Any, dict]:
        """The image reward ensemble on the labelled frame pairs (curves in <run>/reward/), or the saved one."""

        def fit(logger):
            frames_1, frames_2, labels = pair_frames(labelled, dataset)
            return train_image_reward_model(
                frames_1,
                frames_2,
                labels,
                replace(self.settings.reward, device=str(run.device)),
                seed=run.seed,
                progress=run.cfg.trainer.get("progress", True),
                logger=logger,
            )

        out = run.run_dir / "vlm_iql"
        return run.fitted_reward_model(out, fit, save_image_reward_model, load_image_reward_model, tag="vlm_iql")


__all__ = ["ARMS", "VLMIQLConfig", "VLMIQLPipeline"]
