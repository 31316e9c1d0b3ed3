"""How many CPU threads torch uses: one parser for the `threads` setting of the scripts (`threads=auto`, `--threads 4`).

torch starts one intra-op thread per core it sees. Several torch processes on one machine (a sweep's parallel jobs,
a benchmark beside a training run) then ask for many more threads than there are cores, and each slows down far
more than its share: a SAC run fell from ~45 to ~1 update/s on 2 cores while two other torch processes ran.
`threads=auto` divides the usable cores (CPU affinity, and a cgroup CPU quota such as a container's or a Slurm job's)
among the parallel jobs, unless OMP_NUM_THREADS says otherwise.

    from embodied_rl.threads import set_threads
    print(set_threads("auto", parallel_jobs=2))        # threads: 1 (2 cores / 2 parallel jobs)
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP = Path("/sys/fs/cgroup")


def usable_cores() -> tuple[int, str]:
    """(cores this process may use, what limits them): its CPU affinity (`os.sched_getaffinity`, else
    `os.cpu_count()`), lowered to a cgroup CPU quota when there is one (rounded up: 1.5 CPUs are 2 cores)."""
    try:
        cores, why = len(os.sched_getaffinity(0)), ""
    except (AttributeError, OSError):  # macOS, Windows
        cores, why = os.cpu_count() or 1, ""
    quota = cgroup_cpu_quota()
    if quota is not None and math.ceil(quota) < cores:
        cores, why = max(1, math.ceil(quota)), f"cgroup CPU quota {quota:g}"
    return max(1, cores), why


def cgroup_cpu_quota(root: Path | None = None) -> float | None:
    """The CPUs the cgroup of this process may use (quota / period), or None when unlimited or unreadable: cgroup v2's
    `cpu.max` ("max 100000" or "150000 100000"), else cgroup v1's `cpu/cpu.cfs_quota_us` (-1: unlimited). `root`:
    the cgroup filesystem (default /sys/fs/cgroup)."""
    root = CGROUP if root is None else Path(root)
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return None if quota <= 0 or period <= 0 else quota / period
    except (OSError, ValueError):
        return None


def parse_setting(setting: int | str, option: str = "threads") -> int | str:
    """`setting` as "auto" or an int >= 1 (a string of digits counts: `--threads 4`); anything else is a ValueError
    naming `option` (the setting or flag that gave it)."""
    value = int(setting) if isinstance(setting, str) and setting.strip().isdigit() else setting
    if isinstance(value, str) and value.strip() == "auto":
        return "auto"
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        return value
    raise ValueError(f"{option} must be auto or an integer >= 1 (torch's CPU threads), got {setting!r}")


def _omp_threads() -> tuple[int | None, str]:
    """(OMP_NUM_THREADS when it is an integer >= 1, else None; a note when it is set to something else)."""
    text = os.environ.get("OMP_NUM_THREADS")
    if text is None or not text.strip():
        return None, ""
    if text.strip().isdigit() and int(text) >= 1:
        return int(text), ""
    return None, f"OMP_NUM_THREADS={text!r} ignored; "


def _check_jobs(parallel_jobs: int) -> int:
    if isinstance(parallel_jobs, bool) or not isinstance(parallel_jobs, int) or parallel_jobs < 1:
        raise ValueError(f"parallel_jobs must be an integer >= 1, got {parallel_jobs!r}")
    return parallel_jobs


def resolve_threads(setting: int | str = "auto", parallel_jobs: int = 1, option: str = "threads") -> int:
    """The thread count `setting` asks for: an int >= 1 as it is; "auto": OMP_NUM_THREADS when set (an integer >= 1),
    else the usable cores (`usable_cores`) divided among `parallel_jobs` processes, at least 1. Anything else is a
    ValueError naming `option`."""
    return _resolve(setting, parallel_jobs, option)[0]


def _resolve(setting: int | str, parallel_jobs: int, option: str) -> tuple[int, str]:
    """(threads, why), as `resolve_threads`."""
    setting, jobs = parse_setting(setting, option), _check_jobs(parallel_jobs)
    if setting != "auto":
        return setting, f"{option}={setting}"
    omp, note = _omp_threads()
    if omp is not None:
        return omp, f"OMP_NUM_THREADS={omp}"
    cores, limit = usable_cores()
    why = note + f"{cores} core{'s' * (cores != 1)}" + (f" ({limit})" if limit else "")
    if jobs > 1:
        why += f" / {jobs} parallel jobs"
    return max(1, cores // jobs), why


def set_threads(setting: int | str = "auto", parallel_jobs: int = 1, option: str = "threads") -> str:
    """Set torch's intra-op threads (`torch.set_num_threads`) to `resolve_threads(setting, parallel_jobs)`, and its
    inter-op threads to the same when torch still allows it (not once parallel work has started); returns one line
    saying what was chosen and why, e.g. "threads: 1 (2 cores / 2 parallel jobs)"."""
    import torch

    threads, why = _resolve(setting, parallel_jobs, option)
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(threads)
    except RuntimeError:  # "cannot set number of interop threads after parallel work has started or ... set"
        pass
    return f"threads: {threads} ({why})"
