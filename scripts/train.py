"""Train an agent with one Hydra command.

    python scripts/train.py env.task=metaworld/reach-v3 seed=1
    python scripts/train.py experiment=sac_metaworld env.task=metaworld/drawer-open-v3 seed=3
    python scripts/train.py -m hydra/launcher=local seed=1,2,3        # a local sweep

The run directory (default runs/<name>/<task>/seed<seed>) receives config.yaml, metrics.csv,
TensorBoard events (tb/), checkpoints/, videos/ and results.json. A killed run continues with the
same command plus `resume=true`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

CONFIG_DIR = str(Path(__file__).resolve().parents[1] / "configs")


def prepare_run_dir(cfg: DictConfig) -> Path:
    """Refuse to silently mix two runs in one directory."""
    run_dir = Path(cfg.run_dir)
    has_run = (run_dir / "checkpoints" / "latest.pt").exists() or (run_dir / "metrics.csv").exists()
    if has_run and not (cfg.resume or cfg.overwrite):
        raise SystemExit(
            f"error: {run_dir} already holds a run. Use resume=true to continue it, overwrite=true to "
            f"start afresh, or another name=/run_dir=."
        )
    if cfg.overwrite and not cfg.resume:
        import shutil

        for item in ("checkpoints", "videos", "tb", "metrics.csv", "results.json"):
            path = run_dir / item
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def train(cfg: DictConfig) -> dict:
    """Run the training that `cfg.trainer.kind` names (online | offline); returns results.json's dict."""
    from embodied_rl.logging import RunLogger
    from embodied_rl.trainers.builders import resolve_device, seed_everything

    if cfg.trainer.kind not in ("online", "offline"):
        raise ValueError(f"trainer.kind must be 'online' or 'offline', got {cfg.trainer.kind!r}")
    run_dir = prepare_run_dir(cfg)
    device = resolve_device(cfg.device)
    seed_everything(cfg.seed, cfg.deterministic)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    logger = RunLogger(run_dir, tensorboard=cfg.logging.tensorboard, console=cfg.logging.console)
    try:
        run = train_online if cfg.trainer.kind == "online" else train_offline
        results = run(cfg, run_dir, device, logger)
    finally:
        logger.close()
    results.update(task=cfg.env.task, agent=cfg.agent.name, seed=cfg.seed, device=str(device))
    (run_dir / "results.json").write_text(json.dumps(results, indent=2))
    logger.summary(f"[done] {run_dir}: final {results['final']}")
    return results


def train_online(cfg: DictConfig, run_dir: Path, device, logger) -> dict:
    from embodied_rl.data import ReplayBuffer
    from embodied_rl.envs import make_env, make_vector_env
    from embodied_rl.trainers import OnlineTrainer, OnlineTrainerConfig
    from embodied_rl.trainers.builders import make_agent

    env_cfg = OmegaConf.to_container(cfg.env, resolve=True)
    trainer_cfg = OmegaConf.to_container(cfg.trainer, resolve=True)
    for key in ("kind", "num_envs", "asynchronous_envs", "replay_size", "replay_device"):
        trainer_cfg.pop(key)
    t = cfg.trainer
    envs = make_vector_env(env_cfg, num_envs=t.num_envs, asynchronous=t.asynchronous_envs)
    eval_env = make_env(env_cfg)
    try:
        agent = make_agent(
            OmegaConf.to_container(cfg.agent, resolve=True),
            envs.single_observation_space,
            envs.single_action_space,
            device,
        )
        buffer = ReplayBuffer.from_spaces(
            t.replay_size,
            envs.single_observation_space,
            envs.single_action_space,
            device=device if t.replay_device == "auto" else t.replay_device,
        )
        trainer = OnlineTrainer(
            OnlineTrainerConfig(**trainer_cfg), envs, eval_env, agent, buffer, logger, run_dir, seed=cfg.seed
        )
        if cfg.resume and (run_dir / "checkpoints" / "latest.pt").exists():
            trainer.resume(run_dir / "checkpoints")
            logger.summary(f"[resume] continuing {run_dir} from step {trainer.step}")
        return trainer.train()
    finally:
        envs.close()
        eval_env.close()


def offline_trajectories(cfg: DictConfig, env, run_dir: Path, device, logger) -> tuple[list, str]:
    """The dataset's trajectories (checked against `env`), after the pipeline's relabelling if any."""
    from embodied_rl.data import dataset_id_for, load_trajectories

    name = cfg.trainer.dataset
    dataset_id = name if "/" in name else dataset_id_for(cfg.env.task, name)
    trajectories = load_trajectories(dataset_id, env=env)
    if cfg.get("ssorl") is not None:
        from embodied_rl.pipelines.ssorl import prepare_ssorl_dataset

        trajectories, diagnostics = prepare_ssorl_dataset(
            trajectories, OmegaConf.to_container(cfg.ssorl, resolve=True), seed=cfg.seed, device=str(device)
        )
        (run_dir / "ssorl.json").write_text(json.dumps(diagnostics, indent=2, default=float))
        proxy = {k: v for k, v in diagnostics.items() if k.startswith("proxy_action_")}
        if proxy:  # diagnosis only: the true actions of the unlabelled part are never trained on
            logger.log(proxy, step=0, prefix="ssorl")
            logger.summary(
                f"[ssorl] {diagnostics['arm']}: {diagnostics['num_labelled']} labelled / "
                f"{diagnostics['num_unlabelled']} action-free trajectories; proxy-action MSE "
                f"{proxy['proxy_action_mse']:.4f}, MAE {proxy['proxy_action_mae']:.4f}"
            )
        else:
            logger.summary(f"[ssorl] {diagnostics['arm']}: {diagnostics['num_dataset_trajectories']} trajectories")
    return trajectories, dataset_id


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
        raise ValueError(f"trainer.reward.normalize must be none or returns, got {r.normalize!r}")
    data.reward = reward * r.scale + r.shift
    return data


def train_offline(cfg: DictConfig, run_dir: Path, device, logger) -> dict:
    from embodied_rl.data import open_dataset, transitions_from_trajectories
    from embodied_rl.envs import make_env
    from embodied_rl.trainers import OfflineTrainer, OfflineTrainerConfig
    from embodied_rl.trainers.builders import make_agent

    env = make_env(OmegaConf.to_container(cfg.env, resolve=True))
    try:
        trajectories, dataset_id = offline_trajectories(cfg, env, run_dir, device, logger)
        data = transitions_from_trajectories(trajectories, device=device)
        agent = make_agent(
            OmegaConf.to_container(cfg.agent, resolve=True), env.observation_space, env.action_space, device
        )
        if hasattr(agent, "fit_normalizer"):
            agent.fit_normalizer(data.obs)
        data = scale_rewards(data, trajectories, cfg)
        metadata = open_dataset(dataset_id).storage.metadata
        trainer_cfg = OmegaConf.to_container(cfg.trainer, resolve=True)
        for key in ("kind", "dataset", "reward"):
            trainer_cfg.pop(key)
        trainer = OfflineTrainer(
            OfflineTrainerConfig(**trainer_cfg),
            data,
            env,
            agent,
            logger,
            run_dir,
            seed=cfg.seed,
            ref_scores=(metadata.get("ref_min_score"), metadata.get("ref_max_score")),
        )
        logger.summary(f"[data] {dataset_id}: {len(trajectories)} episodes, {len(data)} transitions")
        if cfg.resume and (run_dir / "checkpoints" / "latest.pt").exists():
            trainer.resume(run_dir / "checkpoints")
            logger.summary(f"[resume] continuing {run_dir} from update {trainer.step}")
        results = trainer.train()
        results["dataset"] = dataset_id
        return results
    finally:
        env.close()


@hydra.main(config_path=CONFIG_DIR, config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from embodied_rl.data import DatasetError
    from embodied_rl.envs import UnknownTaskError

    try:
        train(cfg)
    except (UnknownTaskError, DatasetError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
