"""Range checks of the trainers' settings, so a bad value is one clear error before anything runs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def check_ranges(config: Any, positive: Sequence[str] = (), non_negative: Sequence[str] = ()) -> None:
    """One ValueError naming every field of `config` (a trainer config dataclass) out of range, as the
    `trainer.<field>` key it comes from: `positive` fields must be > 0, `non_negative` ones >= 0."""

    def number(key: str) -> float:  # NaN for anything that is not a number, so it fails both tests
        value = getattr(config, key)
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else float("nan")

    bad = [f"trainer.{key}={getattr(config, key)} (must be > 0)" for key in positive if not number(key) > 0]
    bad += [f"trainer.{key}={getattr(config, key)} (must be >= 0)" for key in non_negative if not number(key) >= 0]
    if bad:
        raise ValueError(f"invalid trainer settings: {', '.join(bad)}")
