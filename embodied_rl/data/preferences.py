"""Preference data: pairs of segments of a trajectory dataset and the probability that the first is preferred.

A segment is H consecutive steps of one episode: the H observations at which its actions were taken, the H actions
and the H rewards, `observations[start : start + H]`, `actions[start : start + H]`, `rewards[start : start + H]`.
A pair is stored by reference (episode id and start step of both segments), so the dataset itself is never copied.

`label` is the probability that segment 1 is preferred: 1.0 segment 1, 0.0 segment 2, 0.5 a tie, anything in
between a soft label (a Bradley-Terry teacher, labels transferred across tasks); NaN for a pair not labelled yet.
This is the target of the Bradley-Terry cross-entropy the reward models are fitted with (Christiano et al. 2017;
B-Pref, Lee et al. 2021; PEARL, Liu et al. 2024, its preliminaries).

`import_preference_labels` reads labels in the layout of the Preference Transformer release (Kim et al., ICLR 2023,
github.com/csmile-1006/PreferenceTransformer, folder `human_label/`): docs/preferences.md has the layout and an
example.
"""

from __future__ import annotations

import io
import pickle
import re
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from embodied_rl.data.errors import DatasetError
from embodied_rl.data.trajectory import Trajectory
from embodied_rl.files import atomic_write

FORMAT_VERSION = 1
_FIELDS = ("episode_1", "start_1", "episode_2", "start_2", "label")


@dataclass
class PreferencePairs:
    """P pairs of segments of `segment_length` steps, each with the probability that segment 1 is preferred."""

    segment_length: int
    episode_1: np.ndarray  # (P,) int64 episode ids of the first segments
    start_1: np.ndarray  # (P,) int64 step of each first segment's first action
    episode_2: np.ndarray  # (P,) int64
    start_2: np.ndarray  # (P,) int64
    label: np.ndarray  # (P,) float32 P(segment 1 preferred) in [0, 1]; NaN: unlabelled
    source: str = "unlabelled"  # "scripted", "imported:<file name>", "transferred:<source task>", ...

    def __post_init__(self) -> None:
        self.segment_length = int(self.segment_length)
        if self.segment_length < 1:
            raise ValueError(f"segment_length must be >= 1, got {self.segment_length}")
        for name in _FIELDS:
            dtype = np.float32 if name == "label" else np.int64
            setattr(self, name, np.asarray(getattr(self, name), dtype=dtype).reshape(-1))
        lengths = {name: len(getattr(self, name)) for name in _FIELDS}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"preference pair arrays have different lengths: {lengths}")
        labelled = self.label[~np.isnan(self.label)]
        if ((labelled < 0) | (labelled > 1)).any():
            raise ValueError(
                f"labels must be probabilities in [0, 1] (or NaN), got {labelled[(labelled < 0) | (labelled > 1)][:5]}"
            )
        if (self.start_1 < 0).any() or (self.start_2 < 0).any():
            raise ValueError("segment starts must be >= 0")

    def __len__(self) -> int:
        return len(self.label)

    def select(self, mask: np.ndarray) -> PreferencePairs:
        """The pairs where `mask` (P,) bool is true, or those at the indices `mask` (K,) int."""
        return PreferencePairs(
            self.segment_length, *(getattr(self, name)[mask] for name in _FIELDS), source=self.source
        )

    def save(self, path: str | Path) -> None:
        """An .npz file (no pickles), written whole or not at all."""
        arrays = {name: getattr(self, name) for name in _FIELDS}
        with atomic_write(path, "wb") as f:
            np.savez(
                f,
                format_version=np.int64(FORMAT_VERSION),
                segment_length=np.int64(self.segment_length),
                source=np.str_(self.source),
                **arrays,
            )

    @classmethod
    def load(cls, path: str | Path) -> PreferencePairs:
        """Pairs saved by `save`; a DatasetError for a file that is not one."""
        try:
            with np.load(path, allow_pickle=False) as data:
                values = {key: data[key] for key in data.files}
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
            raise DatasetError(f"{path} is not a preference pairs file (.npz): {error}") from error
        missing = sorted({"format_version", "segment_length", "source", *_FIELDS} - set(values))
        if missing:
            raise DatasetError(f"{path} is not a preference pairs file: missing {missing}")
        if int(values["format_version"]) != FORMAT_VERSION:
            raise DatasetError(
                f"{path} has preference pairs format {int(values['format_version'])}, not {FORMAT_VERSION}"
            )
        try:
            return cls(int(values["segment_length"]), *(values[name] for name in _FIELDS), source=str(values["source"]))
        except ValueError as error:
            raise DatasetError(f"{path}: {error}") from error


# ---------------------------------------------------------------- segments of a dataset


def _by_episode(trajectories: Sequence[Trajectory]) -> dict[int, Trajectory]:
    """Trajectories by episode id; ids must be unique (pairs refer to segments by them)."""
    table = {int(t.episode_id): t for t in trajectories}
    if len(table) != len(trajectories):
        ids = [int(t.episode_id) for t in trajectories]
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        raise DatasetError(f"episode ids must be unique to refer to segments; repeated: {repeated[:10]}")
    return table


def sample_segment_pairs(
    trajectories: Sequence[Trajectory], num_pairs: int, segment_length: int = 50, seed: int = 0
) -> PreferencePairs:
    """`num_pairs` unlabelled pairs (label NaN), each segment uniform over the windows of `segment_length` steps
    that fit inside an episode, the second drawn among the windows other than the first (a pair never compares a
    segment with itself; two windows may overlap or share an episode). Deterministic for a seed."""
    if num_pairs < 1 or segment_length < 1:
        raise ValueError(f"num_pairs and segment_length must be >= 1, got {num_pairs} and {segment_length}")
    _by_episode(trajectories)
    usable = [t for t in trajectories if len(t) >= segment_length]
    windows = np.array([len(t) - segment_length + 1 for t in usable], dtype=np.int64)  # windows per episode
    total = int(windows.sum())
    if total < 2:
        longest = max((len(t) for t in trajectories), default=0)
        raise DatasetError(
            f"{total} window(s) of {segment_length} steps in the dataset (longest episode: {longest} steps); "
            "a pair needs two different segments"
        )
    rng = np.random.default_rng(seed)
    first = rng.integers(total, size=num_pairs)  # (P,) window numbers in [0, total)
    second = rng.integers(total - 1, size=num_pairs)  # uniform over the total - 1 other windows:
    second = second + (second >= first)  # skip the first window's number
    offsets = np.concatenate([[0], np.cumsum(windows)])  # window number of each episode's first window
    ids = np.array([t.episode_id for t in usable], dtype=np.int64)

    def locate(window: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        episode = np.searchsorted(offsets, window, side="right") - 1  # (P,) index into `usable`
        return ids[episode], window - offsets[episode]

    episode_1, start_1 = locate(first)
    episode_2, start_2 = locate(second)
    label = np.full(num_pairs, np.nan, dtype=np.float32)
    return PreferencePairs(segment_length, episode_1, start_1, episode_2, start_2, label, source="unlabelled")


def segment_arrays(
    trajectories: Sequence[Trajectory],
    episode_ids: np.ndarray,
    starts: np.ndarray,
    length: int,
    keys: Sequence[str] = ("obs", "action", "reward"),
) -> dict[str, np.ndarray]:
    """The N segments (episode_ids[i], starts[i]) of `length` steps, float32:
    "obs" (N, H, *obs_shape): the observations at which each action was taken, observations[start : start + H];
    "action" (N, H, A); "reward" (N, H), the dataset's rewards. `keys` picks which to gather.
    A DatasetError for an unknown episode id or a window that does not fit inside its episode."""
    episode_ids = np.asarray(episode_ids, dtype=np.int64).reshape(-1)
    starts = np.asarray(starts, dtype=np.int64).reshape(-1)
    if len(episode_ids) != len(starts):
        raise ValueError(f"{len(episode_ids)} episode ids but {len(starts)} starts")
    unknown = sorted(set(keys) - {"obs", "action", "reward"})
    if unknown:
        raise ValueError(f"unknown segment keys {unknown}; known: obs, action, reward")
    table = _by_episode(trajectories)
    missing = sorted(set(episode_ids.tolist()) - set(table))
    if missing:
        raise DatasetError(f"segments refer to episodes not in the dataset: {missing[:10]}")
    if "obs" in keys and trajectories and isinstance(trajectories[0].observations, dict):
        raise DatasetError("segments need array observations; load with load_trajectories(..., obs_key='state')")
    lengths = np.array([len(table[int(e)]) for e in episode_ids], dtype=np.int64)  # (N,)
    bad = np.flatnonzero((starts < 0) | (starts + length > lengths))
    if len(bad):
        i = bad[0]
        raise DatasetError(
            f"{len(bad)} segment(s) of {length} steps do not fit inside their episode, e.g. episode "
            f"{episode_ids[i]} ({lengths[i]} steps) from step {starts[i]}"
        )

    first = next(iter(table.values()), None)
    num = len(episode_ids)
    out = {}
    if "obs" in keys:
        obs_shape = np.shape(first.observations)[1:] if first is not None else ()
        out["obs"] = np.empty((num, length, *obs_shape), np.float32)
    if "action" in keys:
        out["action"] = np.empty((num, length, np.shape(first.actions)[1] if first is not None else 0), np.float32)
    if "reward" in keys:
        out["reward"] = np.empty((num, length), np.float32)
    steps = np.arange(length)  # (H,)
    sources = {"obs": "observations", "action": "actions", "reward": "rewards"}
    for episode in np.unique(episode_ids):  # one gather per episode, never a copy of the whole dataset
        rows = np.flatnonzero(episode_ids == episode)
        index = starts[rows, None] + steps  # (n, H) steps of this episode
        trajectory = table[int(episode)]
        for key in out:
            out[key][rows] = np.asarray(getattr(trajectory, sources[key]))[index]
    return out


def pair_segment_arrays(
    pairs: PreferencePairs, trajectories: Sequence[Trajectory], keys: Sequence[str] = ("obs", "action", "reward")
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """`segment_arrays` of the first and of the second segments of every pair: two dicts of (P, H, ...) arrays."""
    H = pairs.segment_length
    return (
        segment_arrays(trajectories, pairs.episode_1, pairs.start_1, H, keys),
        segment_arrays(trajectories, pairs.episode_2, pairs.start_2, H, keys),
    )


# ---------------------------------------------------------------- import of released labels

# Keys of a single .npz or pickle file: the names of Preference Transformer's query batch.
IMPORT_KEYS = ("start_indices", "start_indices_2", "labels")


def import_preference_labels(
    path: str | Path, trajectories: Sequence[Trajectory], segment_length: int
) -> PreferencePairs:
    """Labels in the layout of the Preference Transformer release, checked against `trajectories`.

    `path` is one of
    - a folder as released (`human_label/<dataset>/`): pickles `indices_num<P>[_q<H>]` (starts of the first
      segments), `indices_2_num<P>[_q<H>]` (starts of the second) and `label_human` (labels); other files
      (`label_dummy`, a placeholder) are not read. A `_q<H>` in the names must equal `segment_length`;
    - an .npz file, or a pickle of a dict, with the arrays `start_indices`, `start_indices_2` and `labels`.

    Starts are indices into the dataset's transitions concatenated in the order of `trajectories` (episode order,
    as `load_trajectories` gives them): index k is step k - n_before of the episode holding it, where n_before
    counts the transitions of the episodes before it. Labels as the release stores them: 1-D, 0 = the first
    segment preferred, 1 = the second, -1 = equally preferred (a value in (0, 1): the probability of the second),
    or (P, 2) rows [p_first, p_second] summing to 1. Imported labels are P(first preferred): 1 - y, 0.5 for -1,
    p_first. Pickles are read with an unpickler that only builds numbers, lists, dicts and numpy arrays.

    A DatasetError for a file that does not match the dataset: arrays of different lengths, an index out of
    range, a segment crossing an episode's end, labels outside [0, 1] (other than -1).
    """
    if segment_length < 1:
        raise ValueError(f"segment_length must be >= 1, got {segment_length}")
    path = Path(path)
    arrays = _read_release(path, segment_length)
    lengths = {key: len(value) for key, value in arrays.items()}
    if len(set(lengths.values())) != 1:
        raise DatasetError(f"{path}: arrays of different lengths: {lengths} (one entry per pair in each)")
    if lengths["labels"] == 0:
        raise DatasetError(f"{path} holds no pairs")
    label = _release_labels(arrays["labels"], path)
    _by_episode(trajectories)  # ids must be unique
    episode_1, start_1 = _locate_starts(arrays["start_indices"], "start_indices", trajectories, segment_length, path)
    episode_2, start_2 = _locate_starts(
        arrays["start_indices_2"], "start_indices_2", trajectories, segment_length, path
    )
    return PreferencePairs(
        segment_length, episode_1, start_1, episode_2, start_2, label, source=f"imported:{path.name}"
    )


def _read_release(path: Path, segment_length: int) -> dict[str, np.ndarray]:
    """The three arrays of a release folder, .npz file or pickled dict, as 1-D / 2-D numpy arrays."""
    if path.is_dir():
        names = sorted(p.name for p in path.iterdir() if p.is_file())
        roles = {  # key: (file name pattern, files of the folder that match it)
            "start_indices": ("indices_num<P>", [n for n in names if re.match(r"indices_(?!2_)", n)]),
            "start_indices_2": ("indices_2_num<P>", [n for n in names if n.startswith("indices_2_")]),
            "labels": ("label_human", [n for n in names if n == "label_human"]),
        }
        files = {}
        for key, (pattern, found) in roles.items():
            if len(found) != 1:
                raise DatasetError(
                    f"{path}: expected one {pattern} file (Preference Transformer layout), "
                    f"found {found or 'none'} among {names}"
                )
            files[key] = found[0]
        for key in ("start_indices", "start_indices_2"):
            match = re.search(r"_q(\d+)$", files[key])
            if match and int(match[1]) != segment_length:
                raise DatasetError(
                    f"{path / files[key]} holds segments of {match[1]} steps, not segment_length={segment_length}"
                )
        return {key: _array(_safe_unpickle(path / name), path / name) for key, name in files.items()}
    if not path.is_file():
        raise DatasetError(f"no preference label file or folder at {path}")
    if zipfile.is_zipfile(path):  # .npz
        try:
            with np.load(path, allow_pickle=False) as data:
                values = {key: data[key] for key in data.files}
        except ValueError as error:
            raise DatasetError(f"{path}: {error} (an .npz of plain numeric arrays is expected)") from error
    else:
        values = _safe_unpickle(path)
        if not isinstance(values, dict):
            raise DatasetError(
                f"{path}: a pickle of a dict with keys {list(IMPORT_KEYS)} expected, got {type(values).__name__}"
            )
    missing = [key for key in IMPORT_KEYS if key not in values]
    if missing:
        raise DatasetError(f"{path}: missing {missing}; expected arrays {list(IMPORT_KEYS)}, found {sorted(values)}")
    return {key: _array(values[key], path) for key in IMPORT_KEYS}


class _ArrayUnpickler(pickle.Unpickler):
    """Builds only Python numbers, strings, lists, tuples, dicts and numpy arrays / scalars; refuses any other
    global a pickle names (a pickle can otherwise run arbitrary code)."""

    ALLOWED = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),  # numpy 1 names
        ("numpy.core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.multiarray", "_reconstruct"),  # numpy 2 names
        ("numpy._core.multiarray", "scalar"),
        ("numpy._core.numeric", "_frombuffer"),
        ("_codecs", "encode"),  # bytes in protocol 2 pickles
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} (only numbers, lists and numpy arrays)")
        module = module.replace("numpy.core.", "numpy._core.") if hasattr(np, "_core") else module
        return super().find_class(module, name)


def _safe_unpickle(path: Path):
    try:
        return _ArrayUnpickler(io.BytesIO(path.read_bytes())).load()
    except Exception as error:  # any malformed or refused pickle
        raise DatasetError(f"{path}: cannot read it as a pickle of plain arrays: {error}") from error


def _array(value, path: Path) -> np.ndarray:
    try:
        array = np.asarray(value)
    except ValueError as error:  # ragged lists
        raise DatasetError(f"{path}: not a rectangular array: {error}") from error
    if array.dtype.kind not in "biuf" or array.ndim not in (1, 2):
        raise DatasetError(f"{path}: expected a 1-D or 2-D numeric array, got {array.dtype} of shape {array.shape}")
    return array


def _release_labels(raw: np.ndarray, path: Path) -> np.ndarray:
    """Release labels -> (P,) float32 P(first segment preferred) (see `import_preference_labels`)."""
    raw = raw.astype(np.float64)
    if raw.ndim == 2 and raw.shape[1] == 1:
        raw = raw[:, 0]
    if raw.ndim == 1:
        tie = raw == -1
        bad = np.flatnonzero(~tie & ~((raw >= 0) & (raw <= 1)))  # NaN is bad too
        if len(bad):
            raise DatasetError(
                f"{path}: {len(bad)} label(s) outside [0, 1], e.g. pair {bad[0]}: {raw[bad[0]]} (release labels: "
                "0 = first segment preferred, 1 = second, -1 = equal; values in between: P(second))"
            )
        return np.where(tie, 0.5, 1.0 - raw).astype(np.float32)
    if raw.shape[1] != 2:
        raise DatasetError(f"{path}: labels of shape {raw.shape}; expected (P,) or (P, 2)")
    bad = np.flatnonzero(~((raw >= 0) & (raw <= 1)).all(axis=1))
    if len(bad):
        raise DatasetError(
            f"{path}: {len(bad)} label row(s) outside [0, 1], e.g. pair {bad[0]}: {raw[bad[0]].tolist()}"
        )
    bad = np.flatnonzero(np.abs(raw.sum(axis=1) - 1.0) > 1e-4)
    if len(bad):
        raise DatasetError(
            f"{path}: {len(bad)} label row(s) [p_first, p_second] not summing to 1, e.g. pair {bad[0]}: "
            f"{raw[bad[0]].tolist()} (label_dummy files are placeholders, not labels)"
        )
    return raw[:, 0].astype(np.float32)


def _locate_starts(
    flat: np.ndarray, name: str, trajectories: Sequence[Trajectory], length: int, path: Path
) -> tuple[np.ndarray, np.ndarray]:
    """Flat transition indices (P,) -> (episode ids, steps within the episode), each segment checked to fit."""
    if flat.ndim != 1:
        raise DatasetError(f"{path}: {name} must be 1-D, got shape {flat.shape}")
    if flat.dtype.kind == "f":
        if not (np.isfinite(flat).all() and (flat == np.round(flat)).all()):
            raise DatasetError(f"{path}: {name} must hold whole numbers (transition indices)")
    if flat.dtype.kind == "b":
        raise DatasetError(f"{path}: {name} must hold transition indices, not booleans")
    flat = flat.astype(np.int64)
    lengths = np.array([len(t) for t in trajectories], dtype=np.int64)  # (E,)
    ends = np.cumsum(lengths)  # (E,) one past each episode's last transition
    total = int(ends[-1]) if len(ends) else 0
    bad = np.flatnonzero((flat < 0) | (flat >= total))
    if len(bad):
        raise DatasetError(
            f"{path}: {len(bad)} index(es) in {name} out of range, e.g. pair {bad[0]}: {flat[bad[0]]}; the dataset "
            f"has {total} transitions ({len(trajectories)} episodes), indices must be in [0, {total})"
        )
    episode = np.searchsorted(ends, flat, side="right")  # (P,) index of the episode holding each start
    start = flat - (ends[episode] - lengths[episode])
    bad = np.flatnonzero(start + length > lengths[episode])
    if len(bad):
        i = bad[0]
        raise DatasetError(
            f"{path}: {len(bad)} segment(s) of {name} cross an episode's end, e.g. pair {i}: index {flat[i]} is "
            f"step {start[i]} of episode {trajectories[episode[i]].episode_id} ({lengths[episode[i]]} steps), "
            f"a segment of {length} steps would end at step {start[i] + length}"
        )
    ids = np.array([t.episode_id for t in trajectories], dtype=np.int64)
    return ids[episode], start
