"""What a `device` setting names: one parser for the agents, the trainers, the scripts and the data tools."""

from __future__ import annotations

import torch


def resolve_device(device: str | torch.device = "auto", option: str = "device") -> torch.device:
    """`auto` -> CUDA when available, else CPU. Anything but auto, cpu, cuda and cuda:N, a CUDA device without a
    GPU and a cuda:N that torch does not see are a ValueError naming `option` (the setting or flag that gave it)."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        resolved = None
    if resolved is None or resolved.type not in ("cpu", "cuda"):
        raise ValueError(f"{option} must be auto, cpu, cuda or cuda:N, got {device!r}")
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{option}={device} requested but CUDA is not available (use {option}=auto or cpu)")
    if resolved.type == "cuda" and resolved.index is not None and resolved.index >= torch.cuda.device_count():
        count = torch.cuda.device_count()
        raise ValueError(f"{option}={device} requested but torch sees {count} GPU(s) (cuda:0 to cuda:{count - 1})")
    return resolved
