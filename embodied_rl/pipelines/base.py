"""The pipeline interface and registry: how a method joins a run.

A pipeline is a method built from the shared pieces. It declares
- `name`: its config group (configs/<name>/) and the top-level key of its settings in a run's config; a run
  uses the pipeline whose key its config holds (an `experiment=` config adds the group), at most one;
- `settings_class`: a dataclass of its settings, with `from_mapping(values)` (unknown keys are an error);
- `top_level_keys`: other top-level config keys it reads (e.g. PEARL's `source:`), allowed in a run that uses it;
- `outputs`: what it adds to a run directory (removed when the run starts afresh);
- `resumable`: its settings (relative to its key, or under one of its `top_level_keys`) that may change when a
  run resumes;
- `added_later`: its settings added after runs were made, each with the value that keeps those runs' behaviour
  (such a run resumes when the new key holds that value);
- `run(run)`: its steps, e.g. prepare or label data, fit a model, relabel, then hand off to a trainer through
  the run's library calls (`Run.train_offline(prepare=...)`, `Run.train_online(wrappers=...)`).

Pipelines are registered by name in `PIPELINES` ("module:Class", imported lazily), like agents in
`trainers.builders.AGENTS`. Nothing below `pipelines/` names a method: run directories, resume and evaluation get
these lists from here.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any, ClassVar

from omegaconf import DictConfig, OmegaConf

from embodied_rl.trainers.assembly import Run, config_errors
from embodied_rl.trainers.builders import ConfigError

# config key -> "module:Class"
PIPELINES = {
    "ssorl": "embodied_rl.pipelines.ssorl:SSORLPipeline",
    "pearl": "embodied_rl.pipelines.pearl:PEARLPipeline",
    "vlm_iql": "embodied_rl.pipelines.vlm_iql:VLMIQLPipeline",
    "text2reward": "embodied_rl.pipelines.text2reward:Text2RewardPipeline",
    "repo": "embodied_rl.pipelines.repo:RePoPipeline",
    "repo_adapt": "embodied_rl.pipelines.repo_adapt:RePoAdaptPipeline",
}


class Pipeline:
    """A method's steps over a `Run`; subclasses set the class attributes and `run`."""

    name: ClassVar[str]
    settings_class: ClassVar[type]
    trainer_kinds: ClassVar[tuple[str, ...]] = ("online", "offline")  # the trainer.kind values it works with
    top_level_keys: ClassVar[tuple[str, ...]] = ()
    outputs: ClassVar[tuple[str, ...]] = ()
    resumable: ClassVar[tuple[str, ...]] = ()
    added_later: ClassVar[dict[str, Any]] = {}

    def __init__(self, settings: Any):
        self.settings = settings

    @classmethod
    def from_config(cls, cfg: DictConfig) -> Pipeline:
        """The pipeline with the settings under `cfg[cls.name]`; a bad setting is a ConfigError."""
        if cfg.trainer.kind not in cls.trainer_kinds:
            raise ConfigError(
                f"the {cls.name} pipeline runs with trainer={' or trainer='.join(cls.trainer_kinds)}, "
                f"not trainer={cfg.trainer.kind}"
            )
        with config_errors():
            return cls(cls.settings_class.from_mapping(cls.settings_values(cfg)))

    @classmethod
    def settings_values(cls, cfg: DictConfig) -> dict[str, Any]:
        """The values of its settings dataclass in a run config: those under its key (a pipeline that also reads
        `top_level_keys` adds them here)."""
        return OmegaConf.to_container(cfg[cls.name], resolve=True)

    def run(self, run: Run) -> dict[str, Any]:
        """Run the method's steps in `run`; returns the trainer's results (final and best evaluation, counts)."""
        raise NotImplementedError


def pipeline_class(name: str) -> type[Pipeline]:
    """The registered pipeline class `name`."""
    if name not in PIPELINES:
        raise ConfigError(f"unknown pipeline '{name}'; known pipelines: {', '.join(sorted(PIPELINES))}")
    module_name, class_name = PIPELINES[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)


def pipeline_name_of(cfg: Mapping[str, Any] | DictConfig) -> str | None:
    """The name of the pipeline a run config uses (the registered name among its top-level keys), or None for a
    plain online or offline run. Two at once is a ConfigError."""
    names = sorted(name for name in PIPELINES if cfg.get(name) is not None)
    if len(names) > 1:
        raise ConfigError(f"a run uses one pipeline, but its config holds the settings of {', '.join(names)}")
    return names[0] if names else None


def pipeline_for(cfg: DictConfig) -> Pipeline | None:
    """The pipeline of a run config with its settings checked, or None."""
    name = pipeline_name_of(cfg)
    return None if name is None else pipeline_class(name).from_config(cfg)


def all_pipeline_outputs() -> tuple[str, ...]:
    """What any registered pipeline may add to a run directory: removed when a run there starts afresh, so that a
    run directory never mixes the outputs of two runs."""
    return tuple(output for name in sorted(PIPELINES) for output in pipeline_class(name).outputs)


def resume_rules(cfg: DictConfig) -> tuple[tuple[str, ...], dict[str, Any]]:
    """The full keys of the run's pipeline's resumable settings (e.g. `ssorl.idm.progress`), and of its settings
    added later with their old-behaviour values (e.g. {"ssorl.idm.patience": 0})."""
    name = pipeline_name_of(cfg)
    if name is None:
        return (), {}
    pipeline = pipeline_class(name)

    def full(key: str) -> str:  # a setting under one of its top-level keys (e.g. `llm.concurrency`) is named so
        return key if key.split(".")[0] in pipeline.top_level_keys else f"{name}.{key}"

    return (
        tuple(full(key) for key in pipeline.resumable),
        {f"{name}.{key}": value for key, value in pipeline.added_later.items()},
    )


def pipeline_keys(cfg: Mapping[str, Any] | DictConfig) -> tuple[str, ...]:
    """The top-level config keys of the run's pipeline: its own group and the keys it declares it reads."""
    name = pipeline_name_of(cfg)
    return () if name is None else (name, *pipeline_class(name).top_level_keys)
