"""embodied_rl: robot-learning methods on one shared core.

Subpackages: ``envs`` (environment wrappers), ``data`` (datasets and replay), ``nn`` (network blocks),
``agents`` (learners), ``trainers`` (training loops), ``logging`` (console, CSV, TensorBoard, video).
"""

__version__ = "0.1.0"
UNKNOWN_RUN_TASK = "unknown-run"  # `${run_task:...}` of a path that holds no run


def _full_task(task: str) -> str:
    """`${full_task:...}` in configs (the run directory): `drawer-open-v3` -> `metaworld/drawer-open-v3`, so a bare
    and a full task name give one run directory."""
    from embodied_rl.envs.tasks import full_task_name  # on use: importing envs sets up rendering

    return full_task_name(task)


def _task_name(task: str) -> str:
    """`${task_name:...}` in configs (run names): `metaworld/button-press-v3` -> `button-press-v3`."""
    return _full_task(task).rpartition("/")[2]


def _run_task(path) -> str:
    """`${run_task:...}` in configs (experiment=repo_adapt's run directory): the task of the run directory or
    checkpoint file `path` (its config.yaml's env.task); UNKNOWN_RUN_TASK when there is none to read (the pipeline
    that uses it then says why)."""
    from pathlib import Path

    from omegaconf import OmegaConf

    if path is None:
        return UNKNOWN_RUN_TASK
    path = Path(str(path))
    folder = path.parent if path.suffix == ".pt" else path
    folder = folder.parent if folder.name == "checkpoints" else folder
    try:
        return str(OmegaConf.load(folder / "config.yaml").env.task)
    except Exception:  # no such run, a damaged config.yaml: not this resolver's to report
        return UNKNOWN_RUN_TASK


def _register_config_resolvers() -> None:
    from omegaconf import OmegaConf

    OmegaConf.register_new_resolver("full_task", _full_task, replace=True)
    OmegaConf.register_new_resolver("task_name", _task_name, replace=True)
    OmegaConf.register_new_resolver("run_task", _run_task, replace=True)


_register_config_resolvers()
