"""Train an agent with one Hydra command.

    python scripts/train.py env.task=metaworld/reach-v3 seed=1
    python scripts/train.py experiment=sac_metaworld env.task=metaworld/drawer-open-v3 seed=3
    python scripts/train.py -m hydra/launcher=local seed=1,2,3        # a local sweep

The run directory (default runs/<name>/<task>/seed<seed>) receives config.yaml, metrics.csv,
TensorBoard events (tb/), checkpoints/, videos/ and results.json (SS-ORL runs also ssorl.json, ssorl_dataset.npz
and the IDM's curves in idm/). A killed run continues with the
same command plus `resume=true`; only the training length and the settings of run_dir.RESUMABLE_KEYS (how often to
evaluate, log and checkpoint, the replay size, ...) may change then, to extend a run. A resume before the first
checkpoint starts afresh; one of a finished run does nothing. What a run directory holds and how a run starts
in one: embodied_rl.trainers.run_dir. A run refused for its config before writing any output leaves no run
directory behind.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import sys
from contextlib import contextmanager
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf, open_dict

import embodied_rl  # noqa: F401  (registers the config resolvers, e.g. ${full_task:...} of run_dir)

CONFIG_DIR = str(Path(__file__).resolve().parents[1] / "configs")


# The types of the settings that train.py reads itself (the rest belong to the env, agent and trainer configs,
# which check their own); any other top-level or logging key (e.g. from `+foo=1`) is an error.
RUN_SETTING_TYPES = {
    "name": None,  # any value becomes part of a path (name=123 too)
    "seed": "int",
    "device": "str",
    "deterministic": "bool",
    "resume": "bool",
    "overwrite": "bool",
    "run_dir": None,
    "logging.tensorboard": "bool",
    "logging.console": "bool",
    # keys of trainer=online read here, not by OnlineTrainerConfig
    "trainer.num_envs": "int",
    "trainer.asynchronous_envs": "bool",
    "trainer.replay_size": "int",
    "trainer.replay_device": "str",
}
# The config groups whose keys their own configs check (configs/env/, agent/, ...; experiment/ and hydra/ hold
# no keys of their own in the composed config).
CONFIG_GROUPS = tuple(
    sorted(p.name for p in Path(CONFIG_DIR).iterdir() if p.is_dir() and p.name not in ("experiment", "hydra"))
)


@contextmanager
def config_errors():
    """Report a ValueError raised while building the run's pieces from its config as a ConfigError."""
    from embodied_rl.trainers.builders import ConfigError

    try:
        yield
    except ConfigError:
        raise
    except ValueError as err:
        raise ConfigError(str(err)) from err


def train(cfg: DictConfig) -> dict:
    """Run the training that `cfg.trainer.kind` names (online | offline); returns results.json's dict.

    A run refused for its config (a bad option, an unknown task, a missing dataset) before writing any output
    leaves no run directory behind; any other failure keeps it (Hydra's train.log holds the run's log)."""
    from embodied_rl.data import DatasetError
    from embodied_rl.envs import UnknownTaskError
    from embodied_rl.trainers.builders import ConfigError
    from embodied_rl.trainers.run_dir import remove_unused_run_dir

    try:
        return _train(cfg)
    except (UnknownTaskError, DatasetError, ConfigError):
        remove_unused_run_dir(Path(cfg.run_dir))
        raise


def _train(cfg: DictConfig) -> dict:
    from embodied_rl.envs.tasks import canonical_task
    from embodied_rl.logging import RunLogger
    from embodied_rl.trainers.builders import ConfigError, resolve_device, seed_everything
    from embodied_rl.trainers.evaluation import describe_evaluation
    from embodied_rl.trainers.run_dir import prepare_run_dir, write_results

    removed = removed_keys()  # first: what reads a removed key fails with a traceback
    if removed:
        raise ConfigError(
            f"removing config keys ({', '.join('~' + key for key in removed)}) is not supported: the code's default "
            f"would apply with no trace in config.yaml; set a value instead (key=value)"
        )
    if cfg.trainer.kind not in ("online", "offline"):
        raise ConfigError(f"trainer.kind must be 'online' or 'offline', got {cfg.trainer.kind!r}")
    check_run_settings(cfg)
    device = resolve_device(cfg.device)
    trainer_config = trainer_config_from(cfg)  # a bad setting is an error before the run directory is touched
    if cfg.trainer.kind == "online" and trainer_config.total_steps < trainer_config.seed_steps:
        print(
            f"warning: trainer.total_steps={trainer_config.total_steps} is below trainer.seed_steps="
            f"{trainer_config.seed_steps}: the run takes only random actions and never updates the agent",
            file=sys.stderr,
        )
    with open_dict(cfg):
        cfg.env.task = canonical_task(cfg.env.task)  # config.yaml and results.json name the task in full
    run_dir, resume_step = prepare_run_dir(cfg)
    total = cfg.trainer.total_steps if cfg.trainer.kind == "online" else cfg.trainer.total_updates
    if resume_step is not None and resume_step >= total:
        return already_complete(cfg, run_dir, resume_step, total, device)
    seed_everything(cfg.seed, cfg.deterministic)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    logger = RunLogger(run_dir, tensorboard=cfg.logging.tensorboard, console=cfg.logging.console)
    if cfg.resume and resume_step is None:
        logger.summary(f"[resume] no checkpoint in {run_dir}: starting from step 0 with fresh logs")
    try:
        run = train_online if cfg.trainer.kind == "online" else train_offline
        results = run(cfg, trainer_config, run_dir, resume_step is not None, device, logger)
    finally:
        logger.close()
    results = write_results(cfg, run_dir, results, device)
    final = results.get("final")
    described = f"final at step {final['step']}: {describe_evaluation(final)}" if final else "no evaluation"
    logger.summary(f"[done] {run_dir}: {described}")
    return results


def check_run_settings(cfg: DictConfig) -> None:
    """One ConfigError for a top-level or logging key that train.py does not know, a value of the wrong type
    (a flag given as `no` would count as true), a seed numpy cannot take, or resume=true with overwrite=true."""
    from embodied_rl.trainers.builders import ConfigError
    from embodied_rl.validation import check_ranges, check_types, flatten

    flat = flatten(OmegaConf.to_container(cfg, resolve=True))
    known_prefixes = tuple(f"{group}." for group in CONFIG_GROUPS)
    unknown = sorted(k for k in flat if k not in RUN_SETTING_TYPES and not k.startswith(known_prefixes))
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


def removed_keys() -> list[str]:
    """The keys a `~key` command-line override removed (none when not run through Hydra's command line)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return []
    return [o[1:].split("=", 1)[0] for o in HydraConfig.get().overrides.task if o.startswith("~")]


def trainer_config_from(cfg: DictConfig):
    """`OnlineTrainerConfig` / `OfflineTrainerConfig` from `cfg.trainer` (range checks included), less the keys
    that train.py itself reads (kind, vector envs and replay; dataset and reward)."""
    from embodied_rl.trainers import OfflineTrainerConfig, OnlineTrainerConfig
    from embodied_rl.trainers.builders import ConfigError

    online = cfg.trainer.kind == "online"
    config_class = OnlineTrainerConfig if online else OfflineTrainerConfig
    read_here = ("num_envs", "asynchronous_envs", "replay_size", "replay_device") if online else ("dataset", "reward")
    settings = {k: v for k, v in OmegaConf.to_container(cfg.trainer, resolve=True).items() if k not in read_here}
    settings.pop("kind")
    unknown = sorted(set(settings) - {f.name for f in dataclasses.fields(config_class)})
    if unknown:
        raise ConfigError(f"trainer={cfg.trainer.kind} does not take {', '.join(unknown)}")
    with config_errors():
        return config_class(**settings)


def already_complete(cfg: DictConfig, run_dir: Path, step: int, total: int, device) -> dict:
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


def train_online(cfg: DictConfig, trainer_config, run_dir: Path, resuming: bool, device, logger) -> dict:
    from embodied_rl.data import ReplayBuffer
    from embodied_rl.envs import make_env, make_vector_env
    from embodied_rl.trainers import OnlineTrainer
    from embodied_rl.trainers.builders import make_agent, resolve_device
    from embodied_rl.trainers.run_dir import mark_unfinished

    env_cfg = OmegaConf.to_container(cfg.env, resolve=True)
    t = cfg.trainer
    with config_errors():
        envs = make_vector_env(env_cfg, num_envs=t.num_envs, asynchronous=t.asynchronous_envs)
    eval_env = make_env(env_cfg)
    try:
        with config_errors():
            agent = make_agent(
                OmegaConf.to_container(cfg.agent, resolve=True),
                envs.single_observation_space,
                envs.single_action_space,
                device,
            )
        replay_device = device if t.replay_device == "auto" else resolve_device(t.replay_device)
        check_replay_fits(t.replay_size, envs.single_observation_space, envs.single_action_space, replay_device)
        with config_errors():
            buffer = ReplayBuffer.from_spaces(
                t.replay_size, envs.single_observation_space, envs.single_action_space, device=replay_device
            )
        trainer = OnlineTrainer(trainer_config, envs, eval_env, agent, buffer, logger, run_dir, seed=cfg.seed)
        if resuming:
            trainer.resume(run_dir / "checkpoints")
            logger.summary(f"[resume] continuing {run_dir} from step {trainer.step}")
        mark_unfinished(run_dir)
        return trainer.train()
    finally:
        envs.close()
        eval_env.close()


def check_replay_fits(size: int, observation_space, action_space, device) -> None:
    """Refuse, before allocating it, a replay buffer larger than half the free memory of `device` (the other
    half for envs, networks and the checkpoints, which copy the buffer's rows)."""
    from embodied_rl.data.replay import ReplayBuffer
    from embodied_rl.memory import available_memory
    from embodied_rl.trainers.builders import ConfigError

    with config_errors():
        need = ReplayBuffer.nbytes(size, observation_space, action_space)
    free = available_memory(device)
    budget = None if free is None else free / 2  # half: envs, networks and checkpoints (which copy the rows)
    if budget is None or need <= budget:
        return
    row = need / size
    fit = max(int(budget / row), 1)
    scale = 10 ** max(len(str(fit)) - 2, 0)  # rounded down to two significant digits
    raise ConfigError(
        f"trainer.replay_size={size} needs a {need / 1e9:.1f} GB replay buffer ({row / 1e3:.1f} kB per transition: "
        f"obs and next_obs are stored separately) but {device} has {free / 1e9:.1f} GB available (on the CPU: the "
        f"host's or the memory cgroup's limit; the buffer may take half): "
        f"use trainer.replay_size={fit // scale * scale} or less"
    )


def offline_trajectories(cfg: DictConfig, env, run_dir: Path, resuming: bool, device, logger) -> tuple[list, str]:
    """The dataset's trajectories (checked against `env`), after the pipeline's relabelling if any; `resuming`:
    the run continues from its checkpoint (else prepare_run_dir cleared the outputs)."""
    from embodied_rl.data import load_trajectories

    if cfg.get("ssorl") is not None:  # its settings are checked before anything is loaded or trained
        from embodied_rl.pipelines.ssorl import SSORLConfig

        with config_errors():
            ssorl_cfg = SSORLConfig.from_mapping(OmegaConf.to_container(cfg.ssorl, resolve=True))
    dataset_id = dataset_id_of(cfg)
    trajectories = load_trajectories(dataset_id, env=env)
    if cfg.get("ssorl") is not None:
        from embodied_rl.files import write_json
        from embodied_rl.pipelines.ssorl import load_arm_dataset, save_arm_dataset

        saved, report = run_dir / "ssorl_dataset.npz", run_dir / "ssorl.json"
        if resuming and saved.exists() and report.exists():  # the same data as before, no IDM training again
            trajectories = load_arm_dataset(trajectories, saved)
            diagnostics = json.loads(report.read_text())
            logger.summary(
                f"[ssorl] resumed with the {diagnostics['arm']} arm's dataset of {saved.name} (the IDM is not trained "
                f"again): {diagnostics['num_dataset_trajectories']} trajectories"
            )
        else:  # a new run, or a resume of one made before runs kept their dataset; the pipeline says what it did
            trajectories, diagnostics = prepare_with_idm_logger(cfg, ssorl_cfg, trajectories, run_dir, device, logger)
            save_arm_dataset(saved, trajectories)
            write_json(report, diagnostics)
            proxy = {k: v for k, v in diagnostics.items() if k.startswith("proxy_action_")}
            if proxy and not resuming:  # diagnosis only (never trained on); a resumed run has its step-0 row
                logger.log(proxy, step=0, prefix="ssorl")
    return trajectories, dataset_id


def prepare_with_idm_logger(cfg: DictConfig, ssorl_cfg, trajectories: list, run_dir: Path, device, logger):
    """`prepare_ssorl_dataset`, the IDM's curves on their own step axis in <run>/idm/ (metrics.csv, tb/; created
    at its first evaluation, so a run refused before leaves none)."""
    from embodied_rl.logging import RunLogger
    from embodied_rl.pipelines.ssorl import prepare_ssorl_dataset

    shutil.rmtree(run_dir / "idm", ignore_errors=True)  # the curves of an IDM trained again start afresh
    idm_logger = None
    if ssorl_cfg.arm == "semi_supervised":
        idm_logger = RunLogger(run_dir / "idm", tensorboard=cfg.logging.tensorboard, console=cfg.logging.console)
    try:
        return prepare_ssorl_dataset(
            trajectories, ssorl_cfg, seed=cfg.seed, logger=idm_logger or logger, device=str(device)
        )
    finally:
        if idm_logger is not None:
            idm_logger.close()


def dataset_id_of(cfg: DictConfig) -> str:
    """The Minari id of an offline run's dataset: `trainer.dataset` is an id or a tier name of the env's task."""
    from embodied_rl.data import dataset_id_for

    name = cfg.trainer.dataset
    return name if "/" in name else dataset_id_for(cfg.env.task, name)


def scale_rewards(data, trajectories, cfg: DictConfig):
    """Reward transform of the offline config: `returns` rescales by 1000 / (max - min episode return),
    as CORL does for D4RL locomotion with IQL; then `scale * r + shift`."""
    from embodied_rl.trainers.builders import ConfigError

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


def train_offline(cfg: DictConfig, trainer_config, run_dir: Path, resuming: bool, device, logger) -> dict:
    import torch

    from embodied_rl.data import open_dataset, transitions_from_trajectories
    from embodied_rl.envs import make_env
    from embodied_rl.trainers import OfflineTrainer
    from embodied_rl.trainers.builders import make_agent
    from embodied_rl.trainers.run_dir import mark_unfinished

    with config_errors():
        env = make_env(OmegaConf.to_container(cfg.env, resolve=True))
    agent_cfg = OmegaConf.to_container(cfg.agent, resolve=True)
    if agent_cfg.get("name") == "sac":
        print(
            "warning: trainer=offline with agent=sac trains plain SAC on the dataset, with nothing against "
            "out-of-distribution actions; experiment=iql, td3bc or bc run the offline learners",
            file=sys.stderr,
        )
    try:
        # the agent's settings are checked before the dataset is loaded (and an SS-ORL IDM trained); the CPU RNG
        # is forked so that this throwaway agent leaves the run's random numbers as they were
        with config_errors(), torch.random.fork_rng(devices=[]):
            make_agent(agent_cfg, env.observation_space, env.action_space, torch.device("cpu"))
        trajectories, dataset_id = offline_trajectories(cfg, env, run_dir, resuming, device, logger)
        data = transitions_from_trajectories(trajectories, device=device)
        with config_errors():
            agent = make_agent(agent_cfg, env.observation_space, env.action_space, device)
        data = scale_rewards(data, trajectories, cfg)
        metadata = open_dataset(dataset_id).storage.metadata
        trainer = OfflineTrainer(
            trainer_config,
            data,
            env,
            agent,
            logger,
            run_dir,
            seed=cfg.seed,
            ref_scores=(metadata.get("ref_min_score"), metadata.get("ref_max_score")),
        )
        logger.summary(f"[data] {dataset_id}: {len(trajectories)} episodes, {len(data)} transitions")
        if resuming:
            trainer.resume(run_dir / "checkpoints")
            logger.summary(f"[resume] continuing {run_dir} from update {trainer.step}")
        mark_unfinished(run_dir)
        results = trainer.train()
        results["dataset"] = dataset_id
        return results
    finally:
        env.close()


def exit_on_interrupt(run_dir: Path) -> None:
    """Make Ctrl-C print one line on how to resume and end the process at once (exit 130). Not an exception
    unwinding through the run: one CI run hung after Ctrl-C (not reproduced in 22 tries; the likely cause is a
    KeyboardInterrupt raised at an arbitrary point, e.g. while a lock of TensorBoard's writer thread is held).
    Nothing a resume needs is lost: checkpoints are written atomically, and a resume drops what was logged after
    the last checkpoint."""

    def stop(signum, frame) -> None:
        os.write(2, f"\ninterrupted: {interrupted_state(run_dir)}\n".encode())  # print() may be mid-write
        os._exit(130)

    signal.signal(signal.SIGINT, stop)


def interrupted_state(run_dir: Path) -> str:
    """What a user can do after Ctrl-C: resume from the last checkpoint, if one was written."""
    from embodied_rl.trainers.checkpoint import checkpoint_step

    try:
        step = checkpoint_step(run_dir / "checkpoints" / "latest.pt")
    except (FileNotFoundError, RuntimeError, KeyError):
        return f"no checkpoint in {run_dir} yet; the same command plus overwrite=true starts the run again"
    return f"{run_dir} has a checkpoint at step {step}; the same command plus resume=true continues from it"


@hydra.main(config_path=CONFIG_DIR, config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from embodied_rl.data import DatasetError
    from embodied_rl.envs import UnknownTaskError
    from embodied_rl.trainers.builders import ConfigError
    from embodied_rl.trainers.divergence import TrainingDiverged

    multirun = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    if not multirun:  # in a sweep, the launcher handles Ctrl-C
        exit_on_interrupt(Path(cfg.run_dir))
    try:
        train(cfg)
    except (UnknownTaskError, DatasetError, ConfigError, TrainingDiverged) as err:
        print(f"error: {err}", file=sys.stderr)
        if multirun:
            # an ordinary exception fails this job only: Hydra runs the sweep's other jobs, then exits 1
            raise RuntimeError(f"{cfg.run_dir}: {err}") from None
        sys.exit(2)


if __name__ == "__main__":
    main()
