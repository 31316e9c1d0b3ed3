"""Running generated reward code in confined worker processes (Text2Reward, section 3 of issue 8).

The training process never executes the generated program. `RewardSandbox` starts a fresh Python process running
`sandbox_worker.py` (`subprocess`, not fork: the trainer may hold torch/CUDA state), sends it the program once, then
one batch of snapshots and actions per vector step, and gets back one float64 per env. The worker confines itself
before the program runs (see `sandbox_worker`: network namespace, resource limits, the `nobody` user, a seccomp
filter, a checked program with minimal builtins); this side adds the wall-clock timeouts and kills the worker.

A program may return `(reward, {name: value})` instead of a float: the components of its reward (as Eureka's
programs do), kept per call in `components` for the refinement feedback.

Replies are parsed as raw bytes with a fixed layout, never unpickled, so even a worker the program took over
cannot run code in the caller. Any failure (exception, timeout, CPU or memory limit, non-finite or wrong value,
crash, a malformed reply) raises `CandidateFailed` with a sentence fit to show an LLM; the worker is then gone
and the sandbox closed. Sandboxes share nothing: one failing never touches another or the caller.

    with RewardSandbox(source, workdir=run_dir) as reward:
        rewards = reward([snapshot_0, snapshot_1], actions)  # (2,) float64
"""

from __future__ import annotations

import os
import pickle
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

WORKER = Path(__file__).with_name("sandbox_worker.py")
MAX_REASON_BYTES = 4096
MAX_COMPONENTS, MAX_COMPONENT_NAME = 16, 40  # as the worker's (sandbox_worker.MAX_COMPONENTS, ...)
WORKER_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "LC_ALL": "C.UTF-8"}


@dataclass
class SandboxLimits:
    """Limits of one worker. `cpu_seconds`: CPU time per call (and for loading the program); `memory_mb`: memory
    the program may allocate above the worker's own baseline (Python and numpy); `call_timeout_s`: wall clock per
    call; `start_timeout_s`: wall clock for starting the worker and loading the program."""

    cpu_seconds: float = 1.0
    memory_mb: int = 256
    call_timeout_s: float = 5.0
    start_timeout_s: float = 30.0


@dataclass
class SandboxStats:
    """Calls answered, their total seconds (round trips as the caller sees them), and the start's seconds."""

    calls: int = 0
    seconds: float = 0.0
    start_seconds: float = 0.0

    @property
    def seconds_per_call(self) -> float:
        return self.seconds / self.calls if self.calls else 0.0


class CandidateFailed(Exception):
    """The candidate program failed; `reason` says how, in a sentence for the LLM."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


SIGNAL_REASONS = {
    signal.SIGPROF: "went over its CPU-time limit of {cpu} s per call and was stopped",
    signal.SIGXCPU: "went over its CPU-time limit of {cpu} s per call and was stopped",
    signal.SIGXFSZ: "tried to write a file, which reward code may not do",
    signal.SIGSYS: "made a forbidden system call",
    signal.SIGSEGV: "crashed the worker (signal SIGSEGV), e.g. by unbounded recursion",
}


class RewardSandbox:
    """One generated reward program in its own confined worker process. Not thread-safe: one caller at a time."""

    def __init__(
        self,
        source: str,
        function_name: str = "compute_dense_reward",
        limits: SandboxLimits | None = None,
        workdir: Path | str | None = None,
        *,
        _python_guards: bool = True,  # tests only: False checks the OS-level confinement on its own
    ):
        self.source, self.function_name = source, function_name
        self.limits = limits if limits is not None else SandboxLimits()
        self.workdir = Path(workdir) if workdir is not None else None
        self.stats = SandboxStats()
        self.confinement = ""  # the worker's report of the confinement in force
        self.components: dict[str, np.ndarray] = {}  # the last call's reward components, name -> (N,), if any
        self._python_guards = _python_guards
        self._process: subprocess.Popen | None = None
        self._cwd: str | None = None
        self._failure: CandidateFailed | None = None
        self._closed = False

    # ---------------------------------------------------------------- lifecycle
    def __enter__(self) -> RewardSandbox:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> None:
        """Start the worker and load the program; raises CandidateFailed if the program is refused or fails."""
        if self._process is not None or self._closed:
            return self._check_usable()
        started = time.perf_counter()
        if self.workdir is not None:
            self.workdir.mkdir(parents=True, exist_ok=True)
        self._cwd = tempfile.mkdtemp(prefix="reward_sandbox_", dir=self.workdir)
        self._process = subprocess.Popen(
            [sys.executable, "-I", "-B", str(WORKER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            cwd=self._cwd,
            env=WORKER_ENV,
            close_fds=True,
            start_new_session=True,  # Ctrl-C in the caller's terminal reaches the caller only; close() ends it
            bufsize=0,
        )
        settings = {
            "source": self.source,
            "function_name": self.function_name,
            "cpu_seconds": float(self.limits.cpu_seconds),
            "memory_mb": int(self.limits.memory_mb),
            "guards": self._python_guards,
        }
        deadline = time.monotonic() + self.limits.start_timeout_s
        tag, payload = self._exchange(settings, deadline, "starting the worker and loading the reward code")
        if tag != b"K":
            self._fail(f"the worker answered the program with an unexpected message {tag!r}")
        self.confinement = payload.decode("utf-8", "replace")
        self.stats.start_seconds = time.perf_counter() - started

    def close(self) -> None:
        """End the worker and remove its directory; safe to call twice."""
        self._closed = True
        process, self._process = self._process, None
        if process is not None:
            for pipe in (process.stdin, process.stdout):
                try:
                    pipe.close()
                except OSError:
                    pass
            if process.poll() is None:
                process.kill()
            process.wait()
        if self._cwd is not None:
            shutil.rmtree(self._cwd, ignore_errors=True)
            self._cwd = None

    def __del__(self):
        if getattr(self, "_process", None) is not None:
            self.close()

    # ---------------------------------------------------------------- calls
    def __call__(self, snapshots: Sequence[Mapping[str, np.ndarray]], actions: np.ndarray) -> np.ndarray:
        """Rewards (N,) float64 of N envs' snapshots and actions, in one round trip; the program's reward
        components, if it returns them, in `self.components`."""
        if self._process is None:
            self.start() if not self._closed else self._check_usable()
        actions = np.asarray(actions, dtype=np.float64)
        if actions.ndim == 1:
            actions = actions[None]
        if len(snapshots) != len(actions):
            raise ValueError(f"{len(snapshots)} snapshots but {len(actions)} actions")
        batch = [{str(k): np.asarray(v, dtype=np.float64) for k, v in s.items()} for s in snapshots]
        started = time.perf_counter()
        deadline = time.monotonic() + self.limits.call_timeout_s
        most = 4 + MAX_COMPONENTS * (MAX_COMPONENT_NAME + 1) + 8 * len(batch) * (1 + MAX_COMPONENTS)
        tag, payload = self._exchange((batch, actions), deadline, f"{self.function_name}()", most)
        rewards, self.components = self._rewards_from(tag, payload, len(batch))
        bad = np.flatnonzero(~np.isfinite(rewards))
        if bad.size:  # the worker checks this too; a worker the program took over might not
            self._fail(f"{self.function_name}() returned {rewards[bad[0]]} for environment {bad[0]}")
        self.stats.calls += 1
        self.stats.seconds += time.perf_counter() - started
        return rewards

    def _rewards_from(self, tag: bytes, payload: bytes, n: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Rewards (n,) and components {name: (n,)} of a "R" or "C" reply, checked byte for byte."""
        names: list[str] = []
        if tag == b"C" and len(payload) >= 4:
            size = struct.unpack("<I", payload[:4])[0]
            header, payload = payload[4 : 4 + size], payload[4 + size :]
            names = header.decode("utf-8", "replace").split("\n")
            valid = [name.isidentifier() and len(name) <= MAX_COMPONENT_NAME for name in names]
            if not all(valid) or len(names) > MAX_COMPONENTS or len(set(names)) != len(names):
                self._fail(f"the worker sent malformed reward component names ({header[:80]!r})")
        elif tag != b"R":
            self._fail(f"the worker sent a malformed reply ({tag!r}, {len(payload)} bytes for {n} envs)")
        if len(payload) != 8 * n * (1 + len(names)):
            self._fail(f"the worker sent a malformed reply ({tag!r}, {len(payload)} bytes for {n} envs)")
        table = np.frombuffer(payload, dtype="<f8").astype(np.float64).reshape(n, 1 + len(names))
        return table[:, 0].copy(), {name: table[:, 1 + k].copy() for k, name in enumerate(names)}

    # ---------------------------------------------------------------- plumbing
    def _check_usable(self) -> None:
        if self._failure is not None:
            raise CandidateFailed(self._failure.reason)
        if self._closed:
            raise RuntimeError("the reward sandbox is closed")

    def _fail(self, reason: str):
        """Close the sandbox and raise CandidateFailed(reason)."""
        self.close()
        self._failure = CandidateFailed(reason)
        raise self._failure

    def _exchange(self, message, deadline: float, what: str, result_bytes: int = 0) -> tuple[bytes, bytes]:
        """Send one message, read one reply (tag, payload); an "E" reply, a timeout or the worker's end fail.
        A "R" or "C" reply must hold at most `result_bytes`, any other at most MAX_REASON_BYTES."""
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            self._write(struct.pack("<I", len(data)) + data, deadline, what)
            header = self._read(5, deadline, what)
            tag, length = header[:1], struct.unpack("<I", header[1:])[0]
            most = result_bytes if tag in (b"R", b"C") else MAX_REASON_BYTES
            if tag not in (b"R", b"C", b"E", b"K") or length > most:
                self._fail(f"the worker sent a malformed reply while running {what}")
            payload = self._read(length, deadline, what)
        except (BrokenPipeError, EOFError):
            self._fail(self._ended_reason(what))
        if tag == b"E":
            self._fail(payload.decode("utf-8", "replace"))
        return tag, payload

    def _write(self, data: bytes, deadline: float, what: str) -> None:
        fd = self._process.stdin.fileno()
        os.set_blocking(fd, False)
        view = memoryview(data)
        while view:
            self._wait(fd, deadline, what, writing=True)
            try:
                view = view[os.write(fd, view) :]
            except BlockingIOError:
                continue

    def _read(self, n: int, deadline: float, what: str) -> bytes:
        fd = self._process.stdout.fileno()
        chunks, got = [], 0
        while got < n:
            self._wait(fd, deadline, what)
            chunk = os.read(fd, n - got)
            if not chunk:
                raise EOFError
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)

    def _wait(self, fd: int, deadline: float, what: str, writing: bool = False) -> None:
        poller = select.poll()
        poller.register(fd, select.POLLOUT if writing else select.POLLIN)
        if not poller.poll(max(deadline - time.monotonic(), 0.0) * 1000):
            timeout = self.limits.start_timeout_s if what.startswith("starting") else self.limits.call_timeout_s
            self._fail(f"{what} took longer than the wall-clock limit of {timeout} s and was stopped")

    def _ended_reason(self, what: str) -> str:
        """Why the worker ended without answering (its exit status or signal)."""
        try:
            code = self._process.wait(timeout=2.0)
        except subprocess.TimeoutExpired:
            self._process.kill()
            return f"the worker stopped answering while running {what}"
        if code < 0:
            number = -code
            template = SIGNAL_REASONS.get(number)
            if template is not None:
                return f"{what} " + template.format(cpu=self.limits.cpu_seconds)
            try:
                name = signal.Signals(number).name
            except ValueError:
                name = "unknown"
            return f"the worker running {what} crashed with signal {number} ({name})"
        return f"the worker running {what} exited with status {code} (the code ended its own process)"
