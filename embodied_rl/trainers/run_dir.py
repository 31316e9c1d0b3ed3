"""The run directory of `scripts/train.py`: what a run writes there, how a run starts in it (afresh, resumed or
refused), and its results.json.

A run directory (default runs/<name>/<task>/seed<seed>) holds config.yaml, metrics.csv, TensorBoard events (tb/),
checkpoints/, videos/ and results.json (`RUN_OUTPUTS`), and whatever its pipeline adds (the caller passes those
names in: this module knows no method). `prepare_run_dir` never mixes two runs in one: an existing run needs
resume=true (checked against its config.yaml: only `RESUMABLE_KEYS` and the pipeline's resumable keys may change,
and keys the package gained later, `KEYS_ADDED_LATER`, may be present at their old-behaviour value) or
overwrite=true.
"""

from __future__ import annotations

import copy
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from embodied_rl.envs.tasks import full_task_name
from embodied_rl.files import write_json
from embodied_rl.trainers.builders import ConfigError
from embodied_rl.trainers.checkpoint import checkpoint_step, other_checkpoints
from embodied_rl.validation import flatten

# What every run writes into its run directory (scripts/evaluate.py adds eval/); removed when it starts afresh,
# with the outputs the pipelines declare.
RUN_OUTPUTS = (
    *("checkpoints", "videos", "tb", "eval"),
    *("metrics.csv", "metrics.csv.tmp", "results.json", "results.json.tmp"),
)

# Keys that may differ from the run's config.yaml on resume: the flags, the run directory's name, console
# output, the training length (so a finished run can be extended), and settings that change neither the agent
# nor its data: evaluation, logging and checkpoint schedules, and the replay size (the buffer keeps its newest
# rows), and the thread count. Any other change is refused. logging.tensorboard is not resumable (the curves would
# have a gap), nor trainer.keep_checkpoints (a smaller value would prune the checkpoints a dataset recipe still
# needs). A pipeline adds its own (e.g. a progress bar of its data preparation).
RESUMABLE_KEYS = (
    "resume",
    "threads",
    "overwrite",
    "name",
    "run_dir",
    "logging.console",
    "trainer.progress",
    "trainer.total_steps",
    "trainer.total_updates",
    "trainer.eval_every",
    "trainer.eval_episodes",
    "trainer.eval_videos",
    "trainer.checkpoint_every",
    "trainer.log_every",
    "trainer.save_replay",
    "trainer.replay_size",
)

# Config keys the package gained after runs were made, each with the value that reproduces how runs behaved
# before it existed: a run whose config.yaml lacks one may resume if the key holds that value.
KEYS_ADDED_LATER = {
    "agent.mixed_precision": False,  # 2026-11-23
}

# What Hydra writes into the run directory (hydra.run.dir) before train() starts.
HYDRA_FILES = (".hydra", "train.log")


def prepare_run_dir(
    cfg: DictConfig,
    extra_outputs: Sequence[str] = (),
    extra_resumable: Sequence[str] = (),
    extra_added_later: Mapping[str, Any] | None = None,
) -> tuple[Path, int | None]:
    """Refuse to silently mix two runs in one directory; returns it and the step to resume from (or None).

    overwrite=true, and resume=true before the first checkpoint, start afresh: old outputs (`RUN_OUTPUTS` and
    `extra_outputs`, the pipelines') are removed. `extra_resumable` and `extra_added_later`: the run's pipeline's
    resumable keys and keys added later (as `check_resume_config` takes them).
    """
    run_dir = Path(cfg.run_dir)
    latest = run_dir / "checkpoints" / "latest.pt"
    has_run = latest.exists() or (run_dir / "metrics.csv").exists()
    if has_run and not (cfg.resume or cfg.overwrite):
        raise ConfigError(
            f"{run_dir} already holds a run. Use resume=true to continue it, overwrite=true to "
            f"start afresh, or another name=/run_dir=."
        )
    if cfg.resume and latest.exists():
        check_resume_config(cfg, run_dir / "config.yaml", extra_resumable, extra_added_later)
        try:
            return run_dir, checkpoint_step(latest)
        except (RuntimeError, KeyError) as err:  # a truncated or foreign file
            others = [p.name for p in other_checkpoints(latest)]  # not the newest step file: latest.pt is its link
            hint = (
                f"remove it and copy one of {', '.join(others)} (an older state) to {latest.name} to resume from there"
                if others
                else "no other checkpoint is left"
            )
            raise ConfigError(
                f"cannot resume: {latest} is damaged ({err}); {hint}, or start afresh with overwrite=true"
            ) from None
    legacy = legacy_run_dir(run_dir, cfg.env.task)
    if cfg.resume and (legacy / "checkpoints" / "latest.pt").exists():
        raise ConfigError(
            f"{run_dir} holds no checkpoint, but {legacy} does: a run started with the bare task name before run "
            f"directories named tasks in full; resume it with run_dir={legacy}"
        )
    if cfg.resume and (run_dir / "results.json").exists():
        raise ConfigError(
            f"{run_dir} holds a finished run's results.json but no checkpoints/latest.pt to resume from; "
            f"overwrite=true starts it afresh"
        )
    if cfg.resume or cfg.overwrite:
        for item in (*RUN_OUTPUTS, *extra_outputs):
            path = run_dir / item
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir, None


def legacy_run_dir(run_dir: Path, task: str) -> Path:
    """Where a run of `task` given by its bare name went before run directories named tasks in full
    (runs/<name>/reach-v3/seed1 for runs/<name>/metaworld/reach-v3/seed1); `run_dir` itself when that differs
    in nothing (a run_dir= of the user's own)."""
    full = full_task_name(task)
    return Path(str(run_dir).replace(f"/{full}/", f"/{full.rpartition('/')[2]}/", 1))


def check_resume_config(
    cfg: DictConfig,
    stored: Path,
    extra_resumable: Sequence[str] = (),
    extra_added_later: Mapping[str, Any] | None = None,
) -> None:
    """Refuse to resume with a config that differs from the run's config.yaml (`stored`) outside
    RESUMABLE_KEYS and `extra_resumable`: a changed network or task would fail on the checkpoint, or silently mix
    two setups. Keys the package gained later (`KEYS_ADDED_LATER` and `extra_added_later`) may be new at their
    old-behaviour value."""
    resumable = (*RESUMABLE_KEYS, *extra_resumable)
    added_later = {**KEYS_ADDED_LATER, **(extra_added_later or {})}
    if not stored.exists():
        raise ConfigError(
            f"{stored} is missing, so resume=true cannot check that the run continues with its own config; "
            f"restore it, or start afresh with overwrite=true"
        )
    old = flatten(OmegaConf.to_container(OmegaConf.load(stored)))
    if "env.task" in old:  # runs made before config.yaml named tasks in full may hold a bare name
        old["env.task"] = full_task_name(old["env.task"])
    # Values derived from resumable keys may change with them (IQL's actor_lr_schedule_steps interpolates
    # trainer.total_updates: its cosine schedule stretches to the new length), so compare a copy of the new
    # config whose resumable keys hold their stored values.
    probe = copy.deepcopy(cfg)
    with open_dict(probe):
        for key in resumable:
            if key in old:
                OmegaConf.update(probe, key, old[key], merge=False)
    new = flatten(OmegaConf.to_container(OmegaConf.create(OmegaConf.to_yaml(probe, resolve=True))))
    unset = "<unset>"
    # A key the package gained after the run was made is missing from its config.yaml: it may hold the value
    # that keeps the old behaviour (any other value, or any other new key, is a change).
    added = sorted(k for k in new.keys() - old.keys() if k in added_later and new[k] == added_later[k])
    changed = sorted(
        k
        for k in old.keys() | new.keys()
        if k not in resumable and k not in added and old.get(k, unset) != new.get(k, unset)
    )
    if changed:
        diffs = "; ".join(f"{k}: {old.get(k, unset)} -> {new.get(k, unset)}" for k in changed)
        raise ConfigError(
            f"resume=true with a config that differs from {stored}: {diffs}. Resume with the run's config "
            f"(only the training length, the evaluation, logging and checkpoint settings and trainer.replay_size "
            f"may change) or start afresh with overwrite=true"
        )
    if added:
        print(f"note: {stored} predates {', '.join(added)}; resuming with the earlier behaviour", file=sys.stderr)


def remove_unused_run_dir(run_dir: Path) -> None:
    """Remove `run_dir` if it holds nothing but Hydra's files and config.yaml, and the folders above it
    that this leaves empty, up to the working directory."""
    if not run_dir.is_dir() or not {p.name for p in run_dir.iterdir()} <= {*HYDRA_FILES, "config.yaml"}:
        return
    if Path.cwd().resolve().is_relative_to(run_dir.resolve()):  # run_dir=. (or above): never remove it
        return
    shutil.rmtree(run_dir)
    cwd = Path.cwd().resolve()
    for parent in run_dir.resolve().parents:
        if parent == cwd or not parent.is_relative_to(cwd) or any(parent.iterdir()):
            break
        parent.rmdir()


def mark_unfinished(run_dir: Path) -> None:
    """A finished run being extended is unfinished again once it trains (not before: a refused extension keeps
    the results.json of the run as it is)."""
    (run_dir / "results.json").unlink(missing_ok=True)


def write_results(cfg: DictConfig, run_dir: Path, results: dict, device) -> dict:
    """results.json: the trainer's results (final and best evaluation, counts) and what the run was."""
    results = {**results, "task": cfg.env.task, "agent": cfg.agent.name, "seed": cfg.seed, "device": str(device)}
    write_json(run_dir / "results.json", results)
    return results
