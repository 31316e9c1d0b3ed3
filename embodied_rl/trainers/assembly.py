"""Assembling a run from its config: envs, agent, storage and trainer, injected into each other, then trained.

A `Run` is what a run directory is being used for right now: the (resolved, checked) config, the directory, the
device, the logger and whether it continues from a checkpoint. Its two library calls start the training that
`trainer.kind` names, so that a pipeline (or a notebook, or a test) starts a run without Hydra:

    run.train_online(wrappers=[...], vector_wrappers=[...])  # SAC and friends: vector envs -> replay -> OnlineTrainer
    run.train_offline(prepare=...)           # IQL / TD3+BC / BC: a dataset -> Transitions -> OfflineTrainer

`wrappers` (gymnasium wrappers, e.g. a learned reward replacing the env's) go to every env the run builds;
`vector_wrappers` wrap the training vector env as a whole (e.g. a reward computed for all sub-envs in one batch);
`prepare(run, trajectories, env)` turns the loaded dataset into the one trained on (a pipeline labels or relabels
it there). `embodied_rl.runs.train` builds a `Run` from a config and calls one of them (or a pipeline that does).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from embodied_rl.files import write_json
from embodied_rl.logging import RunLogger
from embodied_rl.trainers.builders import ConfigError, make_agent, resolve_device
from embodied_rl.trainers.offline import OfflineTrainer, OfflineTrainerConfig
from embodied_rl.trainers.online import OnlineTrainer, OnlineTrainerConfig
from embodied_rl.trainers.run_dir import mark_unfinished

# Keys of configs/trainer/*.yaml that the assembly reads itself: they build the envs, the storage and the data,
# not the trainer.
ASSEMBLY_KEYS = {
    "online": ("num_envs", "asynchronous_envs", "replay_size", "replay_device"),
    "offline": ("dataset", "reward"),
}
TRAINER_CONFIGS = {"online": OnlineTrainerConfig, "offline": OfflineTrainerConfig}

PrepareData = Callable[["Run", list, Any], list]  # (run, trajectories, env) -> the trajectories trained on
MakeStorage = Callable[["Run", Any, torch.device], Any]  # (run, vector envs, replay device) -> the trainer's storage


@contextmanager
def config_errors() -> Iterator[None]:
    """Report a ValueError raised while building the run's pieces from its config as a ConfigError."""
    try:
        yield
    except ConfigError:
        raise
    except ValueError as err:
        raise ConfigError(str(err)) from err


def trainer_config_from(cfg: DictConfig) -> OnlineTrainerConfig | OfflineTrainerConfig:
    """`OnlineTrainerConfig` / `OfflineTrainerConfig` from `cfg.trainer` (range checks included), less the keys
    that the assembly reads itself (`ASSEMBLY_KEYS`)."""
    kind = cfg.trainer.kind
    if kind not in TRAINER_CONFIGS:
        raise ConfigError(f"trainer.kind must be 'online' or 'offline', got {kind!r}")
    config_class = TRAINER_CONFIGS[kind]
    settings = {
        k: v for k, v in OmegaConf.to_container(cfg.trainer, resolve=True).items() if k not in ASSEMBLY_KEYS[kind]
    }
    settings.pop("kind")
    unknown = sorted(set(settings) - {f.name for f in dataclasses.fields(config_class)})
    if unknown:
        raise ConfigError(f"trainer={kind} does not take {', '.join(unknown)}")
    with config_errors():
        return config_class(**settings)


def dataset_id_of(cfg: DictConfig) -> str:
    """The Minari id of an offline run's dataset: `trainer.dataset` is an id or a tier name of the env's task."""
    from embodied_rl.data import dataset_id_for

    name = cfg.trainer.dataset
    return name if "/" in name else dataset_id_for(cfg.env.task, name)


@dataclass
class Run:
    """A run being trained in `run_dir`: its config (resolved, checked), device, logger, and `resuming` (it
    continues from the checkpoint in run_dir; else the run directory holds none of its outputs)."""

    cfg: DictConfig
    run_dir: Path
    device: torch.device
    logger: RunLogger
    resuming: bool = False

    @property
    def seed(self) -> int:
        return int(self.cfg.seed)

    def logger_for(self, name: str) -> RunLogger:
        """A logger of its own in <run_dir>/<name>/ (its own step axis), e.g. for a model a pipeline fits."""
        return RunLogger(
            self.run_dir / name, tensorboard=self.cfg.logging.tensorboard, console=self.cfg.logging.console
        )

    def fitted_reward_model(
        self,
        out: Path,
        fit: Callable[[RunLogger], tuple[Any, Any]],
        save: Callable[[Any, Path], None],
        load: Callable[[Path, torch.device], Any],
        tag: str,
    ) -> tuple[Any, dict[str, Any]]:
        """A reward model a pipeline fits once per run, as (model, report dict). A resumed run gets the one saved in
        `out` (reward_model.pt, reward_report.json) back, trained nothing again; otherwise `fit(logger)` (its curves
        in <run_dir>/reward/) returns the model and its fit report (`best_step`, `best_val_accuracy`, `as_dict()`),
        which are saved and summarised under `[tag]`."""
        path, report_path = out / "reward_model.pt", out / "reward_report.json"
        if self.resuming and path.exists() and report_path.exists():
            self.logger.summary(f"[{tag}] resumed with the reward model of {path} (not trained again)")
            return load(path, self.device), json.loads(report_path.read_text())
        out.mkdir(parents=True, exist_ok=True)
        logger = self.logger_for("reward")
        try:
            model, report = fit(logger)
        finally:
            logger.close()
        save(model, path)
        write_json(report_path, report.as_dict())
        self.logger.summary(
            f"[{tag}] reward model: best step {report.best_step}, validation accuracy {report.best_val_accuracy:.3f}"
        )
        return model, report.as_dict()

    def trainer_config(self) -> OnlineTrainerConfig | OfflineTrainerConfig:
        return trainer_config_from(self.cfg)

    def env_config(self) -> dict[str, Any]:
        return OmegaConf.to_container(self.cfg.env, resolve=True)

    def agent_config(self) -> dict[str, Any]:
        return OmegaConf.to_container(self.cfg.agent, resolve=True)

    # ---------------------------------------------------------------- online
    def train_online(
        self,
        wrappers: Sequence[Callable] = (),
        vector_wrappers: Sequence[Callable] = (),
        storage: MakeStorage | None = None,
    ) -> dict[str, Any]:
        """Vector envs, agent, replay buffer and `OnlineTrainer`, resumed when the run continues; trains and
        returns the trainer's results. `wrappers` wrap every env (training and evaluation), outermost;
        `vector_wrappers` (gymnasium VectorWrappers) then wrap the training vector env, in order; `storage(run, envs,
        device)` builds what the trainer stores steps in instead of a `ReplayBuffer` (e.g. sequences for a world
        model), after checking it fits."""
        from embodied_rl.data import ReplayBuffer
        from embodied_rl.envs import make_env, make_vector_env

        t = self.cfg.trainer
        env_cfg = self.env_config()
        with config_errors():
            envs = make_vector_env(env_cfg, num_envs=t.num_envs, asynchronous=t.asynchronous_envs, wrappers=wrappers)
        for wrap in vector_wrappers:
            envs = wrap(envs)
        eval_env = make_env(env_cfg, wrappers=wrappers)
        try:
            with config_errors():
                agent = make_agent(
                    self.agent_config(), envs.single_observation_space, envs.single_action_space, self.device
                )
            replay_device = self.device if t.replay_device == "auto" else resolve_device(t.replay_device)
            with config_errors():
                if storage is not None:
                    store = storage(self, envs, replay_device)
                else:
                    space, action_space = envs.single_observation_space, envs.single_action_space
                    check_replay_fits(ReplayBuffer.nbytes(t.replay_size, space, action_space), t, replay_device)
                    store = ReplayBuffer.from_spaces(t.replay_size, space, action_space, device=replay_device)
            trainer = OnlineTrainer(
                self.trainer_config(), envs, eval_env, agent, store, self.logger, self.run_dir, seed=self.seed
            )
            return self._train(trainer)
        finally:
            envs.close()
            eval_env.close()

    # ---------------------------------------------------------------- offline
    def train_offline(self, prepare: PrepareData | None = None) -> dict[str, Any]:
        """The dataset (checked against the env), after `prepare` if given, as `Transitions` on the device with the
        reward transform of `trainer.reward`; agent and `OfflineTrainer`, resumed when the run continues; trains
        and returns the trainer's results (with the dataset's id)."""
        from embodied_rl.data import load_trajectories, open_dataset, transitions_from_trajectories
        from embodied_rl.envs import make_env

        with config_errors():
            env = make_env(self.env_config())
        agent_cfg = self.agent_config()
        if agent_cfg.get("name") == "sac":
            print(
                "warning: trainer=offline with agent=sac trains plain SAC on the dataset, with nothing against "
                "out-of-distribution actions; experiment=iql, td3bc or bc run the offline learners",
                file=sys.stderr,
            )
        try:
            # the agent's settings are checked before the dataset is loaded (and prepared); the CPU RNG is forked
            # so that this throwaway agent leaves the run's random numbers as they were
            with config_errors(), torch.random.fork_rng(devices=[]):
                make_agent(agent_cfg, env.observation_space, env.action_space, torch.device("cpu"))
            dataset_id = dataset_id_of(self.cfg)
            trajectories = load_trajectories(dataset_id, env=env)
            if prepare is not None:
                trajectories = prepare(self, trajectories, env)
            data = transitions_from_trajectories(trajectories, device=self.device)
            with config_errors():
                agent = make_agent(agent_cfg, env.observation_space, env.action_space, self.device)
            data = scale_rewards(data, trajectories, self.cfg)
            metadata = open_dataset(dataset_id).storage.metadata
            trainer = OfflineTrainer(
                self.trainer_config(),
                data,
                env,
                agent,
                self.logger,
                self.run_dir,
                seed=self.seed,
                ref_scores=(metadata.get("ref_min_score"), metadata.get("ref_max_score")),
            )
            self.logger.summary(f"[data] {dataset_id}: {len(trajectories)} episodes, {len(data)} transitions")
            return {**self._train(trainer), "dataset": dataset_id}
        finally:
            env.close()

    def _train(self, trainer) -> dict[str, Any]:
        if self.resuming:
            trainer.resume(self.run_dir / "checkpoints")
            self.logger.summary(f"[resume] continuing {self.run_dir} from {trainer.unit} {trainer.step}")
        mark_unfinished(self.run_dir)
        return trainer.train()


def check_replay_fits(need: int, trainer_cfg, device, what: str = "obs and next_obs are stored separately") -> None:
    """Refuse, before allocating it, a replay of `need` bytes (`trainer.replay_size` rows) larger than half the
    free memory of `device` (the other half for envs, networks and the checkpoints, which copy the buffer's rows);
    the error proposes a `trainer.replay_size` that fits."""
    from embodied_rl.memory import available_memory

    size = trainer_cfg.replay_size
    free = available_memory(device)
    budget = None if free is None else free / 2  # half: envs, networks and checkpoints (which copy the rows)
    if budget is None or need <= budget:
        return
    row = need / size
    fit = max(int(budget / row), 1)
    scale = 10 ** max(len(str(fit)) - 2, 0)  # rounded down to two significant digits
    raise ConfigError(
        f"trainer.replay_size={size} needs a {need / 1e9:.1f} GB replay buffer ({row / 1e3:.1f} kB per transition: "
        f"{what}) but {device} has {free / 1e9:.1f} GB available (on the CPU: the "
        f"host's or the memory cgroup's limit; the buffer may take half): "
        f"use trainer.replay_size={fit // scale * scale} or less"
    )


def scale_rewards(data, trajectories, cfg: DictConfig):
    """Reward transform of the offline config: `returns` rescales by 1000 / (max - min episode return),
    as CORL does for D4RL locomotion with IQL; then `scale * r + shift`."""
    r = cfg.trainer.reward
    reward = data.reward
    if r.normalize == "returns":
        returns = [t.episode_return for t in trajectories]
        spread = max(returns) - min(returns)
        if spread > 0:
            reward = reward * (1000.0 / spread)
    elif r.normalize not in (None, "none"):
        raise ConfigError(f"trainer.reward.normalize must be none or returns, got {r.normalize!r}")
    data.reward = reward * r.scale + r.shift
    return data
