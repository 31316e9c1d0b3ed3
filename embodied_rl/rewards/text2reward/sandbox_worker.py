"""The worker process of `sandbox.RewardSandbox`: it confines itself, loads one generated reward program and
answers batched calls over two pipes until the parent closes them.

Run as a script (`python -I -B sandbox_worker.py`), never imported by the training process; it uses the standard
library and numpy only. The parent speaks on fd 0 and listens on fd 1; the worker moves both to fresh descriptors
and points 0, 1 and 2 at /dev/null, so the generated code's prints go nowhere.

Messages: parent -> worker: 4-byte little-endian length + pickle (the parent is trusted). Worker -> parent: one
tag byte + 4-byte length + payload, never a pickle: b"R" + float64 bytes (one per env), b"C" (a program that returns
`(reward, {name: value})`) + 4-byte length of the names + the names, UTF-8, one per line + float64 bytes of an
(N, 1 + K) array (reward, then the K components, per env), b"E" + UTF-8 reason, b"K" + UTF-8 report of the
confinement in force (after loading). The parent checks every reply.

Confinement, in order (each step is skipped, and reported, where this machine does not allow it):
1. numpy and math are imported (the only modules the code may use); nothing else is loaded later.
2. cwd is the empty directory the parent made; a network namespace of its own (no interfaces but a down
   loopback) when root; resource limits: address space (baseline + memory_mb), no file writes (RLIMIT_FSIZE 0),
   no core files, no new descriptors (RLIMIT_NOFILE), no new processes (RLIMIT_NPROC 0).
3. As root, drop to the `nobody` user and group.
4. A seccomp filter (x86_64) that answers EPERM to opening files, creating sockets, fork/clone/exec, signalling
   other processes, changing files or directories, and changing limits, ids or namespaces.
5. The program is checked (no names or attributes starting with `_`, a short denylist of escape attributes,
   imports of numpy/math only) and run with a minimal builtins dict.
Per call, an ITIMER_PROF timer of cpu_seconds ends the worker with SIGPROF if the code spins; the parent adds a
wall-clock timeout and kills the worker.
"""

import ast
import builtins
import ctypes
import math
import os
import pickle
import resource
import signal
import struct
import sys
import traceback

import numpy as np
import numpy.linalg  # noqa: F401  (loaded now: `import numpy.linalg` in the code must not read files)

CODE_FILENAME = "<reward code>"
ALLOWED_MODULES = {"numpy", "numpy.linalg", "math"}
# Attributes that lead out of plain arithmetic (files, ctypes, frames, formatting with attribute lookups).
BLOCKED_ATTRIBUTES = {
    "ctypes", "ctypeslib", "lib", "testing", "f2py", "distutils", "os", "sys", "memmap", "DataSource",
    "tofile", "fromfile", "fromregex", "save", "savez", "savez_compressed", "savetxt", "load", "loadtxt",
    "genfromtxt", "dump", "dumps", "format", "format_map", "mro", "gi_frame", "gi_code", "gi_yieldfrom",
    "ag_frame", "ag_code", "cr_frame", "cr_code", "f_back", "f_globals", "f_locals", "f_builtins", "f_code",
    "tb_frame", "tb_next", "co_code",
}  # fmt: skip
MAX_REASON = 1500
MAX_COMPONENTS = 16  # reward components a program may report per call
MAX_COMPONENT_NAME = 40


# ------------------------------------------------------------------ messages
def read_exact(fd: int, n: int) -> bytes:
    chunks, got = [], 0
    while got < n:
        chunk = os.read(fd, n - got)
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def receive(fd: int):
    (length,) = struct.unpack("<I", read_exact(fd, 4))
    return pickle.loads(read_exact(fd, length))


def send(fd: int, tag: bytes, payload: bytes) -> None:
    data = tag + struct.pack("<I", len(payload)) + payload
    while data:
        data = data[os.write(fd, data) :]


def send_error(fd: int, reason: str) -> None:
    if len(reason) > MAX_REASON:
        reason = reason[: MAX_REASON - 3] + "..."
    send(fd, b"E", reason.encode("utf-8", "replace"))


# ------------------------------------------------------------------ confinement
def new_network_namespace() -> str:
    """Move into a network namespace of its own (Python 3.11 has no os.unshare: call libc)."""
    CLONE_NEWNET = 0x40000000
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.unshare(CLONE_NEWNET) != 0:
            return f"network namespace: not available ({os.strerror(ctypes.get_errno())})"
    except (OSError, AttributeError) as err:
        return f"network namespace: not available ({err})"
    return "network namespace: yes"


def set_limits(memory_mb: int) -> str:
    """Resource limits (soft = hard, so they cannot be raised again)."""
    with open("/proc/self/statm") as f:
        baseline = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    open_fds = [int(fd) for fd in os.listdir("/proc/self/fd")]
    memory = baseline + memory_mb * 2**20
    for limit, value in [
        (resource.RLIMIT_AS, memory),
        (resource.RLIMIT_FSIZE, 0),
        (resource.RLIMIT_CORE, 0),
        (resource.RLIMIT_NOFILE, max(open_fds) + 1),
    ]:
        resource.setrlimit(limit, (value, value))
    return f"limits: address space {memory // 2**20} MB ({memory_mb} MB above the worker's own), no file writes"


def drop_privileges() -> str:
    """As root, become `nobody`; then no new processes (RLIMIT_NPROC binds non-root users only)."""
    if os.getuid() == 0:
        nobody = 65534
        os.setgroups([])
        os.setgid(nobody)
        os.setuid(nobody)
    resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))
    return f"user: uid {os.getuid()}, no new processes"


# x86_64 system call numbers denied by the seccomp filter (arch/x86/entry/syscalls/syscall_64.tbl).
DENIED_SYSCALLS = {
    "files": [2, 257, 437, 85, 76, 77, 82, 83, 84, 86, 87, 88, 90, 91, 92, 93, 94, 132, 133, 235, 258, 259, 260,
              261, 263, 264, 265, 266, 268, 280, 303, 304, 316, 452, 80, 81, 161],
    "network": [41, 42, 43, 49, 50, 53, 288],
    "processes": [56, 57, 58, 59, 322, 435, 101, 310, 311],
    "signals": [62, 200, 234, 129, 297, 424, 434, 438],
    "privileges": [105, 106, 113, 114, 116, 117, 119, 122, 123, 126, 160, 302, 272, 308],
    "kernel": [165, 166, 155, 321, 298, 250, 248, 249, 323, 425, 426, 427, 319, 175, 313, 176, 169, 246, 320,
               167, 168, 170, 171, 172, 173, 240, 29, 64, 68, 300, 253, 294, 428, 429, 430, 432, 433, 442, 447,
               163, 179, 164, 227, 159],
}  # fmt: skip


class SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte), ("k", ctypes.c_uint)]


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(SockFilter))]


def install_seccomp() -> str:
    """A classic-BPF seccomp filter: wrong architecture -> kill, x32 or denied call -> EPERM, else allow."""
    if os.uname().machine != "x86_64":
        return f"seccomp: not available (the filter knows x86_64 only, this is {os.uname().machine})"
    LD_W_ABS, JEQ, JGE, RET = 0x20, 0x15, 0x35, 0x06
    AUDIT_ARCH_X86_64, X32_BIT = 0xC000003E, 0x40000000
    ALLOW, DENY, KILL = 0x7FFF0000, 0x00050000 | 1, 0x80000000  # RET_ERRNO | EPERM, RET_KILL_PROCESS
    denied = sorted({n for numbers in DENIED_SYSCALLS.values() for n in numbers})
    program = [(LD_W_ABS, 0, 0, 4), (JEQ, 1, 0, AUDIT_ARCH_X86_64), (RET, 0, 0, KILL), (LD_W_ABS, 0, 0, 0)]
    program.append((JGE, len(denied) + 1, 0, X32_BIT))  # x32 calls -> the DENY at the end
    for i, number in enumerate(denied):
        program.append((JEQ, len(denied) - i, 0, number))  # match -> jump to DENY
    program += [(RET, 0, 0, ALLOW), (RET, 0, 0, DENY)]
    filters = (SockFilter * len(program))(*[SockFilter(*op) for op in program])
    fprog = SockFprog(len(program), filters)
    libc = ctypes.CDLL(None, use_errno=True)
    PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        return f"seccomp: not available (no_new_privs: {os.strerror(ctypes.get_errno())})"
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        return f"seccomp: not available ({os.strerror(ctypes.get_errno())})"
    return f"seccomp: yes ({len(denied)} system calls denied)"


# ------------------------------------------------------------------ the program's world
class Refused(Exception):
    """The program was refused before it ran."""


def check_program(tree: ast.AST) -> None:
    """Refuse names and attributes that lead out of arithmetic (a second line behind the static checker)."""

    def position(node):
        return getattr(node, "lineno", 0), getattr(node, "col_offset", 0), getattr(node, "end_col_offset", 0)

    for node in sorted(ast.walk(tree), key=position):  # the first offence in reading order
        line = getattr(node, "lineno", "?")
        if isinstance(node, ast.Attribute) and (node.attr.startswith("_") or node.attr in BLOCKED_ATTRIBUTES):
            raise Refused(f"line {line} reads the attribute {node.attr!r}, which reward code may not use")
        if isinstance(node, ast.Name) and node.id.startswith("__"):
            raise Refused(f"line {line} uses the name {node.id!r}, which reward code may not use")
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
            for name in names:
                if name not in ALLOWED_MODULES or getattr(node, "level", 0):
                    raise Refused(f"line {line} imports {name!r}; reward code may import numpy and math only")


def limited_import(name, globals=None, locals=None, fromlist=(), level=0):
    if level or name not in ALLOWED_MODULES:
        raise ImportError(f"import of {name!r} is not allowed; reward code may import numpy and math only")
    return sys.modules[name] if fromlist else sys.modules[name.partition(".")[0]]


def quiet_print(*args, **kwargs) -> None:
    """`print` for generated code: output is dropped."""


SAFE_BUILTINS = {
    name: getattr(builtins, name)
    for name in [
        "abs", "all", "any", "bool", "dict", "divmod", "enumerate", "filter", "float", "int", "isinstance", "len",
        "list", "map", "max", "min", "pow", "range", "reversed", "round", "set", "sorted", "sum", "tuple", "zip",
        "True", "False", "None", "ArithmeticError", "AssertionError", "AttributeError", "Exception", "IndexError",
        "KeyError", "MemoryError", "OverflowError", "RecursionError", "RuntimeError", "TypeError", "ValueError",
        "ZeroDivisionError",
    ]
}  # fmt: skip
SAFE_BUILTINS.update(__import__=limited_import, print=quiet_print)


class Snapshot:
    """Read-only attribute view of one snapshot (a stand-in for text2reward.snapshot.ReadOnlySnapshot that needs
    nothing beyond numpy): arrays are read-only, attributes cannot be set."""

    __slots__ = ("_values",)

    def __init__(self, values: dict):
        for array in values.values():
            array.setflags(write=False)
        object.__setattr__(self, "_values", values)

    def __getattr__(self, name):
        try:
            return self._values[name]
        except KeyError:
            known = ", ".join(sorted(self._values))
            raise AttributeError(f"the observation has no attribute {name!r} (it has: {known})") from None

    def __setattr__(self, name, value):
        raise AttributeError(f"the observation is read-only (cannot set {name!r})")

    def __delattr__(self, name):
        raise AttributeError(f"the observation is read-only (cannot delete {name!r})")


def describe_exception(err: BaseException, what: str, source_lines: list[str]) -> str:
    """`what` raised Type: message (line N of the reward code: `text`)."""
    if isinstance(err, MemoryError):
        head = f"{what} ran out of memory (MemoryError): it went over the sandbox's memory limit"
    else:
        message = str(err)
        head = f"{what} raised {type(err).__name__}" + (f": {message}" if message else "")
    frames = [f for f in traceback.extract_tb(err.__traceback__) if f.filename == CODE_FILENAME]
    if frames and frames[-1].lineno and 0 < frames[-1].lineno <= len(source_lines):
        line = frames[-1].lineno
        head += f" (line {line} of the reward code: `{source_lines[line - 1].strip()}`)"
    return head


def as_reward(value):
    """A float from a returned value, or None: numbers and size-1 numeric arrays count, bool and others do not."""
    if type(value) in (float, int) or isinstance(value, np.floating | np.integer):
        return float(value)
    if type(value) is np.ndarray and value.size == 1 and value.dtype.kind in "fiu":
        return float(value.reshape(()))
    return None


def describe_type(value) -> str:
    if type(value) is np.ndarray:
        return f"a numpy array of shape {value.shape} and dtype {value.dtype}"
    return f"a value of type {type(value).__name__}"


# ------------------------------------------------------------------ main loop
def load(settings: dict):
    """Compile and run the program's module body; return its reward function."""
    source, name = settings["source"], settings["function_name"]
    tree = ast.parse(source, CODE_FILENAME)
    if settings["guards"]:
        check_program(tree)
        namespace = {"__builtins__": SAFE_BUILTINS, "__name__": "reward_code", "np": np, "math": math}
    else:  # tests of the OS-level confinement alone
        namespace = {"__builtins__": builtins, "__name__": "reward_code", "np": np, "math": math}
    code = compile(tree, CODE_FILENAME, "exec")
    exec(code, namespace)
    function = namespace.get(name)
    if not callable(function):
        raise Refused(f"the reward code defines no function {name}(obs, action)")
    return function


def split_components(value, i: int, name: str):
    """(reward value, components dict or None) of what the program returned for environment i: a plain value, or a
    `(reward, {name: value})` pair; (None, reason) when a pair is malformed."""
    if type(value) is not tuple:
        return value, None
    if len(value) != 2 or type(value[1]) is not dict:
        return None, f"{name}() returned a tuple for environment {i}; return a float, or (float, dict of components)"
    reward, components = value
    if len(components) > MAX_COMPONENTS:
        return None, f"{name}() returned {len(components)} reward components; at most {MAX_COMPONENTS} are allowed"
    for key, part in components.items():
        if type(key) is not str or not key.isidentifier() or len(key) > MAX_COMPONENT_NAME:
            shown = repr(key[:MAX_COMPONENT_NAME]) if type(key) is str else f"of type {type(key).__name__}"
            return None, (
                f"{name}() returned a component name {shown}; component names must be identifiers of at most "
                f"{MAX_COMPONENT_NAME} characters"
            )
        try:
            number = as_reward(part)
        except OverflowError:
            number = math.inf
        if number is None or not math.isfinite(number):
            shown = describe_type(part) if number is None else number
            return None, f"{name}() returned component {key!r} = {shown}; it must be a finite float"
        components[key] = number
    return reward, components


def call_batch(function, name: str, snapshots: list, actions: np.ndarray, source_lines: list[str]):
    """(rewards (N,), component names, components (N, K)) of one vector step, or (None, None, reason)."""
    rewards = np.empty(len(snapshots))
    names, components = None, []
    for i, values in enumerate(snapshots):
        action = actions[i].copy()
        action.setflags(write=False)
        try:
            value = function(Snapshot(values), action)
        except BaseException as err:  # noqa: BLE001  (the program's own exceptions, SystemExit included)
            return None, None, describe_exception(err, f"{name}()", source_lines)
        value, parts = split_components(value, i, name)
        if isinstance(parts, str):
            return None, None, parts
        if i == 0:
            names = None if parts is None else list(parts)
        elif (None if parts is None else list(parts)) != names:
            return None, None, f"{name}() returned different reward components for environments 0 and {i}"
        try:
            reward = as_reward(value)
        except OverflowError:  # an int beyond float range
            reward = math.inf
        if reward is None:
            return None, None, f"{name}() returned {describe_type(value)} for environment {i}; it must return a float"
        if not math.isfinite(reward):
            return None, None, f"{name}() returned {reward} for environment {i}; a reward must be a finite float"
        rewards[i] = reward
        if parts is not None:
            components.append(list(parts.values()))
    return rewards, names, (np.asarray(components, dtype=np.float64) if names is not None else None)


def main() -> None:
    requests, replies = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    settings = receive(requests)
    cpu_seconds, name = settings["cpu_seconds"], settings["function_name"]
    source_lines = settings["source"].splitlines()
    report = [new_network_namespace(), set_limits(settings["memory_mb"]), drop_privileges(), install_seccomp()]

    def timed(fn, *args):
        signal.setitimer(signal.ITIMER_PROF, cpu_seconds)
        try:
            return fn(*args)
        finally:
            signal.setitimer(signal.ITIMER_PROF, 0)

    try:
        function = timed(load, settings)
    except Refused as err:
        return send_error(replies, f"the reward code was refused: {err}")
    except SyntaxError as err:
        return send_error(replies, f"the reward code does not parse: {err.msg} (line {err.lineno})")
    except BaseException as err:  # noqa: BLE001
        return send_error(replies, describe_exception(err, "loading the reward code", source_lines))
    send(replies, b"K", "; ".join(report).encode())
    while True:
        try:
            snapshots, actions = receive(requests)
        except EOFError:
            return
        try:
            rewards, names, parts = timed(call_batch, function, name, snapshots, actions, source_lines)
        except MemoryError:
            rewards, names, parts = None, None, f"{name}() left the worker out of memory (over the memory limit)"
        if rewards is None:
            return send_error(replies, parts)
        if names is None:
            send(replies, b"R", rewards.astype("<f8").tobytes())
        else:
            header = "\n".join(names).encode()
            table = np.concatenate([rewards[:, None], parts.reshape(len(rewards), len(names))], axis=1)
            send(replies, b"C", struct.pack("<I", len(header)) + header + table.astype("<f8").tobytes())


if __name__ == "__main__":
    main()
