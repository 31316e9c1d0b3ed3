"""Checkpoints that hold everything needed to resume a run, written atomically.

A checkpoint is a dict: models and optimisers (via the agent's `state_dict`), step counters, the RNG
states of python / numpy / torch (and CUDA), and optionally the replay buffer. Files are written to a
temporary name and renamed, so a run killed mid-write (even with SIGKILL) never leaves a broken
`latest.pt` behind.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from embodied_rl.files import atomic_write

LATEST = "latest.pt"


def capture_rng_state() -> dict[str, Any]:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Restore `capture_rng_state()`. A run resumed on another machine (`device=auto` on a Slurm node with
    fewer or no GPUs) restores the CUDA generators it has and leaves the others alone."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        for index, cuda_state in enumerate(state["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state, index)


def save_checkpoint(directory: str | Path, step: int, state: dict[str, Any], keep: int = 2) -> Path:
    """Save `state` as `<directory>/step_<step>.pt` and `latest.pt`; keep the newest `keep` step files."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    payload = {"step": step, "rng": capture_rng_state(), **state}
    for stale in [*directory.glob("step_*.pt.tmp"), *directory.glob(".step_*.pt.tmp")]:  # left by a killed save
        stale.unlink(missing_ok=True)
    path = directory / f"step_{step:09d}.pt"
    with atomic_write(path, "wb") as f:
        torch.save(payload, f)
    latest_tmp = directory / f".{LATEST}.tmp"
    if latest_tmp.exists():
        latest_tmp.unlink()
    os.link(path, latest_tmp)  # a hard link: no second copy on disk
    os.replace(latest_tmp, directory / LATEST)
    for old in sorted(directory.glob("step_*.pt"))[:-keep]:
        old.unlink()
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu", mmap: bool = False) -> dict[str, Any]:
    """Load a checkpoint file, or `latest.pt` when `path` is a run or checkpoint directory.

    `mmap=True` maps the tensors from the file instead of reading them: cheap when only the step is needed.
    """
    path = Path(path)
    if path.is_dir():
        candidates = [path / LATEST, path / "checkpoints" / LATEST]
        found = next((c for c in candidates if c.exists()), None)
        if found is None:
            raise FileNotFoundError(f"no checkpoint ({LATEST}) in {path} or {path / 'checkpoints'}")
        path = found
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=False, mmap=mmap)
    except Exception as err:  # a truncated or foreign file
        raise RuntimeError(f"could not read checkpoint {path}: {err}") from err


def checkpoint_step(path: str | Path) -> int:
    """The step of a checkpoint file (its tensors are mapped, not read); errors as `load_checkpoint`, plus a
    KeyError for a file that is no checkpoint of ours."""
    return int(load_checkpoint(path, mmap=True)["step"])


def other_checkpoints(path: str | Path) -> list[Path]:
    """The `step_*.pt` files beside `path` that are not `path` itself: what is left when it is damaged
    (`latest.pt` is a hard link to the newest step file, which is then damaged too)."""
    path = Path(path)
    others = []
    for candidate in sorted(path.parent.glob("step_*.pt")):
        try:
            if not candidate.samefile(path):
                others.append(candidate)
        except FileNotFoundError:  # `path` itself is gone, or a file was pruned meanwhile
            if candidate.exists():
                others.append(candidate)
    return others
