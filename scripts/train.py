"""Train an agent with one Hydra command.

    python scripts/train.py env.task=metaworld/reach-v3 seed=1
    python scripts/train.py experiment=sac_metaworld env.task=metaworld/drawer-open-v3 seed=3
    python scripts/train.py experiment=iql trainer.dataset=medium       # offline; each method: configs/experiment/
    python scripts/train.py -m hydra/launcher=local seed=1,2,3                      # a local sweep

The run directory (default runs/<name>/<task>/seed<seed>) receives config.yaml, metrics.csv, TensorBoard events
(tb/), checkpoints/, videos/ and results.json, and what the run's pipeline adds. A killed run continues with the
same command plus `resume=true`; only the training length and the resumable settings (how often to evaluate, log
and checkpoint, the replay size, ...; embodied_rl.trainers.run_dir.RESUMABLE_KEYS and the pipeline's) may change
then, to extend a run. A resume before the first checkpoint starts afresh; one of a finished run does nothing.
A run refused for its config before writing any output leaves no run directory behind.

This script is Hydra's command line, the checks only it can make, and the dispatch: the run itself is the library
call `embodied_rl.runs.train(cfg)`, which works without Hydra too.
"""

from __future__ import annotations

import os
import shlex
import signal
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

import embodied_rl  # noqa: F401  (registers the config resolvers, e.g. ${full_task:...} of run_dir)

CONFIG_DIR = str(Path(__file__).resolve().parents[1] / "configs")


def train(cfg: DictConfig) -> dict:
    """`embodied_rl.runs.train` after the checks that need Hydra's command line; returns results.json's dict."""
    from embodied_rl.runs import train as train_run
    from embodied_rl.trainers.builders import ConfigError
    from embodied_rl.trainers.run_dir import remove_unused_run_dir

    removed = removed_keys()  # first: what reads a removed key fails with a traceback
    if removed:
        remove_unused_run_dir(Path(cfg.run_dir))  # Hydra made it; a refused run leaves none
        raise ConfigError(
            f"removing config keys ({', '.join('~' + key for key in removed)}) is not supported: the code's default "
            f"would apply with no trace in config.yaml; set a value instead (key=value)"
        )
    return train_run(cfg, parallel_jobs=parallel_jobs())


def removed_keys() -> list[str]:
    """The keys a `~key` command-line override removed (none when not run through Hydra's command line)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return []
    return [o[1:].split("=", 1)[0] for o in HydraConfig.get().overrides.task if o.startswith("~")]


def parallel_jobs() -> int:
    """How many runs of this sweep share the machine's cores: the joblib launcher's n_jobs (hydra/launcher=local;
    -1 or less means as many as there are cores), else 1 (one run, or one Slurm job per node)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return 1
    launcher = HydraConfig.get().launcher
    n_jobs = launcher.get("n_jobs") if "joblib" in str(launcher.get("_target_", "")) else None
    if n_jobs is None:
        return 1
    return n_jobs if n_jobs > 0 else max((os.cpu_count() or 1) + 1 + n_jobs, 1)  # joblib: -1 = all cores


def exit_on_interrupt(run_dir: Path) -> None:
    """Make Ctrl-C print one line on how to resume and end the process at once (exit 130). Not an exception
    unwinding through the run: one CI run hung after Ctrl-C (not reproduced in 22 tries; the likely cause is a
    KeyboardInterrupt raised at an arbitrary point, e.g. while a lock of TensorBoard's writer thread is held).
    Nothing a resume needs is lost: checkpoints are written atomically, and a resume drops what was logged after
    the last checkpoint."""

    def stop(signum, frame) -> None:
        os.write(2, f"\ninterrupted: {interrupted_state(run_dir, sys.argv[1:])}\n".encode())  # print() may be mid-write
        os._exit(130)

    signal.signal(signal.SIGINT, stop)


def interrupted_state(run_dir: Path, arguments: list[str]) -> str:
    """What a user can do after Ctrl-C, as a command that works: resume from the last checkpoint if one was
    written (the command's own overwrite=true would contradict resume=true, so it is left out), else start again."""
    from embodied_rl.trainers.checkpoint import checkpoint_step

    kept = [a for a in arguments if a.split("=", 1)[0].lstrip("+") not in ("resume", "overwrite")]
    command = shlex.join(["python", "scripts/train.py", *kept])
    try:
        step = checkpoint_step(run_dir / "checkpoints" / "latest.pt")
    except (FileNotFoundError, RuntimeError, KeyError):
        return f"no checkpoint in {run_dir} yet; start it again with: {command} overwrite=true"
    return f"{run_dir} has a checkpoint at step {step}; continue it with: {command} resume=true"


@hydra.main(config_path=CONFIG_DIR, config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from embodied_rl.data import DatasetError
    from embodied_rl.envs import UnknownTaskError
    from embodied_rl.llm import LLMError
    from embodied_rl.trainers.builders import ConfigError
    from embodied_rl.trainers.divergence import TrainingDiverged

    multirun = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    if not multirun:  # in a sweep, the launcher handles Ctrl-C
        exit_on_interrupt(Path(cfg.run_dir))
    try:
        train(cfg)
    except (UnknownTaskError, DatasetError, ConfigError, TrainingDiverged, LLMError) as err:
        print(f"error: {err}", file=sys.stderr)
        if multirun:
            # an ordinary exception fails this job only: Hydra runs the sweep's other jobs, then exits 1
            raise RuntimeError(f"{cfg.run_dir}: {err}") from None
        sys.exit(2)


if __name__ == "__main__":
    main()
