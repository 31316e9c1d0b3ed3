"""Reading and writing local Minari datasets as lists of `Trajectory`, with one clear error for bad data.

Storage decisions (see docs/data.md):
- Observations are stored exactly as the policy saw them (array or Dict space), so the dataset's spaces
  match the env that made it and `check_dataset_matches_env` can compare them.
- Rendered frames are stored in the infos under `frame` (T+1 entries: the reset frame, then one per step),
  as raw uint8 arrays (Minari never JPEG-encodes infos), so they come back with the episode as
  `Trajectory.frames` without changing the observation space.
- Infos follow Minari's DataCollector layout: T+1 entries per key, the first from `reset()`. `success`
  and any other info keys are exposed per step (T,) in `Trajectory`.
"""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import minari
import numpy as np
from minari.data_collector.episode_buffer import EpisodeBuffer
from minari.dataset.minari_dataset import parse_dataset_id
from minari.dataset.minari_storage import MinariStorage
from minari.storage.datasets_root_dir import get_dataset_path

from embodied_rl.data.errors import DatasetError
from embodied_rl.data.trajectory import Trajectory

NAMESPACE = "embodied_rl"
FRAME_KEY = "frame"
SUCCESS_KEY = "success"
# A dataset being written is marked incomplete twice over: a hidden marker file beside its folder
# (`.<name>-v<N>.incomplete`, ignored by Minari) from before Minari creates the folder until `write_dataset` has
# stored the metadata, and this metadata flag, set with the first chunk of a chunked write
# (`collection.write_trajectories`) and cleared after the last. A dataset that keeps either was interrupted (a
# killed collection) and holds only some of its episodes, or none: loading it is an error, and
# `scripts/make_datasets.py` builds such a tier again (so two builders must not work on one task at once).
INCOMPLETE_KEY = "embodied_rl_incomplete"

DatasetLike = str | minari.MinariDataset


def dataset_id_for(task: str, name: str, version: int = 0) -> str:
    """`("metaworld/drawer-open-v3", "expert")` -> `"embodied_rl/metaworld-drawer-open-v3/expert-v0"`.

    The namespace is the env's gymnasium id (`embodied_rl/metaworld-drawer-open-v3`), the name says how
    the data was made. A bare task name (`"drawer-open-v3"`) gives the same id as the full one.
    """
    from embodied_rl.envs.tasks import full_task_name  # when used: importing envs registers every task

    dataset_id = f"{NAMESPACE}/{full_task_name(task).replace('/', '-')}/{name}-v{version}"
    validate_dataset_id(dataset_id)
    return dataset_id


def validate_dataset_id(dataset_id: str) -> None:
    """Minari ids are `(namespace/)name-v<version>` with letters, digits, `-` and `_` only (no dots)."""
    try:
        _, _, version = parse_dataset_id(dataset_id)
    except (ValueError, TypeError) as err:
        raise DatasetError(
            f"malformed dataset id {dataset_id!r}: ids look like 'namespace/name-v0' and may only use "
            "letters, digits, '-', '_' and '/'"
        ) from err
    if version is None:
        raise DatasetError(f"malformed dataset id {dataset_id!r}: it must end with a version, e.g. '-v0'")


def datasets_root() -> Path:
    """Where Minari keeps local datasets: `$MINARI_DATASETS_PATH`, else `~/.minari/datasets`."""
    return get_dataset_path()


def dataset_exists(dataset_id: str) -> bool:
    return get_dataset_path(dataset_id).exists()


def incomplete_marker(dataset_id: str) -> Path:
    """The marker file of a dataset being written: hidden, beside the dataset's folder (see `INCOMPLETE_KEY`)."""
    path = get_dataset_path(dataset_id)
    return path.parent / f".{path.name}.incomplete"


def is_incomplete(dataset_id: str) -> bool:
    """Whether the local dataset `dataset_id` is one whose writing was interrupted (see `INCOMPLETE_KEY`)."""
    if incomplete_marker(dataset_id).exists():
        return True
    try:
        metadata = MinariStorage.read_raw_metadata(get_dataset_path(dataset_id) / "data")
    except Exception:  # missing or unreadable: open_dataset says which
        return False
    return bool(metadata.get(INCOMPLETE_KEY, False))


def _incomplete_message(dataset_id: str) -> str:
    return (
        f"dataset {dataset_id!r} is incomplete: its writing was interrupted (the collection was killed?) or is still "
        "going on in another process, so it holds only some of its episodes. Write it again with overwrite=true "
        "(scripts/collect.py) or run scripts/make_datasets.py again (it rebuilds interrupted tiers)"
    )


def check_writable(dataset_id: str, overwrite: bool = False) -> None:
    """Raise `DatasetError` for a malformed id, or for an existing dataset unless `overwrite`."""
    validate_dataset_id(dataset_id)
    if dataset_exists(dataset_id) and not overwrite:
        if is_incomplete(dataset_id):
            raise DatasetError(_incomplete_message(dataset_id))
        raise DatasetError(
            f"dataset {dataset_id!r} already exists at {get_dataset_path(dataset_id)}; "
            "pass overwrite=true to replace it, or choose another name or version"
        )


def delete_dataset(dataset_id: str) -> None:
    """Remove a local dataset and its incomplete marker (no error if they are not there)."""
    shutil.rmtree(get_dataset_path(dataset_id), ignore_errors=True)
    incomplete_marker(dataset_id).unlink(missing_ok=True)


def open_dataset(dataset: DatasetLike) -> minari.MinariDataset:
    """Open a local Minari dataset by id (or check an already open one), raising `DatasetError` when it is
    unknown, unreadable or truncated."""
    if isinstance(dataset, minari.MinariDataset):
        _check_complete(dataset, dataset.id)
        _probe(dataset, dataset.id)
        return dataset
    validate_dataset_id(dataset)
    if incomplete_marker(dataset).exists():  # before opening: a file killed while Minari wrote it may be unreadable
        raise DatasetError(_incomplete_message(dataset))
    data_path = get_dataset_path(dataset) / "data"
    if not data_path.exists():
        local = sorted(minari.list_local_datasets())
        listing = ", ".join(local) if local else "none"
        raise DatasetError(
            f"unknown dataset id {dataset!r}: nothing at {data_path.parent} "
            f"(datasets root {datasets_root()}; MINARI_DATASETS_PATH sets it). Local datasets: {listing}. "
            "Create it with scripts/collect.py (the graded tiers: scripts/make_datasets.py metaworld for expert, "
            "medium, mixed and random; scripts/make_datasets.py mujoco --run <a SAC run> for random, medium, "
            "medium-replay, expert and medium-expert; docs/datasets.md)."
        )
    try:
        opened = minari.MinariDataset(data_path)
    except Exception as err:
        raise DatasetError(f"dataset {dataset!r} at {data_path} is corrupt (unreadable metadata): {err}") from err
    _check_complete(opened, dataset)
    _probe(opened, dataset)
    return opened


def _check_complete(dataset: minari.MinariDataset, name: str) -> None:
    """Refuse a dataset marked incomplete, by its marker file or its metadata flag (before `_probe`: a file killed
    mid-append may also read as truncated)."""
    if incomplete_marker(name).exists() or dataset.storage.metadata.get(INCOMPLETE_KEY, False):
        raise DatasetError(_incomplete_message(name))


def _probe(dataset: minari.MinariDataset, name: str) -> None:
    """Open the data file and read every episode's header: a truncated file fails here, not in training."""
    try:
        headers = list(dataset.storage.get_episode_metadata(dataset.episode_indices))
    except Exception as err:
        raise DatasetError(f"dataset {name!r} at {dataset.storage.data_path} is truncated or corrupt: {err}") from err
    if len(headers) == 0:
        raise DatasetError(f"dataset {name!r} at {dataset.storage.data_path} holds no episodes")


def load_trajectories(
    dataset: DatasetLike,
    env: gym.Env | None = None,
    obs_key: str | None = None,
    episode_indices: Iterable[int] | None = None,
) -> list[Trajectory]:
    """Load episodes of a local Minari dataset as `Trajectory`s.

    Args:
        dataset: a dataset id such as `embodied_rl/metaworld-drawer-open-v3/expert-v0`, or an open dataset.
        env: if given, the dataset's observation and action shapes are checked against it (against the
            `obs_key` entry of a Dict observation space when `obs_key` is given).
        obs_key: for Dict observations, keep only this key (e.g. `"state"`).
        episode_indices: which episodes (default: all); an index outside the dataset is a `DatasetError`.
    """
    opened = open_dataset(dataset)
    if episode_indices is None:
        indices = opened.episode_indices
    else:
        indices = _check_indices(episode_indices, opened.storage.total_episodes, opened.id)
    try:
        headers = list(opened.storage.get_episode_metadata(indices))
        episodes = list(opened.iterate_episodes(indices))
    except Exception as err:
        raise DatasetError(
            f"could not read the episodes of dataset {opened.id!r} (truncated or corrupt file?): {err}"
        ) from err
    try:
        trajectories = [
            _to_trajectory(episode, header.get("seed"), obs_key, opened.id)
            for episode, header in zip(episodes, headers)
        ]
    except DatasetError as err:
        raise DatasetError(f"dataset {opened.id!r} is inconsistent: {err}") from err
    if env is not None:
        check_dataset_matches_env(trajectories, env, name=opened.id, obs_key=obs_key)
        check_same_task(opened, env)
    return trajectories


def check_same_task(dataset: minari.MinariDataset, env: gym.Env) -> None:
    """Raise a `DatasetError` when the dataset's stored env id differs from `env`'s: data of one task would
    train a policy evaluated on another (Meta-World tasks share their 39-d observations, so the shape check
    cannot tell), scored with the other task's reference returns. Only envs of our namespace are compared
    (`embodied_rl/metaworld-reach-v3`); datasets of other envs or without a stored env pass."""
    data_id = dataset.env_spec.id if dataset.env_spec is not None else ""
    env_id = env.spec.id if getattr(env, "spec", None) is not None else ""
    ours = f"{NAMESPACE}/"
    if data_id.startswith(ours) and env_id.startswith(ours) and data_id != env_id:
        raise DatasetError(
            f"dataset {dataset.id!r} was collected on {data_id!r}, not on {env_id!r}: train on the task the data "
            f"comes from (env.task=...) or pick a dataset of this task"
        )


def _check_indices(episode_indices: Iterable[int], total: int, name: str) -> np.ndarray:
    """`episode_indices` as an int array (n,), or one `DatasetError` naming those outside [0, total)."""
    indices = np.asarray(list(episode_indices))
    if indices.size == 0:
        return indices.astype(np.int64)
    if indices.ndim != 1 or indices.dtype.kind not in "iu":
        raise DatasetError(f"episode_indices must be a flat list of ints, got {indices.tolist()!r}")
    bad = indices[(indices < 0) | (indices >= total)]
    if len(bad):
        raise DatasetError(
            f"episode_indices {bad.tolist()} out of range: dataset {name!r} holds {total} episodes (0 to {total - 1})"
        )
    return indices


def _to_trajectory(episode: Any, seed: int | None, obs_key: str | None, name: str) -> Trajectory:
    steps = len(episode.rewards)

    def per_step(values: Any) -> np.ndarray:  # infos hold T+1 entries (reset first); keep the T step ones
        values = np.asarray(values)
        return values[1:] if len(values) == steps + 1 else values

    infos = dict(episode.infos or {})
    frames = infos.pop(FRAME_KEY, None)
    success = per_step(infos.pop(SUCCESS_KEY)) if SUCCESS_KEY in infos else np.zeros(steps, dtype=bool)
    observations = episode.observations
    if obs_key is not None:
        if not isinstance(observations, dict) or obs_key not in observations:
            keys = list(observations) if isinstance(observations, dict) else "an array, not a dict"
            raise DatasetError(f"dataset {name!r}: obs_key={obs_key!r} not in its observations ({keys})")
        observations = observations[obs_key]
    return Trajectory(
        observations=observations,
        actions=np.asarray(episode.actions),
        rewards=np.asarray(episode.rewards),
        terminations=np.asarray(episode.terminations),
        truncations=np.asarray(episode.truncations),
        success=success != 0,
        frames=None if frames is None else np.asarray(frames),
        infos={k: per_step(v) for k, v in infos.items() if not isinstance(v, dict)},
        episode_id=int(episode.id),
        seed=None if seed is None else int(seed),
    )


def _to_episode_buffer(trajectory: Trajectory) -> EpisodeBuffer:
    """The inverse of `_to_trajectory`: infos get a leading reset entry (False / zeros) as Minari expects."""
    infos: dict[str, np.ndarray] = {SUCCESS_KEY: np.concatenate([[False], trajectory.success])}
    for key, values in trajectory.infos.items():
        values = np.asarray(values)
        infos[key] = np.concatenate([np.zeros_like(values[:1]), values])
    if trajectory.frames is not None:
        infos[FRAME_KEY] = np.asarray(trajectory.frames, dtype=np.uint8)
    return EpisodeBuffer(
        seed=trajectory.seed,
        observations=trajectory.observations,
        actions=np.asarray(trajectory.actions),
        rewards=np.asarray(trajectory.rewards),
        terminations=trajectory.terminations,
        truncations=trajectory.truncations,
        infos=infos,
    )


def write_dataset(
    trajectories: Sequence[Trajectory],
    dataset_id: str,
    env: gym.Env | None = None,
    observation_space: gym.Space | None = None,
    action_space: gym.Space | None = None,
    metadata: dict[str, Any] | None = None,
    description: str | None = None,
    algorithm_name: str | None = None,
    overwrite: bool = False,
    jpeg_encoding: bool = False,
) -> minari.MinariDataset:
    """Create a local Minari dataset from trajectories (under `$MINARI_DATASETS_PATH` or Minari's default).

    The env (or explicit spaces) gives the dataset's spaces and the gymnasium spec Minari stores so that
    `dataset.recover_environment()` can rebuild it. `metadata` is merged into Minari's metadata (e.g.
    `ref_min_score` / `ref_max_score`). Raises `DatasetError` if the id exists and `overwrite` is false.
    A failed write leaves nothing behind; a killed one leaves the dataset marked incomplete (`is_incomplete`).
    """
    check_writable(dataset_id, overwrite)
    delete_dataset(dataset_id)
    if env is not None:
        observation_space = observation_space or env.observation_space
        action_space = action_space or env.action_space
        if not _spec_is_serialisable(env):
            warnings.warn(
                f"the env's gymnasium spec cannot be stored, so dataset {dataset_id!r} will not be able to "
                "recover its env (make envs with gym.make on a registered id to keep it)",
                stacklevel=2,
            )
            env = None
    if observation_space is None or action_space is None:
        raise ValueError("write_dataset needs an env or both observation_space and action_space")
    marker = incomplete_marker(dataset_id)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()  # before Minari creates anything: a kill from here on leaves the dataset marked
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*is set to None.*")
            warnings.filterwarnings("ignore", message=".*env_spec is None.*")
            dataset = minari.create_dataset_from_buffers(
                dataset_id,
                [_to_episode_buffer(t) for t in trajectories],
                env=env,
                observation_space=observation_space,
                action_space=action_space,
                algorithm_name=algorithm_name,
                author=NAMESPACE,
                code_permalink="embodied_rl/scripts/collect.py",
                description=description,
                jpeg_encoding=jpeg_encoding,
            )
        if metadata:
            dataset.storage.update_metadata(metadata)
    except BaseException:
        delete_dataset(dataset_id)
        raise
    marker.unlink()
    return dataset


def _spec_is_serialisable(env: gym.Env) -> bool:
    if env.spec is None:
        return False
    try:
        env.spec.to_json()
    except (TypeError, ValueError):  # e.g. a callable entry point or non-JSON kwargs
        return False
    return True


def append_trajectories(dataset: minari.MinariDataset, trajectories: Sequence[Trajectory]) -> None:
    """Add episodes to an existing dataset (used to write long collections in chunks)."""
    dataset.update_dataset_from_buffer([_to_episode_buffer(t) for t in trajectories])


def update_metadata(dataset: minari.MinariDataset, metadata: dict[str, Any]) -> None:
    """Merge extra keys (JSON-serialisable) into the dataset's metadata."""
    dataset.storage.update_metadata(metadata)


def _space_shapes(space: gym.Space) -> Any:
    if isinstance(space, gym.spaces.Dict):
        return {key: _space_shapes(sub) for key, sub in space.spaces.items()}
    return tuple(space.shape) if space.shape is not None else None


def _data_shapes(observations: Any) -> Any:
    if isinstance(observations, dict):
        return {key: _data_shapes(value) for key, value in observations.items()}
    return tuple(np.shape(observations)[1:])


def _select_key(shapes: Any, obs_key: str | None, where: str) -> Any:
    """The `obs_key` entry of Dict observation shapes (array shapes, already selected, pass through)."""
    if obs_key is None or not isinstance(shapes, dict):
        return shapes
    if obs_key not in shapes:
        raise DatasetError(f"obs_key={obs_key!r} not in the observations of the {where} ({list(shapes)})")
    return shapes[obs_key]


def check_dataset_matches_env(
    dataset: DatasetLike | Sequence[Trajectory],
    env: gym.Env | gym.vector.VectorEnv,
    name: str | None = None,
    obs_key: str | None = None,
) -> None:
    """Raise one `DatasetError` naming every observation / action shape that differs between data and env.

    `dataset` may be an id, an open Minari dataset or loaded trajectories; `env` a gymnasium env or a
    vector env. With `obs_key`, only that entry of Dict observations (data and env) is compared.
    """
    env_obs = _space_shapes(getattr(env, "single_observation_space", env.observation_space))
    env_act = _space_shapes(getattr(env, "single_action_space", env.action_space))
    if isinstance(dataset, (str, minari.MinariDataset)):
        opened = open_dataset(dataset)
        name = name or opened.id
        data_obs, data_act = _space_shapes(opened.observation_space), _space_shapes(opened.action_space)
    else:
        if len(dataset) == 0:
            raise DatasetError(f"dataset {name or ''!r} holds no trajectories")
        data_obs, data_act = _data_shapes(dataset[0].observations), tuple(np.shape(dataset[0].actions)[1:])
    data_obs, env_obs = _select_key(data_obs, obs_key, f"dataset {name!r}"), _select_key(env_obs, obs_key, "env")
    problems = []
    if data_obs != env_obs:
        problems.append(f"observation shape {data_obs} in the dataset vs {env_obs} in the env")
    if data_act != env_act:
        problems.append(f"action shape {data_act} in the dataset vs {env_act} in the env")
    if problems:
        env_id = env.spec.id if getattr(env, "spec", None) is not None else type(env).__name__
        raise DatasetError(f"dataset {name!r} does not match env {env_id!r}: " + "; ".join(problems))
