"""A stand-in for a vision-language model, for runs and tests where no VLM can be reached: answers to the two
queries of VLM labelling (`vlm_teacher`) WRITTEN BY THIS CODE from a dataset's true rewards, not by any model.

- analysis query (two images): each image is looked up by its bytes among the dataset's frames; the answer names
  the image whose frame has the higher true reward, says there is no visible difference when the rewards are
  equal, or says it cannot judge when an image is not a frame of the dataset (counted as `unknown`);
- label query (no images): "1", "2" or "none", read from the analysis quoted between the `---` lines.

Frame t of an episode (t >= 1) has the true reward `rewards[t - 1]` (the step that reached it, as in
`frame_pairs`). The reset frame (t = 0) has no reward and is left out of the index: an image equal to a reset frame
alone is "unknown" (frame pairs never draw it). A frame whose bytes occur more than once with different rewards is
given the mean of those rewards (`ambiguous` counts them).

`mistake`: the fraction of analysis answers whose preference is flipped, to mimic a noisy VLM. Whether a pair is
flipped is decided from a hash of the seed and the two images, not from the order requests arrive in, so the same
question always gets the same answer (as with a cached model), whatever the concurrency.

Every answer says it is the stand-in's (`MARK`), so a text written here is never mistaken for a model's."""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from embodied_rl.data.trajectory import Trajectory

MARK = "(stand-in answer written by embodied_rl's script from the dataset's true rewards, not by a model)"
_PREFERS = re.compile(r"\bimage ([12]) shows more progress\b", re.IGNORECASE)


def frame_key(frame: np.ndarray) -> str:
    """The key of a frame: a hash of its shape and bytes (uint8 (H, W, 3))."""
    frame = np.ascontiguousarray(frame, dtype=np.uint8)
    return hashlib.sha256(str(frame.shape).encode() + frame.tobytes()).hexdigest()


def frame_rewards(trajectories: Sequence[Trajectory]) -> tuple[dict[str, float], int]:
    """Frame key -> true reward for every frame t >= 1 of every trajectory (reward `rewards[t - 1]`), and the
    number of keys seen with different rewards (given their mean)."""
    seen: dict[str, list[float]] = {}
    for trajectory in trajectories:
        if trajectory.frames is None:
            raise ValueError(f"episode {trajectory.episode_id} has no frames; the stand-in looks images up by them")
        for t in range(1, len(trajectory.frames)):
            seen.setdefault(frame_key(trajectory.frames[t]), []).append(float(trajectory.rewards[t - 1]))
    ambiguous = sum(1 for rewards in seen.values() if len(set(rewards)) > 1)
    return {key: float(np.mean(rewards)) for key, rewards in seen.items()}, ambiguous


@dataclass
class StandInCounts:
    """What the stand-in answered so far."""

    analyses: int = 0  # analysis queries (two images)
    labels: int = 0  # label queries (an analysis quoted)
    unknown: int = 0  # analysis queries with an image that is not a frame of the dataset
    ties: int = 0  # analysis queries whose two frames have equal rewards
    flipped: int = 0  # analysis answers flipped by `mistake`
    other: int = 0  # requests that were neither


@dataclass
class StandInVLM:
    """`answer(request)` -> the stand-in's text; `request` has `.images` (decoded uint8 arrays) and `.text` (the last
    user message), as `embodied_rl.llm.local_server.ChatRequest` does, so `OpenAICompatibleServer(answer=...)`
    serves it."""

    trajectories: Sequence[Trajectory]
    mistake: float = 0.0
    seed: int = 0
    counts: StandInCounts = field(default_factory=StandInCounts)

    def __post_init__(self) -> None:
        if not 0.0 <= self.mistake <= 1.0:
            raise ValueError(f"mistake must be a fraction in [0, 1], got {self.mistake}")
        self.rewards, self.ambiguous = frame_rewards(self.trajectories)
        self._lock = threading.Lock()  # the server answers on several threads

    def __call__(self, request: Any) -> str:
        return self.answer(request)

    def answer(self, request: Any) -> str:
        images = request.images
        if len(images) == 2:
            return self.analysis(images[0], images[1])
        if not images and "---" in request.text:
            return self.label(request.text)
        self._count("other")
        return f"The stand-in answers only the two queries of VLM labelling (two images, or a quoted analysis). {MARK}"

    def analysis(self, first: np.ndarray, second: np.ndarray) -> str:
        """The analysis answer for image 1 = `first`, image 2 = `second`."""
        self._count("analyses")
        r1, r2 = self.rewards.get(frame_key(first)), self.rewards.get(frame_key(second))
        if r1 is None or r2 is None:
            self._count("unknown")
            which = " and ".join(name for name, r in (("image 1", r1), ("image 2", r2)) if r is None)
            return f"I cannot tell: {which} is not a frame of the dataset, so there is no reward to compare. {MARK}"
        if r1 == r2:
            self._count("ties")
            return f"There is no visible difference in progress (true rewards {r1:.4f} and {r2:.4f}). {MARK}"
        better, worse = (1, 2) if r1 > r2 else (2, 1)
        if self._flipped(first, second):
            self._count("flipped")
            better, worse = worse, better
        return (
            f"Image {better} shows more progress towards the goal than image {worse} (true rewards: image 1 "
            f"{r1:.4f}, image 2 {r2:.4f}). {MARK}"
        )

    def label(self, text: str) -> str:
        """ "1", "2" or "none", read from the analysis between the first two `---` lines of `text`."""
        self._count("labels")
        parts = text.split("---")
        analysis = parts[1] if len(parts) >= 3 else text
        found = {match.group(1) for match in _PREFERS.finditer(analysis)}
        return found.pop() if len(found) == 1 else "none"

    def _flipped(self, first: np.ndarray, second: np.ndarray) -> bool:
        """Whether this pair's answer is flipped: a uniform number from a hash of the seed and both images."""
        if self.mistake == 0.0:
            return False
        digest = hashlib.sha256(f"{self.seed}|{frame_key(first)}|{frame_key(second)}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64 < self.mistake

    def _count(self, name: str) -> None:
        with self._lock:
            setattr(self.counts, name, getattr(self.counts, name) + 1)


__all__ = ["MARK", "StandInCounts", "StandInVLM", "frame_key", "frame_rewards"]
