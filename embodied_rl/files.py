"""Files written whole or not at all: a crash or a kill part-way through a write leaves the previous version of
the file (or none), never half of one. Checkpoints, results, metrics and datasets kept with a run use it."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


@contextmanager
def atomic_write(path: str | Path, mode: str = "w", newline: str | None = None) -> Iterator[IO[Any]]:
    """Open `<path>.tmp` for writing (`mode` "w" or "wb"); when the block ends without an error the file is
    flushed to disk and renamed over `path`, otherwise it is removed and `path` is left as it was."""
    path = Path(path)
    partial = path.with_name(path.name + ".tmp")
    try:
        with open(partial, mode, newline=newline) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())  # the bytes reach the disk before the rename makes them `path`
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def write_json(path: str | Path, data: Any) -> None:
    """`data` as indented JSON at `path`, whole or not at all (numpy and torch scalars as their Python values)."""
    with atomic_write(path) as f:
        json.dump(data, f, indent=2, default=_python_scalar)


def _python_scalar(value: Any) -> Any:
    """A numpy or torch scalar as the Python number or bool it holds; anything else is json's TypeError."""
    if getattr(value, "ndim", None) == 0 and hasattr(value, "item"):  # np.float32(1.5), np.bool_, 0-d tensors
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
