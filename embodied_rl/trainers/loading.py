"""Rebuild a trained agent from a run directory or checkpoint file (evaluation, datasets, fine-tuning), as an
agent (`load_agent`) or as a behaviour policy that generates datasets (`load_checkpoint_policy`).

A run directory of `scripts/train.py` holds `config.yaml` (the resolved Hydra config) and
`checkpoints/step_*.pt` / `checkpoints/latest.pt`; the config names the agent and its hyperparameters,
the checkpoint holds its weights under "agent".
"""

from __future__ import annotations

import warnings
from pathlib import Path
from textwrap import shorten
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from embodied_rl import devices
from embodied_rl.envs.tasks import full_task_name
from embodied_rl.trainers.builders import make_agent, resolve_device
from embodied_rl.trainers.checkpoint import load_checkpoint


def find_run(path: str | Path) -> tuple[Path, Path]:
    """(run directory, checkpoint file) from a run directory, its checkpoints/ directory or a .pt file.

    A FileNotFoundError when there is none: a path that does not exist says so (listing the checkpoints of the run
    directory above it, if there is one), a folder that is not a run directory says it has no config.yaml.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(missing_path_message(path))
    if path.is_file():
        ckpt = path
        run_dir = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    else:
        run_dir = path.parent if path.name == "checkpoints" else path
        ckpt = run_dir / "checkpoints" / "latest.pt"
    if not (run_dir / "config.yaml").exists():
        raise FileNotFoundError(f"no config.yaml in {run_dir} (is it a run directory of scripts/train.py?)")
    if not ckpt.exists():
        raise FileNotFoundError(f"no checkpoint at {ckpt}{checkpoints_of(run_dir)}")
    return run_dir, ckpt


def missing_path_message(path: Path) -> str:
    """The error for a `path` that does not exist: no such checkpoint (a .pt name) or run directory, with the
    checkpoints of the run directory it would be in (a folder with config.yaml up to three levels above)."""
    what = "no such checkpoint" if path.suffix == ".pt" else "no such run directory or checkpoint"
    run_dir = next((p for p in list(path.parents)[:3] if (p / "config.yaml").is_file()), None)
    return f"{what}: {path}" + ("" if run_dir is None else checkpoints_of(run_dir))


def checkpoints_of(run_dir: Path, most: int = 8) -> str:
    """The checkpoint files of `run_dir` (the newest `most` of them), as the end of an error line."""
    names = sorted(p.name for p in (run_dir / "checkpoints").glob("*.pt"))
    if not names:
        return f"; the run directory {run_dir} has no checkpoints yet"
    steps = [name for name in names if name != "latest.pt"]
    shown = steps[-most:] + (["latest.pt"] if "latest.pt" in names else [])
    more = f" (and {len(steps) - most} earlier)" if len(steps) > most else ""
    return f"; checkpoints of {run_dir}: {', '.join(shown)}{more}"


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be read (truncated, empty, foreign) or holds no agent weights."""


class OtherTaskWarning(UserWarning):
    """`load_agent` was given an env of another task than the run was trained on. Its spaces fit (all Meta-World
    tasks share theirs), so the agent runs there; filter this warning when that is the intent."""


def env_task(env) -> str | None:
    """The full task name of one of our envs, through any wrappers; None for an env without one (a vector env)."""
    try:
        task = env.get_wrapper_attr("task")
    except AttributeError:  # also an env without `get_wrapper_attr`
        return None
    return full_task_name(task) if isinstance(task, str) else None


def other_task_message(cfg: DictConfig, env) -> str | None:
    """A line when `env` is of another task than the run config `cfg` names; None when the same or unknown."""
    trained, task = cfg.env.get("task"), env_task(env)
    if trained is None or task is None or full_task_name(trained) == task:
        return None
    return f"the policy was trained on {full_task_name(trained)}; this env is {task}"


def load_run_config(path: str | Path) -> DictConfig:
    """The run's config.yaml; ValueError naming the file when it is unreadable, empty or lacks env / agent."""
    run_dir, _ = find_run(path)
    config = run_dir / "config.yaml"
    try:
        cfg = OmegaConf.load(config)
    except Exception as err:  # a YAML syntax error, a damaged file
        detail = " ".join(str(err).split())
        raise ValueError(f"{config} cannot be read: {shorten(detail, 200)}") from err
    if not isinstance(cfg, DictConfig) or not all(isinstance(cfg.get(key), DictConfig) for key in ("env", "agent")):
        raise ValueError(
            f"{config} is empty or holds no env / agent settings (a damaged run directory of scripts/train.py?)"
        )
    OmegaConf.set_struct(cfg, True)
    return cfg


def load_agent(
    path: str | Path,
    observation_space=None,
    action_space=None,
    device: str | torch.device = "cpu",
    env=None,
) -> tuple[Any, DictConfig, dict[str, Any]]:
    """(agent with the checkpoint's weights, run config, checkpoint dict).

    The spaces come from `env` when given, else from `observation_space` / `action_space`; they must match
    the ones the agent was trained on. An `env` of another task than the run's gives an `OtherTaskWarning`.
    A checkpoint that cannot be read is a `CheckpointError` (a RuntimeError),
    a damaged config.yaml a ValueError.
    """
    if env is not None:
        observation_space, action_space = env.observation_space, env.action_space
    if observation_space is None or action_space is None:
        raise ValueError("load_agent needs the env or both observation_space and action_space")
    _, ckpt_path = find_run(path)
    cfg = load_run_config(path)
    device = resolve_device(str(device))
    agent = make_agent(OmegaConf.to_container(cfg.agent, resolve=True), observation_space, action_space, device)
    try:
        ckpt = load_checkpoint(ckpt_path)
    except RuntimeError as err:  # a truncated or foreign file
        raise CheckpointError(str(err)) from err
    if not isinstance(ckpt, dict) or not {"agent", "step"} <= ckpt.keys():
        raise CheckpointError(f"{ckpt_path} holds no agent weights and step (not a checkpoint of scripts/train.py?)")
    agent.load_state_dict(ckpt["agent"])
    if env is not None and (message := other_task_message(cfg, env)):
        warnings.warn(f"{message} ({ckpt_path})", OtherTaskWarning, stacklevel=2)
    return agent, cfg, ckpt


def mismatch_message(err: RuntimeError, env) -> str:
    """One line for a checkpoint that `load_agent` cannot read or whose agent does not fit `env`'s spaces."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if "size mismatch" not in str(err) and "key(s) in state_dict" not in str(err):
        return lines[0] if lines else repr(err)
    detail = next((line for line in lines if line.startswith(("size mismatch", "Missing", "Unexpected"))), lines[0])
    return (
        f"the checkpoint's agent does not fit this env (observations {space_shape(env.observation_space)}, "
        f"actions {space_shape(env.action_space)}); check the env.task / env.obs_mode overrides. {shorten(detail, 200)}"
    )


def space_shape(space):
    """A space's shape, or {key: shape} for a dict space."""
    if hasattr(space, "spaces") and isinstance(space.spaces, dict):
        return {key: sub.shape for key, sub in space.spaces.items()}
    return space.shape


# ---------------------------------------------------------------- a trained agent as a behaviour policy


class CheckpointPolicy:
    """A trained agent as a behaviour policy: `agent.act(obs, deterministic)`.

    Stochastic actions (the default, as D4RL's SAC datasets; Fu et al. 2020) are sampled with torch's
    global RNG (CPU, and the agent's CUDA device if it has one) inside a fork seeded by `seed`, so a dataset
    is reproducible and the caller's torch RNG is untouched.
    """

    def __init__(self, agent: Any, deterministic: bool = False, seed: int | None = None):
        self.agent, self.deterministic = agent, deterministic
        self._rng_state = _seeded_state(torch.device("cpu"), seed)
        self._cuda = _cuda_index(getattr(agent, "device", "cpu"))  # None for a CPU agent
        self._cuda_state = None if self._cuda is None else _seeded_state(torch.device("cuda", self._cuda), seed)

    def __call__(self, obs: Any, info: dict[str, Any] | None = None) -> np.ndarray:
        if self.deterministic:
            return self.agent.act(obs, deterministic=True)
        cuda = [] if self._cuda is None else [self._cuda]
        with torch.random.fork_rng(devices=cuda):
            torch.set_rng_state(self._rng_state)
            if cuda:
                torch.cuda.set_rng_state(self._cuda_state, self._cuda)
            action = self.agent.act(obs, deterministic=False)
            self._rng_state = torch.get_rng_state()
            if cuda:
                self._cuda_state = torch.cuda.get_rng_state(self._cuda)
        return action


def _seeded_state(device: Any, seed: int | None) -> Any:
    """The state of a fresh generator on `device`, seeded by `seed` (or randomly)."""
    generator = torch.Generator(device=device)
    if seed is not None:
        generator.manual_seed(seed)
    else:
        generator.seed()
    return generator.get_state()


def _cuda_index(device: Any) -> int | None:
    """The CUDA device index of `device` ("auto": CUDA when available), or None for a CPU device."""
    device = devices.resolve_device(device)
    if device.type != "cuda":
        return None
    return torch.cuda.current_device() if device.index is None else device.index


def load_checkpoint_policy(
    path: str | None, env: gym.Env, deterministic: bool = False, seed: int | None = None, device: str = "cpu"
) -> CheckpointPolicy:
    """The agent saved by `scripts/train.py` at `path` (a run directory: its `latest.pt`, or one
    `checkpoints/step_*.pt` file), rebuilt for `env`'s spaces, as `policy(obs, info) -> action`.

    Actions are sampled from the agent's policy unless `deterministic` (then its mode, as in evaluation);
    sampling is seeded by `seed` and never moves torch's global RNG (CPU, nor the CUDA device of `device`).
    """
    if path is None:
        raise ValueError("policy.kind=checkpoint needs policy.checkpoint: a run directory or a .pt file")
    cuda = _cuda_index(device)
    with torch.random.fork_rng(devices=[] if cuda is None else [cuda]):  # building draws initial weights
        agent, _, _ = load_agent(path, env=env, device=device)
    return CheckpointPolicy(agent, deterministic, seed)
