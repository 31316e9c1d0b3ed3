"""A generated reward program in place of the env's reward, as gymnasium wrappers around a `RewardSandbox`.

- `SandboxVectorReward` wraps a training vector env (sub-envs wrapped in `SnapshotInfo`): after each vector step it
  sends the N snapshots the step reached and the N actions to one sandbox worker in one call (batched per vector
  step, issue 8 section 3), replaces the N rewards, keeps the env's own in ``info["env_reward"]``, and writes one
  line per finished episode to a `RewardComponentLog` (the episode's return under the program and the sum of each
  component the program reports), which refinement feeds back to the LLM.
- `SandboxReward` does the same for a single env (e.g. a smoke rollout): one call per step.

A failing program raises `CandidateFailed` from `step`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from embodied_rl.rewards.text2reward.sandbox import RewardSandbox, SandboxLimits
from embodied_rl.rewards.text2reward.snapshot import SNAPSHOT_KEY, snapshots_from_info

COMPONENTS_FILE = "reward_components.jsonl"


class RewardComponentLog:
    """Per finished episode, one JSON line: env steps so far (of this wrapper's envs), the episode's length, its
    return under the program and each reported component's sum over the episode."""

    def __init__(self, path: str | Path | None):
        self.path = Path(path) if path is not None else None

    def write(self, env_steps: int, length: int, program_return: float, components: Mapping[str, float]) -> None:
        if self.path is None:
            return
        row = {
            "env_steps": int(env_steps),
            "length": int(length),
            "return": float(program_return),
            "components": {name: float(value) for name, value in components.items()},
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")


def read_component_log(path: str | Path) -> list[dict[str, Any]]:
    """The rows a `RewardComponentLog` wrote (none if the file does not exist; a torn last line is skipped)."""
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a run killed while writing leaves at most one torn line
    return rows


def component_curves(rows: list[dict[str, Any]], parts: int = 3) -> list[dict[str, Any]]:
    """Episodes split into `parts` consecutive stretches: per stretch, the mean, min and max episode sum of each
    component (what Eureka-style feedback shows the LLM)."""
    if not rows:
        return []
    curves = []
    for chunk in np.array_split(np.arange(len(rows)), min(parts, len(rows))):
        picked = [rows[i] for i in chunk]
        names = sorted({name for row in picked for name in row["components"]})
        stats = {}
        for name in names:
            values = np.array([row["components"][name] for row in picked if name in row["components"]])
            stats[name] = {"mean": float(values.mean()), "min": float(values.min()), "max": float(values.max())}
        curves.append({"until_env_steps": picked[-1]["env_steps"], "episodes": len(picked), "components": stats})
    return curves


class SandboxVectorReward(gym.vector.VectorWrapper):
    """Rewards of a vector env from a generated program, one sandbox call per vector step.

    Every sub-env must carry `SnapshotInfo` (the snapshot of the state each step reached, a finished sub-env's
    from ``info["final_info"]``). The worker starts at the first step."""

    def __init__(
        self,
        env: gym.vector.VectorEnv,
        source: str,
        limits: SandboxLimits | None = None,
        workdir: str | Path | None = None,
        components_path: str | Path | None = None,
    ):
        super().__init__(env)
        self.source, self.limits, self.workdir = source, limits or SandboxLimits(), workdir
        self.sandbox: RewardSandbox | None = None
        self.log = RewardComponentLog(components_path)
        self.env_steps = 0
        self._return = np.zeros(self.num_envs)
        self._length = np.zeros(self.num_envs, dtype=np.int64)
        self._components: dict[str, np.ndarray] = {}

    def step(self, actions):
        obs, reward, terminated, truncated, info = self.env.step(actions)
        if self.sandbox is None:
            self.sandbox = RewardSandbox(self.source, limits=self.limits, workdir=self.workdir)
        snapshots = snapshots_from_info(info, self.num_envs)
        program_reward = self.sandbox(snapshots, np.asarray(actions).reshape(self.num_envs, -1))
        info = dict(info)
        info["env_reward"] = np.asarray(reward)
        self._account(program_reward, self.sandbox.components, terminated | truncated)
        return obs, program_reward, terminated, truncated, info

    def _account(self, reward: np.ndarray, components: dict[str, np.ndarray], done: np.ndarray) -> None:
        self.env_steps += self.num_envs
        self._return += reward
        self._length += 1
        for name, values in components.items():
            self._components.setdefault(name, np.zeros(self.num_envs))
            self._components[name] += values
        for i in np.flatnonzero(done):
            sums = {name: totals[i] for name, totals in self._components.items()}
            self.log.write(self.env_steps, self._length[i], self._return[i], sums)
            self._return[i], self._length[i] = 0.0, 0
            for totals in self._components.values():
                totals[i] = 0.0

    def close(self, **kwargs: Any) -> None:
        if self.sandbox is not None:
            self.sandbox.close()
            self.sandbox = None
        super().close(**kwargs)


class SandboxReward(gym.Wrapper):
    """The reward of each step of one env from a generated program: `compute_dense_reward(obs, action)` on the
    snapshot the step reached (``info["snapshot"]``, from an inner `SnapshotInfo`). ``info["env_reward"]`` keeps the
    env's own reward and ``info["reward_components"]`` the program's components, if it reports any."""

    def __init__(self, env: gym.Env, source: str, limits: SandboxLimits | None = None, workdir: str | None = None):
        super().__init__(env)
        self.source, self.limits, self.workdir = source, limits or SandboxLimits(), workdir
        self.sandbox: RewardSandbox | None = None

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        if self.sandbox is None:
            self.sandbox = RewardSandbox(self.source, limits=self.limits, workdir=self.workdir)
        info["env_reward"] = reward
        reward = float(self.sandbox([info[SNAPSHOT_KEY]], np.asarray(action)[None])[0])
        if self.sandbox.components:
            info["reward_components"] = {name: float(v[0]) for name, v in self.sandbox.components.items()}
        return obs, reward, terminated, truncated, info

    def close(self) -> None:
        if self.sandbox is not None:
            self.sandbox.close()
            self.sandbox = None
        super().close()
