"""Start any training run from Python, without Hydra's command line: the library call behind scripts/train.py.

    from embodied_rl.runs import compose_config, train

    cfg = compose_config(["experiment=iql", "env.task=metaworld/drawer-open-v3", "trainer.dataset=medium"])
    results = train(cfg)          # results.json's dict: final and best evaluation, counts, task, agent, seed

`compose_config` builds the same config as `python scripts/train.py <overrides>` from configs/; `train` also takes
a complete config as a plain dict (e.g. a run's config.yaml loaded and edited). A run goes like this:

1. check the run settings (unknown keys, types, ranges), the trainer's, the pipeline's (a refused run leaves no
   run directory);
2. prepare the run directory: start afresh, resume from its checkpoint, or refuse to mix two runs
   (`trainers.run_dir`; the pipeline declares its outputs and resumable settings);
3. seed, write config.yaml, open the logger, set torch's thread count;
4. hand the `Run` to its pipeline (`pipelines.base`), or for a plain run to `Run.train_online` /
   `Run.train_offline` by `trainer.kind`;
5. write results.json and one summary line.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from embodied_rl.data import DatasetError
from embodied_rl.envs import UnknownTaskError
from embodied_rl.pipelines.base import all_pipeline_outputs, pipeline_for, pipeline_keys, resume_rules
from embodied_rl.trainers.assembly import Run, config_errors, dataset_id_of, trainer_config_from
from embodied_rl.trainers.builders import ConfigError, resolve_device, seed_everything
from embodied_rl.validation import check_ranges, check_types, flatten

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"

# The types of the run's own settings (the env, agent, trainer and pipeline groups check theirs); any other
# top-level or logging key (e.g. from `+foo=1`) is an error.
RUN_SETTING_TYPES = {
    "name": None,  # any value becomes part of a path (name=123 too)
    "seed": "int",
    "device": "str",
    "deterministic": "bool",
    "resume": "bool",
    "overwrite": "bool",
    "run_dir": None,
    "threads": None,  # an integer or "auto": checked by embodied_rl.threads
    "logging.tensorboard": "bool",
    "logging.console": "bool",
    # keys of trainer=online that the assembly reads (trainers.assembly.ASSEMBLY_KEYS), not OnlineTrainerConfig
    "trainer.num_envs": "int",
    "trainer.asynchronous_envs": "bool",
    "trainer.replay_size": "int",
    "trainer.replay_device": "str",
}
CONFIG_GROUPS = ("env", "agent", "trainer")  # and the pipeline's keys: checked by their own configs


def compose_config(overrides: Sequence[str] = (), config_dir: str | Path = CONFIG_DIR) -> DictConfig:
    """The config of `python scripts/train.py <overrides>` (Hydra's compose API over `config_dir`)."""
    from hydra import compose, initialize_config_dir

    if not Path(config_dir, "config.yaml").exists():
        raise ConfigError(f"no config.yaml in {config_dir}: pass config_dir= the repository's configs/ folder")
    with initialize_config_dir(config_dir=str(Path(config_dir).resolve()), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def train(cfg: DictConfig | Mapping[str, Any], parallel_jobs: int = 1) -> dict[str, Any]:
    """Run the training `cfg` describes (see the module docstring); returns results.json's dict.

    `parallel_jobs`: runs sharing this machine's cores (a local sweep), for `threads=auto`. A run refused for its
    config (a bad option, an unknown task, a missing dataset) before writing any output leaves no run directory
    behind; any other failure keeps it."""
    from embodied_rl.trainers.run_dir import remove_unused_run_dir

    if not isinstance(cfg, DictConfig):
        cfg = OmegaConf.create(dict(cfg))
    try:
        return _train(cfg, parallel_jobs)
    except (UnknownTaskError, DatasetError, ConfigError):
        remove_unused_run_dir(Path(cfg.run_dir))
        raise


def _train(cfg: DictConfig, parallel_jobs: int) -> dict[str, Any]:
    from embodied_rl.envs.tasks import canonical_task
    from embodied_rl.logging import RunLogger
    from embodied_rl.threads import set_threads
    from embodied_rl.trainers.evaluation import describe_evaluation
    from embodied_rl.trainers.run_dir import prepare_run_dir, write_results

    check_run_settings(cfg)
    device = resolve_device(cfg.device)
    trainer_config = trainer_config_from(cfg)  # a bad setting is an error before the run directory is touched
    pipeline = pipeline_for(cfg)
    if cfg.trainer.kind == "online" and trainer_config.total_steps < trainer_config.seed_steps:
        print(
            f"warning: trainer.total_steps={trainer_config.total_steps} is below trainer.seed_steps="
            f"{trainer_config.seed_steps}: the run takes only random actions and never updates the agent",
            file=sys.stderr,
        )
    with config_errors():
        threads = set_threads(cfg.get("threads", "auto"), parallel_jobs)
    with open_dict(cfg):
        cfg.env.task = canonical_task(cfg.env.task)  # config.yaml and results.json name the task in full
    run_dir, resume_step = prepare_run_dir(cfg, all_pipeline_outputs(), *resume_rules(cfg))
    total = cfg.trainer.total_steps if cfg.trainer.kind == "online" else cfg.trainer.total_updates
    if resume_step is not None and resume_step >= total:
        return already_complete(cfg, run_dir, resume_step, total, device)
    seed_everything(cfg.seed, cfg.deterministic)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    logger = RunLogger(run_dir, tensorboard=cfg.logging.tensorboard, console=cfg.logging.console)
    if cfg.resume and resume_step is None:
        logger.summary(f"[resume] no checkpoint in {run_dir}: starting from step 0 with fresh logs")
    logger.summary(f"[run] {threads}")
    run = Run(cfg, run_dir, device, logger, resuming=resume_step is not None)
    try:
        if pipeline is not None:
            results = pipeline.run(run)
        elif cfg.trainer.kind == "online":
            results = run.train_online()
        else:
            results = run.train_offline()
    finally:
        logger.close()
    results = write_results(cfg, run_dir, results, device)
    final = results.get("final")
    unit = "step" if cfg.trainer.kind == "online" else "update"
    described = f"final at {unit} {final['step']}: {describe_evaluation(final)}" if final else "no evaluation"
    logger.summary(f"[done] {run_dir}: {described}")
    return results


def check_run_settings(cfg: DictConfig) -> None:
    """One ConfigError for a top-level or logging key that a run does not know, a value of the wrong type
    (a flag given as `no` would count as true), a seed numpy cannot take, or resume=true with overwrite=true."""
    flat = flatten(OmegaConf.to_container(cfg, resolve=True))
    known_prefixes = tuple(f"{group}." for group in (*CONFIG_GROUPS, *pipeline_keys(cfg)))
    top_level = pipeline_keys(cfg)  # a pipeline's own top-level settings (e.g. Text2Reward's `instruction`)
    unknown = sorted(
        k for k in flat if k not in RUN_SETTING_TYPES and k not in top_level and not k.startswith(known_prefixes)
    )
    if unknown:
        raise ConfigError(f"unknown config key(s) {', '.join(unknown)}; see configs/config.yaml")
    with config_errors():
        checked = check_types("run settings", flat, RUN_SETTING_TYPES)
        check_ranges("run settings", flat, {"seed": "[0, 4294967295]"})  # numpy's seed range
    with open_dict(cfg):  # whole-number floats of integer settings (seed=1e3 is read as 1000.0) as ints
        for key, kind in RUN_SETTING_TYPES.items():
            if kind == "int" and key in checked:
                OmegaConf.update(cfg, key, checked[key])
    if cfg.resume and cfg.overwrite:
        raise ConfigError("resume=true and overwrite=true contradict each other: continue the run or start afresh")


def already_complete(cfg: DictConfig, run_dir: Path, step: int, total: int, device) -> dict[str, Any]:
    """A resume of a finished run: nothing is trained, evaluated or logged again. A run killed after its last
    checkpoint but before its results.json gets it from that checkpoint, which holds the evaluations."""
    from embodied_rl.trainers import OfflineTrainer, OnlineTrainer
    from embodied_rl.trainers.checkpoint import load_checkpoint
    from embodied_rl.trainers.run_dir import write_results

    print(f"[done] {run_dir} is already complete (checkpoint at {step}, total {total}); nothing to do")
    results = run_dir / "results.json"
    if results.exists():
        return json.loads(results.read_text())
    trainer_state = load_checkpoint(run_dir / "checkpoints" / "latest.pt", mmap=True)["trainer"]
    if cfg.trainer.kind == "online":
        rebuilt = OnlineTrainer.results(trainer_state)
    else:
        rebuilt = {**OfflineTrainer.results(trainer_state), "dataset": dataset_id_of(cfg)}
    print(f"[done] wrote the missing {results} from the checkpoint")
    return write_results(cfg, run_dir, rebuilt, device)
