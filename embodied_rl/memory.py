"""How much memory a new allocation may take, on the host (its free memory, within the process's cgroup limit:
a Slurm job's or container's) or on a CUDA device; train.py checks a replay buffer against it before allocating."""

from __future__ import annotations

import os

import torch


def available_memory(device: str | torch.device) -> int | None:
    """Bytes free for a new allocation on `device`: for the CPU, /proc/meminfo's MemAvailable or, if tighter,
    what the process's memory cgroup still allows (a Slurm job's or container's limit); the free memory of a
    CUDA device; None where unknown (e.g. not Linux)."""
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    if device.type != "cpu":
        return None
    host = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    host = int(line.split()[1]) * 1024  # kB
                    break
    except OSError:
        pass
    limits = [b for b in (host, cgroup_memory_headroom()) if b is not None]
    return min(limits) if limits else None


# cgroup v2 and v1 names of: the limit, the usage, the memory.stat key of reclaimable page cache in the usage.
_CGROUP_FILES = {
    "v2": ("memory.max", "memory.current", "inactive_file"),
    "v1": ("memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file"),
}


def cgroup_memory_headroom(
    proc_cgroup: str = "/proc/self/cgroup", mountinfo: str = "/proc/self/mountinfo"
) -> int | None:
    """Bytes this process's memory cgroup may still allocate: limit - (usage - inactive page cache), the
    tightest over the cgroup and its ancestors (cgroup v2 `memory.max`, or v1 `memory.limit_in_bytes`);
    None without a limit or where cgroups are not readable. Hierarchies are found through `mountinfo`."""
    try:
        with open(proc_cgroup) as f:
            entries = [line.rstrip("\n").split(":", 2) for line in f]
        mounts = _cgroup_mounts(mountinfo)
    except OSError:
        return None
    headroom = None
    for entry in entries:
        if len(entry) != 3:
            continue
        _, controllers, path = entry
        version = "v2" if controllers == "" else "v1" if "memory" in controllers.split(",") else None
        for mount_version, mount_point, mount_root in mounts:
            if mount_version != version:
                continue
            # the cgroup's path below the mount (a container sees its own cgroup mounted as the root)
            relative = path[len(mount_root) :] if path.startswith(mount_root) else path
            parts = [p for p in relative.split("/") if p]
            for depth in range(len(parts), -1, -1):  # the cgroup itself, then each ancestor up to the mount
                directory = os.path.join(mount_point, *parts[:depth])
                free = _cgroup_level_headroom(directory, *_CGROUP_FILES[version])
                if free is not None:
                    headroom = free if headroom is None else min(headroom, free)
    return headroom


def _cgroup_mounts(mountinfo: str) -> list[tuple[str, str, str]]:
    """(version, mount point, root of the hierarchy at that mount) of each cgroup v2 and v1 memory mount."""
    mounts = []
    with open(mountinfo) as f:
        for line in f:
            before, _, after = line.partition(" - ")  # optional fields end at " - ": fstype, source, options
            fields, rest = before.split(), after.split()
            if len(fields) < 5 or len(rest) < 3:
                continue
            if rest[0] == "cgroup2":
                mounts.append(("v2", fields[4], fields[3]))
            elif rest[0] == "cgroup" and "memory" in rest[2].split(","):
                mounts.append(("v1", fields[4], fields[3]))
    return mounts


def _cgroup_level_headroom(directory: str, limit_file: str, usage_file: str, inactive_key: str) -> int | None:
    """limit - (usage - inactive page cache) of one cgroup directory; None if unlimited or unreadable."""
    try:
        with open(os.path.join(directory, limit_file)) as f:
            limit = f.read().strip()
        if limit == "max" or int(limit) >= 2**60:  # v1 writes "unlimited" as a number near 2**63
            return None
        with open(os.path.join(directory, usage_file)) as f:
            usage = int(f.read().strip())
        inactive = 0
        try:
            with open(os.path.join(directory, "memory.stat")) as f:
                for line in f:
                    key, _, value = line.partition(" ")
                    if key == inactive_key:
                        inactive = int(value)
        except OSError:
            pass
        return max(int(limit) - max(usage - inactive, 0), 0)
    except (OSError, ValueError):
        return None
