"""Preference labels for pairs of rendered frames from a vision-language model, in two queries per pair, after
RL-VLM-F (Wang et al., "RL-VLM-F: Reinforcement Learning from Vision Language Foundation Model Feedback", ICML 2024)
as used offline by Venkataraman et al., "Real-World Offline Reinforcement Learning from Vision Language Model
Feedback", 2024:

1. analysis: both frames and the task's goal text; the model describes each image and how far it is towards the
   goal, then compares them;
2. label: the analysis text alone (no images); the model answers 1 (image 1), 2 (image 2) or none.

The answer becomes P(frame 1 preferred): 1.0, 0.0, or "no preference" (dropped and counted, as are answers that
`parse_label` cannot read and refusals). The scripted teacher (B-Pref, on the frames' rewards) can stand in for
the VLM; a label-noise option flips a given fraction of the final labels; every run reports its agreement with the
noise-free scripted teacher.

`run_labelling` is resumable: each finished pair is appended to `progress.jsonl` in the output folder (keyed by the
pair's frames, after every chunk of pairs), and the LLM client caches every answer by content, so a killed run
started again continues where it stopped and pays for no query twice.

This module never imports `embodied_rl.llm` (a package of the same layer): the caller hands in the client and
its message builders as a `ChatAPI` (scripts/vlm_label.py does).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import string
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from embodied_rl.data.preferences import PreferencePairs
from embodied_rl.data.trajectory import Trajectory
from embodied_rl.envs.task_descriptions import goal_text
from embodied_rl.files import write_json
from embodied_rl.labelling.frame_pairs import frame_pair_images, sample_frame_pairs, scripted_frame_labels
from embodied_rl.labelling.preference_teacher import ScriptedTeacher
from embodied_rl.validation import check_field_types, check_ranges, settings_from_mapping

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "labelling" / "vlm.yaml"
TEACHERS = ("vlm", "scripted")
OUTCOMES = ("labelled", "no_preference", "unparseable", "refused")  # what a finished pair can end as

# ---------------------------------------------------------------- prompts

# Placeholders each prompt may use, and those it must use.
PLACEHOLDERS = {"system": {"goal"}, "analysis": {"goal"}, "label": {"goal", "analysis"}}
REQUIRED = {"system": set(), "analysis": {"goal"}, "label": {"analysis"}}


@dataclass(frozen=True)
class VLMPrompts:
    """The templates of the two queries (configs/labelling/vlm.yaml `prompts:`), checked when made: an unknown
    placeholder, or a missing required one ({goal} in `analysis`, {analysis} in `label`), is a ValueError."""

    analysis: str
    label: str
    system: str | None = None

    def __post_init__(self) -> None:
        for name in ("analysis", "label", "system"):
            text = getattr(self, name)
            if text is None and name == "system":
                continue
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"prompts.{name} must be a non-empty string, got {text!r}")
            used = _placeholders(text, name)
            unknown = sorted(used - PLACEHOLDERS[name])
            if unknown:
                known = ", ".join("{" + p + "}" for p in sorted(PLACEHOLDERS[name]))
                raise ValueError(
                    f"prompts.{name} uses unknown placeholder(s) {', '.join('{' + u + '}' for u in unknown)}; "
                    f"it may use {known} (write literal braces as {{{{ and }}}})"
                )
            missing = sorted(REQUIRED[name] - used)
            if missing:
                raise ValueError(f"prompts.{name} must contain {', '.join('{' + m + '}' for m in missing)}")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> VLMPrompts:
        values = dict(values or {})
        missing = [key for key in ("analysis", "label") if key not in values]
        if missing:
            raise ValueError(f"prompts need the keys {missing}")
        return settings_from_mapping(cls, values, "prompts")

    def analysis_text(self, goal: str) -> str:
        return self.analysis.format(goal=goal)

    def label_text(self, goal: str, analysis: str) -> str:
        return self.label.format(goal=goal, analysis=analysis)

    def system_text(self, goal: str) -> str | None:
        return None if self.system is None else self.system.format(goal=goal)


def _placeholders(template: str, name: str) -> set[str]:
    try:
        return {field_name for _, field_name, _, _ in string.Formatter().parse(template) if field_name is not None}
    except ValueError as err:  # a lone brace
        hint = "write literal braces as {{ and }}"
        raise ValueError(f"prompts.{name} is not a valid template: {err} ({hint})") from None


# ---------------------------------------------------------------- answers


_MARKDOWN = re.compile(r"[*`#\"]")
_ANSWER_MARKER = re.compile(r"\b(?:final\s+)?answer\b(?:\s+is)?\s*[:=\-]?")
_END = r"(?![.,]\d)(?=$|\s*[.,:;!)(\-])"  # the verdict is all there is, or punctuation follows it ("2 - because ...")
_LEADING = [  # a reply that starts with its verdict: "2", "Image 1.", "none - both ..."; not "image 1 is worse ..."
    (re.compile(r"^(?:image\s*)?(?:1|one)" + _END), 1.0),
    (re.compile(r"^(?:image\s*)?(?:2|two)" + _END), 0.0),
    (re.compile(r"^(?:none|no preference|neither|tie|equal|0|-1)" + _END), 0.5),
]
_MENTIONS = [  # verdicts named anywhere in a longer reply
    (re.compile(r"\bimage\s*(?:1|one)\b|\bfirst image\b"), 1.0),
    (re.compile(r"\bimage\s*(?:2|two)\b|\bsecond image\b"), 0.0),
    (re.compile(r"\bno preference\b|\bneither\b|\bno (?:visible )?difference\b|\bcan(?:not|'?t) (?:be )?tell"), 0.5),
]


def parse_label(text: str | None) -> float | None:
    """The label query's answer as P(image 1 preferred): 1.0 for image 1, 0.0 for image 2, 0.5 for no preference;
    None when unparseable.

    Read, after lower-casing and removing markdown (`*`, backticks, `#`, double quotes): the text after the last
    "answer:" / "final answer is", if there is one, else the whole reply. A reply that *starts* with its verdict
    ("2", "Image 1.", "none, both look the same") gives that verdict. Otherwise the verdicts named anywhere ("image
    2", "the first image", "no preference", "neither") decide only if they all agree. A leading verdict must stand
    alone or be followed by punctuation, so "image 1 is worse than image 2" is read as a whole (and disagrees).
    Unparseable: an empty reply, no verdict at all, or verdicts that disagree."""
    if not text:
        return None
    cleaned = " ".join(_MARKDOWN.sub("", text.lower()).split()).strip(" .!:;,()[]'")
    parts = _ANSWER_MARKER.split(cleaned)
    candidates = [parts[-1].strip(" .!:;,()[]'"), cleaned] if len(parts) > 1 else [cleaned]
    for candidate in candidates:
        for pattern, value in _LEADING:
            if pattern.match(candidate):
                return value
    found = {value for pattern, value in _MENTIONS if pattern.search(candidates[0])}
    return found.pop() if len(found) == 1 else None


# ---------------------------------------------------------------- settings


@dataclass
class LabellingSettings:
    """One labelling run (configs/labelling/vlm.yaml): how many frame pairs, which teacher, how much noise."""

    num_pairs: int = 200  # frame pairs drawn (seeded; a larger number extends a run)
    seed: int = 0  # frame pair sampling
    teacher: str = "vlm"  # vlm | scripted
    noise: float = 0.0  # fraction of the final labels flipped
    noise_seed: int = 0  # which labels are flipped
    chunk_size: int = 25  # pairs per request batch; progress is written after each
    scripted: dict = field(default_factory=dict)  # ScriptedTeacher settings of the scripted stand-in
    prompts: dict = field(default_factory=dict)  # VLMPrompts: system, analysis, label
    llm: dict = field(default_factory=dict)  # embodied_rl.llm.LLMSettings (used by the caller)

    def __post_init__(self) -> None:
        check_field_types(self, "labelling settings")
        check_ranges(
            "labelling settings",
            vars(self),
            {"num_pairs": ">= 1", "seed": ">= 0", "noise": "[0, 1]", "noise_seed": ">= 0", "chunk_size": ">= 1"},
        )
        if self.teacher not in TEACHERS:
            raise ValueError(f"teacher must be one of {', '.join(TEACHERS)}, got {self.teacher!r}")
        self.scripted_teacher()  # checked now, not after the first chunk
        if self.teacher == "vlm":
            self.vlm_prompts()

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> LabellingSettings:
        values = {key: _plain(value) for key, value in dict(values or {}).items()}
        return settings_from_mapping(cls, values, "labelling")

    def scripted_teacher(self) -> ScriptedTeacher:
        teacher = ScriptedTeacher.from_mapping(self.scripted)
        if teacher.skip is not None:
            raise ValueError("scripted.skip must stay off (null): frame pairs are labelled one for one")
        return teacher

    def vlm_prompts(self) -> VLMPrompts:
        return VLMPrompts.from_mapping(self.prompts)


def _plain(value: Any) -> Any:
    if type(value).__module__.startswith("omegaconf"):
        from omegaconf import OmegaConf

        return OmegaConf.to_container(value, resolve=True)
    return value


def load_settings(path: str | Path = DEFAULT_CONFIG, **overrides: Any) -> LabellingSettings:
    """The settings of a YAML file (default configs/labelling/vlm.yaml), top-level keys replaced by `overrides`."""
    from omegaconf import OmegaConf

    values = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    values.update({key: value for key, value in overrides.items() if value is not None})
    return LabellingSettings.from_mapping(values)


# ---------------------------------------------------------------- the VLM teacher


@dataclass
class ChatAPI:
    """What the VLM teacher uses of `embodied_rl.llm`, handed in by the caller:
    `ChatAPI(LLMClient(...), user_message, system_message)`."""

    client: Any  # .complete_many(conversations, progress=, desc=) -> list[Completion | LLMError], order kept
    user_message: Callable[..., dict]  # (text, images=[(H, W, 3) uint8, ...]) -> message
    system_message: Callable[[str], dict]  # (text) -> message


@dataclass
class Usage:
    """Queries of this run: answered (`cached`: from the client's cache, not paid), failed, and tokens."""

    queries: int = 0
    cached: int = 0
    errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    first_error: str | None = None  # the message of the first failed query

    def count(self, result: Any) -> None:
        self.queries += 1
        if isinstance(result, BaseException):
            self.errors += 1
            self.first_error = self.first_error or f"{type(result).__name__}: {result}"
            return
        self.cached += bool(getattr(result, "cached", False))
        self.prompt_tokens += int(getattr(result, "prompt_tokens", 0) or 0)
        self.completion_tokens += int(getattr(result, "completion_tokens", 0) or 0)


class VLMTeacher:
    """Two queries per frame pair (module docstring): `ask(first, second)` -> one record per pair (a dict with
    `outcome`, `label`, `analysis`, `answer`) or the LLM error that stopped it (not a label: asked again next run)."""

    def __init__(self, chat: ChatAPI, prompts: VLMPrompts, goal: str, progress: bool = True) -> None:
        self.chat, self.prompts, self.goal, self.progress = chat, prompts, goal, progress
        self.usage = Usage()

    def _conversation(self, text: str, images: Sequence[np.ndarray] = ()) -> list[dict]:
        system = self.prompts.system_text(self.goal)
        head = [] if system is None else [self.chat.system_message(system)]
        user = self.chat.user_message(text, images=list(images)) if images else self.chat.user_message(text)
        return [*head, user]

    def _complete(self, conversations: list[list[dict]], desc: str) -> list[Any]:
        results = self.chat.client.complete_many(conversations, progress=self.progress, desc=desc)
        if len(results) != len(conversations):
            raise RuntimeError(f"the LLM client answered {len(results)} of {len(conversations)} conversations")
        for result in results:
            self.usage.count(result)
        return list(results)

    def ask(self, first: np.ndarray, second: np.ndarray) -> list[dict | BaseException]:
        """`first`, `second`: (P, H, W, 3) uint8 frames, image 1 and image 2 of each pair."""
        analysis_text = self.prompts.analysis_text(self.goal)
        analyses = self._complete(
            [self._conversation(analysis_text, [a, b]) for a, b in zip(first, second)], "vlm analysis"
        )
        records: list[dict | BaseException | None] = [None] * len(analyses)
        asked = []  # pairs whose analysis goes on to the label query
        for i, result in enumerate(analyses):
            if isinstance(result, BaseException):
                records[i] = result
            elif getattr(result, "refusal", None):
                records[i] = _record("refused", analysis=result.refusal)
            elif not (result.text or "").strip():
                records[i] = _record("unparseable", analysis="")
            else:
                asked.append(i)
        conversations = [self._conversation(self.prompts.label_text(self.goal, analyses[i].text)) for i in asked]
        answers = self._complete(conversations, "vlm label") if asked else []
        for i, result in zip(asked, answers):
            analysis = analyses[i].text
            if isinstance(result, BaseException):
                records[i] = result
            elif getattr(result, "refusal", None):
                records[i] = _record("refused", analysis=analysis, answer=result.refusal)
            else:
                records[i] = _outcome(parse_label(result.text), analysis=analysis, answer=result.text)
        return records


def _record(outcome: str, label: float | None = None, **texts: str | None) -> dict:
    return {"outcome": outcome, "label": label, **texts}


def _outcome(label: float | None, **texts: str | None) -> dict:
    """The record of a parsed label: labelled, no_preference (0.5) or unparseable (None)."""
    if label is None:
        return _record("unparseable", **texts)
    if label == 0.5:
        return _record("no_preference", **texts)
    return _record("labelled", float(label), **texts)


# ---------------------------------------------------------------- noise and agreement


def flip_fraction(labels: np.ndarray, fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`labels` (P,) with round(fraction * P) of them, chosen at random (seeded), flipped y -> 1 - y; returns the
    new labels and the (P,) bool mask of the flipped ones."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"noise must be a fraction in [0, 1], got {fraction}")
    labels = np.asarray(labels, dtype=np.float32)
    flipped = np.zeros(len(labels), dtype=bool)
    flipped[np.random.default_rng(seed).permutation(len(labels))[: round(fraction * len(labels))]] = True
    return np.where(flipped, 1.0 - labels, labels).astype(np.float32), flipped


def agreement(labels: np.ndarray, reference: np.ndarray) -> dict[str, Any]:
    """How often `labels` (P,) pick the same frame as the noise-free scripted `reference` (P,), over the pairs
    where the reference is no tie (equal rewards: 0.5, excluded) and the label is no tie either."""
    labels, reference = np.asarray(labels, np.float64), np.asarray(reference, np.float64)
    compared = (reference != 0.5) & (labels != 0.5)
    same = (labels[compared] > 0.5) == (reference[compared] > 0.5)
    return {
        "agreement": float(same.mean()) if compared.any() else None,
        "compared": int(compared.sum()),
        "reference_ties": int((reference == 0.5).sum()),
    }


# ---------------------------------------------------------------- a resumable labelling run


def pair_keys(pairs: PreferencePairs) -> list[str]:
    """One key per pair naming its frames, "episode:t|episode:t": progress records are looked up by it."""
    return [
        f"{e1}:{t1}|{e2}:{t2}"
        for e1, t1, e2, t2 in zip(
            pairs.episode_1.tolist(), pairs.start_1.tolist(), pairs.episode_2.tolist(), pairs.start_2.tolist()
        )
    ]


def read_progress(path: Path) -> dict[str, dict]:
    """The finished pairs of `progress.jsonl` by key; a last line cut short by a kill is ignored."""
    if not path.exists():
        return {}
    records = {}
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and record.get("outcome") in OUTCOMES and "key" in record:
            records[record["key"]] = record
    return records


def append_progress(path: Path, records: Sequence[dict]) -> None:
    """Append finished pairs, one JSON line each, and push them to disk before returning."""
    if not records:
        return
    with path.open("a") as f:
        for record in records:
            f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def run_fingerprint(
    trajectories: Sequence[Trajectory], settings: LabellingSettings, task: str, dataset_id: str
) -> dict[str, Any]:
    """What the labels of a run depend on: the dataset, the pair sampling, the teacher and its prompts or
    settings. A folder holding labels of another fingerprint is refused (`run_labelling`)."""
    rewards = hashlib.sha256()
    for trajectory in trajectories:
        rewards.update(np.ascontiguousarray(trajectory.rewards, dtype=np.float64).tobytes())
    fingerprint = {
        "dataset": {
            "id": dataset_id,
            "episodes": len(trajectories),
            "steps": int(sum(len(t) for t in trajectories)),
            "frame_shape": list(np.shape(trajectories[0].frames)[1:]) if trajectories else [],
            "rewards_sha256": rewards.hexdigest(),
        },
        "task": task,
        "seed": settings.seed,
        "teacher": settings.teacher,
    }
    if settings.teacher == "vlm":
        fingerprint["prompts"] = asdict(settings.vlm_prompts())
        fingerprint["goal"] = goal_text(task)
        fingerprint["llm"] = {key: settings.llm.get(key) for key in ("model", "temperature", "max_tokens")}
    else:
        fingerprint["scripted"] = settings.scripted_teacher().as_dict()
    return fingerprint


def _check_folder(path: Path, fingerprint: dict[str, Any]) -> None:
    """Write the run's fingerprint, or check it against the one a previous run left in the folder."""
    if path.exists():
        stored = json.loads(path.read_text())
        if stored != fingerprint:
            differ = sorted(key for key in {*stored, *fingerprint} if stored.get(key) != fingerprint.get(key))
            raise ValueError(
                f"{path.parent} holds labels made with other settings ({', '.join(differ)} differ); "
                "label into another output folder, or delete this one to start again"
            )
    else:
        write_json(path, fingerprint)


def run_labelling(
    trajectories: Sequence[Trajectory],
    out_dir: str | Path,
    settings: LabellingSettings,
    task: str,
    dataset_id: str = "",
    chat: ChatAPI | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Label `settings.num_pairs` frame pairs of `trajectories` (which must carry frames) into `out_dir`:

    settings.json   what the labels depend on (a rerun with other settings is refused)
    pairs.npz       every sampled frame pair (PreferencePairs, segment_length 1, start = frame index t)
    progress.jsonl  one line per finished pair: outcome, label, the analysis and answer texts
    labels.npz      the labelled pairs, noise applied (source "vlm:<model>" or "scripted")
    summary.json    counts, dropped pairs, agreement with the scripted teacher, usage (the returned dict)

    A rerun continues: finished pairs are read back, only the others are asked. An exception (an LLM endpoint that
    cannot be reached) still writes labels.npz and summary.json of the pairs finished so far, then propagates."""
    start = time.time()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    goal = goal_text(task)
    if settings.teacher == "vlm" and chat is None:
        raise ValueError("teacher vlm needs a ChatAPI (an LLM client and its message builders)")
    _check_folder(out / "settings.json", run_fingerprint(trajectories, settings, task, dataset_id))
    pairs, skipped = sample_frame_pairs(trajectories, settings.num_pairs, settings.seed)
    pairs.save(out / "pairs.npz")
    keys = pair_keys(pairs)
    progress_path = out / "progress.jsonl"
    done = read_progress(progress_path)
    pending = [i for i, key in enumerate(keys) if key not in done]
    resumed = len(keys) - len(pending)
    teacher = None
    try:
        if settings.teacher == "scripted":
            labels = scripted_frame_labels(pairs, trajectories, settings.scripted_teacher(), seed=settings.seed)
            records = [{"key": keys[i], **_outcome(float(labels[i]))} for i in pending]
            append_progress(progress_path, records)
            done.update((record["key"], record) for record in records)
        else:
            teacher = VLMTeacher(chat, settings.vlm_prompts(), goal, progress)
            for begin in range(0, len(pending), settings.chunk_size):
                chunk = pending[begin : begin + settings.chunk_size]
                first, second = frame_pair_images(pairs.select(np.array(chunk)), trajectories)  # (C, H, W, 3)
                results = teacher.ask(first, second)
                records = [
                    {"key": keys[i], **result}
                    for i, result in zip(chunk, results)
                    if not isinstance(result, BaseException)
                ]
                append_progress(progress_path, records)
                done.update((record["key"], record) for record in records)
    finally:
        summary = _finish(out, pairs, keys, done, trajectories, settings, teacher, skipped, resumed)
        summary.update(task=task, goal=goal, dataset_id=dataset_id, seconds=round(time.time() - start, 2))
        write_json(out / "summary.json", summary)
    return summary


def _finish(
    out: Path,
    pairs: PreferencePairs,
    keys: list[str],
    done: dict[str, dict],
    trajectories: Sequence[Trajectory],
    settings: LabellingSettings,
    teacher: VLMTeacher | None,
    skipped: int,
    resumed: int,
) -> dict[str, Any]:
    """labels.npz of the finished, labelled pairs (noise applied) and the summary of the run so far."""
    finished = [i for i, key in enumerate(keys) if key in done]
    outcomes = {name: 0 for name in OUTCOMES}
    for i in finished:
        outcomes[done[keys[i]]["outcome"]] += 1
    kept = np.array([i for i in finished if done[keys[i]]["outcome"] == "labelled"], dtype=np.int64)
    raw = np.array([done[keys[i]]["label"] for i in kept], dtype=np.float32)
    noisy, flipped = flip_fraction(raw, settings.noise, settings.noise_seed)
    source = "scripted" if settings.teacher == "scripted" else f"vlm:{settings.llm.get('model') or 'unknown'}"
    selected = pairs.select(kept)
    labelled = PreferencePairs(
        1, selected.episode_1, selected.start_1, selected.episode_2, selected.start_2, noisy, source=source
    )
    labelled.save(out / "labels.npz")
    reference = scripted_frame_labels(selected, trajectories) if len(kept) else np.zeros(0)
    llm_usage = out / "llm_usage.json"
    return {
        "teacher": settings.teacher,
        "source": source,
        "requested_pairs": len(keys),
        "finished_pairs": len(finished),
        "pending_pairs": len(keys) - len(finished),
        "complete": len(finished) == len(keys),
        "resumed_pairs": resumed,
        "identical_frames_skipped": skipped,
        "labelled": outcomes["labelled"],
        "dropped": {name: outcomes[name] for name in OUTCOMES if name != "labelled"},
        "noise": settings.noise,
        "flipped": int(flipped.sum()),
        "image_1_preferred": float((noisy > 0.5).mean()) if len(noisy) else None,
        "agreement_with_scripted": agreement(noisy, reference),
        "agreement_before_noise": agreement(raw, reference)["agreement"],
        "usage": asdict(teacher.usage) if teacher is not None else asdict(Usage()),
        "llm_usage": json.loads(llm_usage.read_text()) if llm_usage.exists() else None,
        "frame_shape": list(np.shape(trajectories[0].frames)[1:]),
    }


def frames_required_message(dataset_id: str, metadata: Mapping[str, Any], task: str) -> str:
    """The error for a dataset without frames, with the command that builds its tier again with frames."""
    ours = metadata.get("embodied_rl", {})
    tier = ours.get("recipe", {}).get("tier") or dataset_id.rsplit("/", 1)[-1].rsplit("-v", 1)[0]
    command = f"python scripts/make_datasets.py metaworld --tasks {task.split('/')[-1]} --tiers {tier}"
    if metadata.get("total_episodes"):
        command += f" --episodes {metadata['total_episodes']}"
    time_limit = ours.get("env", {}).get("time_limit")
    if time_limit:
        command += f" --time-limit {time_limit}"
    if ours.get("seed"):
        command += f" --seed {ours['seed']}"
    if metadata.get("num_episodes_average_score") not in (None, 10):
        command += f" --reference-episodes {metadata['num_episodes_average_score']}"
    return (
        f"dataset {dataset_id!r} has no rendered frames; the VLM compares images. Build it again with frames: "
        f"{command} --frames 64 --overwrite"
    )


__all__ = [
    "ChatAPI",
    "LabellingSettings",
    "VLMPrompts",
    "VLMTeacher",
    "agreement",
    "flip_fraction",
    "load_settings",
    "parse_label",
    "run_labelling",
]
