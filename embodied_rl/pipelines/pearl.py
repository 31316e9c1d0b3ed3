"""PEARL: Liu, Du, Bai, Lyu & Li, "PEARL: Zero-shot Cross-task Preference Alignment and Robust Reward Learning for
Robotic Manipulation", ICML 2024 (arXiv:2306.03615).

Preferences labelled on a source task are carried over to a target task whose data has no labels, then a reward
model learned from them relabels the target dataset for offline RL. Flow, top to bottom (`PEARLPipeline.prepare`):

    source dataset --sample_segment_pairs + ScriptedTeacher--> labelled source pairs (the "human" labels)
    target dataset --sample_segment_pairs--> unlabelled target pairs
    segments of both --distance_matrix, gw_coupling--> coupling T (Ns, Nt)          (CPA, section 4.1)
    T, source labels --transfer_labels--> soft target labels                          (CPA, normalised weights)
    target pairs + labels --train_reward_model (robust: Gaussian rewards)--> r(s, a)  (RRL, section 4.2)
    target dataset --relabel_trajectories--> IQL (the run's offline learner)

The segment sets that Gromov-Wasserstein aligns are the segments of the pairs: pair p of P pairs is segments
(p, P + p) of its task's set, so 1000 pairs per task give the 2000 x 2000 problem.

Arms (`arm`), from the same command:
- `pearl`: RPT+CPA, transferred labels and a robust (Gaussian) reward model;
- `pt_cpa`: PT+CPA, transferred labels and a plain reward model;
- `oracle`: the target pairs labelled by the scripted teacher (no transfer);
- `few_labels`: only the first `few_labels` target pairs, labelled by the scripted teacher;
- `zero_reward`: IQL on a reward of 0 everywhere (what the data alone gives);
- `env_reward`: IQL on the env's own reward.
`reward.robust` applies to the oracle and few_labels arms; pearl forces it on and pt_cpa off.

Choices the paper leaves open, made here: the transferred label is the transport-weighted mean of source labels
(weights normalised over the labelled source pairs; the paper's formula as written shrinks labels, see
`embodied_rl.labelling.transfer`); segments are compared by their states (`features`), distances normalised by
their maximum; the teacher is B-Pref's oracle unless `teacher` adds noise; transfer accuracy is measured against the
noise-free teacher on the target pairs in every arm that transfers.

Every intermediate is kept in <run>/pearl/ (pairs, coupling, reward model) and pearl.json (report), so a resumed run
relabels with the same reward model without training it again.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from embodied_rl.data import DatasetError, dataset_id_for, load_trajectories
from embodied_rl.data.preferences import (
    PreferencePairs,
    import_preference_labels,
    pair_segment_arrays,
    sample_segment_pairs,
)
from embodied_rl.data.trajectory import Trajectory
from embodied_rl.envs.tasks import canonical_task
from embodied_rl.files import atomic_write, write_json
from embodied_rl.labelling.preference_teacher import ScriptedTeacher
from embodied_rl.labelling.transfer import (
    distance_matrix,
    gw_coupling,
    segment_features,
    transfer_accuracy,
    transfer_labels,
)
from embodied_rl.pipelines.base import Pipeline
from embodied_rl.rewards.preference import (
    RewardModelConfig,
    load_reward_model,
    relabel_trajectories,
    return_correlation,
    save_reward_model,
    train_reward_model,
)
from embodied_rl.trainers.assembly import Run
from embodied_rl.trainers.builders import ConfigError
from embodied_rl.validation import check_field_types, check_ranges, settings_from_mapping

ARMS = ("pearl", "pt_cpa", "oracle", "few_labels", "zero_reward", "env_reward")
TRANSFER_ARMS = ("pearl", "pt_cpa")


@dataclass
class TaskData:
    """A task and the dataset of it (a tier name of `scripts/make_datasets.py` or a full Minari id)."""

    task: str
    dataset: str = "mixed"

    @property
    def dataset_id(self) -> str:
        return self.dataset if "/" in self.dataset else dataset_id_for(self.task, self.dataset)


@dataclass
class PEARLConfig:
    """The settings of the PEARL pipeline: configs/pearl/default.yaml (`pearl:`) and the run's `source:`."""

    source: TaskData = field(default_factory=lambda: TaskData("metaworld/button-press-v3"))
    arm: str = "pearl"
    segment_length: int = 50  # H: steps per segment
    source_pairs: int = 1000  # labelled source pairs (2x as many source segments for GW)
    target_pairs: int = 1000  # unlabelled target pairs whose labels CPA transfers
    few_labels: int = 20  # target pairs with scripted labels in the few_labels arm
    features: str = "states"  # states | state_actions: what a segment is compared by
    metric: str = "euclidean"  # distance between segment features
    normalize: str | None = "max"  # distances divided by their max (max) or as they are (None)
    gw_method: str = "exact"  # exact | entropic | fast (embodied_rl.labelling.transfer.gw_coupling)
    gw_options: dict = field(default_factory=dict)  # keyword arguments of gw_coupling's method
    tie_band: float = 0.0  # transferred labels within 0.5 +- tie_band become ties (0.5)
    min_confidence: float = 0.0  # drop target pairs with less transport weight (transfer_labels)
    teacher: ScriptedTeacher = field(default_factory=ScriptedTeacher)  # labels the source (oracle: the target)
    reward: RewardModelConfig = field(default_factory=lambda: RewardModelConfig(kind="transformer", progress=True))
    source_labels: str | None = None  # a label file for the source dataset (Preference Transformer layout) instead
    # of the scripted teacher: human labels (embodied_rl.data.preferences.import_preference_labels)
    build_datasets: bool = True  # build a missing Meta-World tier (scripts/make_datasets.py's recipe) first
    dataset_episodes: int = 50  # episodes of a tier built here

    def __post_init__(self) -> None:
        if not isinstance(self.source, TaskData):
            self.source = TaskData(**dict(self.source))
        self.source.task = canonical_task(self.source.task)  # an unknown task: one clear error
        if not isinstance(self.teacher, ScriptedTeacher):
            self.teacher = ScriptedTeacher.from_mapping(self.teacher)
        if not isinstance(self.reward, RewardModelConfig):
            self.reward = RewardModelConfig.from_mapping(self.reward)
        self.gw_options = dict(self.gw_options or {})
        check_field_types(self, "pearl settings", prefix="pearl.")
        check_ranges(
            "pearl settings",
            vars(self),
            {
                **dict.fromkeys(("segment_length", "source_pairs", "target_pairs", "few_labels"), ">= 1"),
                "dataset_episodes": ">= 1",
                "tie_band": "[0, 0.5]",
                "min_confidence": ">= 0",
            },
            prefix="pearl.",
        )
        for key, value, allowed in [
            ("arm", self.arm, ARMS),
            ("features", self.features, ("states", "state_actions")),
            ("gw_method", self.gw_method, ("exact", "entropic", "fast")),
        ]:
            if value not in allowed:
                raise ValueError(f"pearl.{key}={value!r} is not one of {', '.join(allowed)}")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> PEARLConfig:
        return settings_from_mapping(cls, values, "pearl")

    def reward_config(self) -> RewardModelConfig:
        """The reward model of this arm: robust for pearl, plain for pt_cpa, as configured otherwise."""
        if self.arm == "pearl":
            return replace(self.reward, robust=True)
        if self.arm == "pt_cpa":
            return replace(self.reward, robust=False)
        return self.reward


class PEARLPipeline(Pipeline):
    """PEARL as a run: `experiment=pearl source.task=... target.task=...` (configs/experiment/pearl.yaml)."""

    name = "pearl"
    settings_class = PEARLConfig
    trainer_kinds = ("offline",)
    top_level_keys = ("source", "target")  # the experiment's `source:` / `target:` (target: env.task's alias)
    outputs = ("pearl.json", "pearl", "reward")
    resumable = ("reward.progress",)

    @classmethod
    def settings_values(cls, cfg: DictConfig) -> dict[str, Any]:
        """`pearl:` with the run's `source:` (the target is the run's env.task and trainer.dataset)."""
        if cfg.get("source") is None:
            raise ConfigError("the pearl pipeline needs a source task: source.task=metaworld/<name>-v3")
        return {**super().settings_values(cfg), "source": OmegaConf.to_container(cfg.source, resolve=True)}

    def run(self, run: Run) -> dict[str, Any]:
        s = self.settings
        datasets = {"target": TaskData(run.cfg.env.task, run.cfg.trainer.dataset)}
        if s.arm in TRANSFER_ARMS:
            datasets["source"] = s.source
        for role, data in datasets.items():
            self.ensure_dataset(data, run)
            self.check_dataset(role, data)
        return run.train_offline(prepare=self.prepare)

    def check_dataset(self, role: str, data: TaskData) -> None:
        """The input errors a user can make, each one DatasetError before the run writes anything: segments longer
        than every episode, a source label file that does not match the source dataset."""
        s = self.settings
        trajectories = load_trajectories(data.dataset_id)
        longest = max((len(t) for t in trajectories), default=0)
        if longest < s.segment_length:
            raise DatasetError(
                f"pearl.segment_length={s.segment_length} is longer than every episode of the {role} dataset "
                f"{data.dataset_id} (the longest has {longest} steps)"
            )
        if role == "source" and s.source_labels is not None:
            import_preference_labels(s.source_labels, trajectories, s.segment_length)

    def ensure_dataset(self, data: TaskData, run: Run) -> None:
        """Build a missing Meta-World tier with the recipe of scripts/make_datasets.py (when `build_datasets`)."""
        from embodied_rl.data import open_dataset
        from embodied_rl.pipelines.offline_datasets import METAWORLD_TIERS, metaworld_tiers

        try:
            open_dataset(data.dataset_id)
            return
        except DatasetError:
            if not (self.settings.build_datasets and data.dataset in METAWORLD_TIERS):
                raise
        run.logger.summary(f"[pearl] building {data.dataset_id} ({self.settings.dataset_episodes} episodes)")
        metaworld_tiers(data.task, self.settings.dataset_episodes, tiers=[data.dataset], seed=0, progress=True)

    # ---------------------------------------------------------------- the method's steps
    def prepare(self, run: Run, target: list[Trajectory], env: Any) -> list[Trajectory]:
        """The target dataset relabelled by this arm's reward (its intermediates kept in <run>/pearl/)."""
        s = self.settings
        out = run.run_dir / "pearl"
        out.mkdir(exist_ok=True)
        report: dict[str, Any] = {"arm": s.arm, "source": asdict(s.source), "target": run.cfg.env.task}
        if s.arm == "env_reward":
            return list(target)
        if s.arm == "zero_reward":
            return [_with_rewards(t, np.zeros_like(t.rewards, dtype=np.float32)) for t in target]

        pairs = _cached_pairs(out / "target_pairs.npz", run.resuming) or sample_segment_pairs(
            target, s.target_pairs, s.segment_length, seed=run.seed
        )
        pairs.save(out / "target_pairs.npz")
        if s.arm == "oracle":
            labelled = s.teacher.label(pairs, target, seed=run.seed)
        elif s.arm == "few_labels":
            labelled = s.teacher.label(pairs.select(np.arange(len(pairs)) < s.few_labels), target, seed=run.seed)
        else:
            labelled, transfer_report = self.transfer(run, target, pairs, out)
            report.update(transfer_report)
        labelled.save(out / "labelled_pairs.npz")
        report["num_labelled_pairs"] = len(labelled)

        model, reward_report = self.reward_model(run, labelled, target, out)
        report["reward_model"] = reward_report
        relabelled = relabel_trajectories(model, target)
        report["return_correlation"] = return_correlation(relabelled, [t.rewards for t in target])
        write_json(run.run_dir / "pearl.json", report)
        summary = {k: report[k] for k in ("transfer_accuracy",) if k in report}
        summary["reward_val_accuracy"] = reward_report.get("best_val_accuracy", float("nan"))
        summary["return_correlation"] = report["return_correlation"]["spearman"]
        if not run.resuming:
            run.logger.log(summary, step=0, prefix="pearl")
        return relabelled

    def transfer(
        self, run: Run, target: list[Trajectory], target_pool: PreferencePairs, out: Path
    ) -> tuple[PreferencePairs, dict[str, Any]]:
        """CPA with the run's intermediates: source pairs and coupling made once, reused on resume."""
        s = self.settings
        source = load_trajectories(s.source.dataset_id)
        source_pairs = _cached_pairs(out / "source_pairs.npz", run.resuming)
        if source_pairs is None:
            source_pairs = source_labels(source, s, seed=run.seed + 1)
            source_pairs.save(out / "source_pairs.npz")
        coupling_path = out / "coupling.npy"
        coupling = np.load(coupling_path) if run.resuming and coupling_path.exists() else None
        if coupling is None:
            run.logger.summary(
                f"[pearl] Gromov-Wasserstein ({s.gw_method}): {2 * len(source_pairs)} source x "
                f"{2 * len(target_pool)} target segments"
            )
        transferred, coupling, report = cross_task_labels(
            source, source_pairs, target, target_pool, s, seed=run.seed, coupling=coupling
        )
        with atomic_write(coupling_path, "wb") as f:
            np.save(f, coupling)
        run.logger.summary(
            f"[pearl] transferred labels to {len(transferred)} target pairs from {len(source_pairs)} source pairs: "
            f"accuracy {report['transfer_accuracy']:.3f} against the scripted target labels"
        )
        return transferred, report

    def reward_model(
        self, run: Run, labelled: PreferencePairs, target: list[Trajectory], out: Path
    ) -> tuple[Any, dict[str, Any]]:
        """The arm's reward model on the labelled target pairs (its curves in <run>/reward/), or the saved one."""

        def fit(logger):
            first, second = pair_segment_arrays(labelled, target, keys=("obs", "action"))
            return train_reward_model(
                first["obs"],
                first["action"],
                second["obs"],
                second["action"],
                labelled.label,
                self.settings.reward_config(),
                seed=run.seed,
                device=run.device,
                logger=logger,
            )

        return run.fitted_reward_model(out, fit, save_reward_model, load_reward_model, tag="pearl")


def source_labels(source: Sequence[Trajectory], s: PEARLConfig, seed: int) -> PreferencePairs:
    """The labelled source pairs: read from `s.source_labels`, or sampled and labelled by `s.teacher`."""
    if s.source_labels is not None:
        return import_preference_labels(s.source_labels, source, s.segment_length)
    return s.teacher.label(sample_segment_pairs(source, s.source_pairs, s.segment_length, seed=seed), source, seed=seed)


def pair_features(pairs: PreferencePairs, trajectories: Sequence[Trajectory], kind: str) -> np.ndarray:
    """(2P, D) features of the segments of P pairs: the first segments, then the second (pair p = (p, P + p))."""
    first, second = pair_segment_arrays(pairs, trajectories, keys=("obs", "action"))
    obs = np.concatenate([first["obs"], second["obs"]])  # (2P, H, S)
    action = np.concatenate([first["action"], second["action"]])  # (2P, H, A)
    return segment_features(obs, action, kind=kind)


def cross_task_labels(
    source: Sequence[Trajectory],
    source_pairs: PreferencePairs,
    target: Sequence[Trajectory],
    target_pool: PreferencePairs,
    s: PEARLConfig,
    seed: int = 0,
    coupling: np.ndarray | None = None,
) -> tuple[PreferencePairs, np.ndarray, dict[str, Any]]:
    """CPA (PEARL section 4.1): labelled source pairs -> Gromov-Wasserstein coupling T between the source segments
    and the target segments (those of `target_pool`'s pairs) -> labelled target pairs; (pairs, T, report).

    The target pairs that get labels are drawn through the coupling (ours): a labelled source pair (i, k) drawn
    uniformly, then j ~ T[i, :] and l ~ T[k, :]; so every target pair has transport weight from the labelled source
    pairs, with the exact solver's sparse coupling too (a target pair drawn uniformly would mostly have none: its two
    segments rarely map onto one labelled source pair). Its label is the normalised weighted mean over all labelled
    source pairs (`transfer_labels`), not only the one it was drawn from. `coupling`: a T computed before (resume).
    The report's accuracy compares the labels with the noise-free scripted teacher's on the target."""
    seconds = None
    if coupling is None:
        started = time.perf_counter()
        source_costs = distance_matrix(pair_features(source_pairs, source, s.features), s.metric, s.normalize)
        target_costs = distance_matrix(pair_features(target_pool, target, s.features), s.metric, s.normalize)
        coupling = np.asarray(gw_coupling(source_costs, target_costs, method=s.gw_method, **s.gw_options))
        seconds = time.perf_counter() - started
    P_s = len(source_pairs)
    j, l = _pairs_through(coupling, np.arange(P_s), np.arange(P_s) + P_s, s.target_pairs, seed=seed + 2)
    labels, confidence = transfer_labels(
        coupling,
        (np.arange(P_s), np.arange(P_s) + P_s),
        source_pairs.label,
        (j, l),
        tie_band=s.tie_band,
        min_confidence=s.min_confidence,
    )
    episodes = np.concatenate([target_pool.episode_1, target_pool.episode_2])  # (2P,) the pool's segments
    starts = np.concatenate([target_pool.start_1, target_pool.start_2])
    drawn = PreferencePairs(s.segment_length, episodes[j], starts[j], episodes[l], starts[l], labels)
    transferred = replace(drawn.select(np.isfinite(labels)), source=f"transferred:{s.source.task}")
    truth = ScriptedTeacher().label(transferred, target, seed=seed)  # noise-free, for the accuracy only
    report = {
        "num_source_pairs": P_s,
        "num_target_pairs": len(j),
        "num_transferred": len(transferred),
        "transfer_accuracy": transfer_accuracy(transferred.label, truth.label),
        "confidence_mean": float(np.mean(confidence)),
        "gw_method": s.gw_method,
        "gw_seconds": seconds,
    }
    return transferred, coupling, report


def _with_rewards(trajectory: Trajectory, rewards: np.ndarray) -> Trajectory:
    """`trajectory` with other rewards, the dataset's kept in infos["env_reward"]."""
    infos = {"env_reward": trajectory.rewards, **trajectory.infos}
    return replace(trajectory, rewards=np.asarray(rewards, dtype=np.float32), infos=infos)


def _pairs_through(
    coupling: np.ndarray, source_1: np.ndarray, source_2: np.ndarray, count: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """`count` target pairs (j, l) drawn through the coupling T (Ns, Nt) from the source pairs (source_1, source_2):
    a source pair (i, k) uniformly, then j ~ T[i, :] / T[i, :].sum() and l ~ T[k, :] likewise; pairs with j == l
    (one segment compared with itself) are drawn again. Deterministic for a seed."""
    rng = np.random.default_rng(seed)
    cumulative = np.cumsum(np.asarray(coupling, dtype=np.float64), axis=1)  # (Ns, Nt)

    def draw(rows: np.ndarray) -> np.ndarray:  # one target segment per source row, by inverse CDF
        u = rng.random(len(rows)) * cumulative[rows, -1]
        return np.minimum((cumulative[rows] <= u[:, None]).sum(axis=1), cumulative.shape[1] - 1)

    j, l = np.empty(0, np.int64), np.empty(0, np.int64)
    for _ in range(100):  # a coupling mapping most pairs onto one segment would never finish: bounded
        chosen = rng.integers(len(source_1), size=count - len(j))
        new_j, new_l = draw(source_1[chosen]), draw(source_2[chosen])
        distinct = new_j != new_l
        j, l = np.concatenate([j, new_j[distinct]]), np.concatenate([l, new_l[distinct]])
        if len(j) == count:
            break
    return j, l


def _cached_pairs(path: Path, resuming: bool) -> PreferencePairs | None:
    return PreferencePairs.load(path) if resuming and path.exists() else None
