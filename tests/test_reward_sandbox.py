"""text2reward.sandbox: generated reward code runs in confined workers. A good program gives the right floats in
one batch; hostile and broken programs are refused or contained with a clear reason, the caller and other sandboxes
unharmed and nothing written outside the work directory. The `_python_guards=False` cases switch off the
Python-level layer (program check, minimal builtins) to show that the OS-level layer contains escapes on its own."""

import os
import signal
import uuid
from pathlib import Path

import numpy as np
import pytest

from embodied_rl.rewards.text2reward.sandbox import CandidateFailed, RewardSandbox, SandboxLimits

pytestmark = pytest.mark.timeout(60)

LIMITS = SandboxLimits(cpu_seconds=0.3, memory_mb=64, call_timeout_s=15.0, start_timeout_s=30.0)
GOOD = """
import numpy as np
from math import sqrt

def distance(a, b):
    return float(np.linalg.norm(a - b))

def compute_dense_reward(obs, action):
    return -distance(obs.ee_position, obs.goal_position) - 0.1 * sqrt(float(np.sum(action ** 2)))
"""


def snapshots(n: int = 3) -> list[dict]:
    rng = np.random.default_rng(0)
    return [
        {"ee_position": rng.normal(size=3), "goal_position": rng.normal(size=3), "index": np.array([float(i)])}
        for i in range(n)
    ]


def expected(snaps, actions) -> np.ndarray:
    return np.array(
        [
            -np.linalg.norm(s["ee_position"] - s["goal_position"]) - 0.1 * np.sqrt(np.sum(a**2))
            for s, a in zip(snaps, actions)
        ]
    )


def tree(root: Path) -> dict:
    return {str(p): p.stat().st_size for p in root.rglob("*")}


@pytest.fixture
def places(tmp_path):
    """The run directory, a world-writable directory outside it and a /tmp name; checks nothing else appears."""
    run, outside = tmp_path / "run", tmp_path / "outside"
    run.mkdir()
    outside.mkdir()
    outside.chmod(0o777)
    tmp_name = Path("/tmp") / f"sandbox_escape_{uuid.uuid4().hex}"
    before = tree(tmp_path)
    yield {"run": run, "outside": outside, "tmp": tmp_name}
    assert tree(tmp_path) == before, "something was written"
    assert not tmp_name.exists()


def run_program(source: str, places: dict, guards: bool = True, limits: SandboxLimits = LIMITS, n: int = 3):
    """Start, call once; returns the rewards, or the CandidateFailed reason. Checks the caller's data is intact."""
    source = source.replace("OUTSIDE", str(places["outside"])).replace("TMPNAME", str(places["tmp"]))
    snaps = snapshots(n)
    copies = [{k: v.copy() for k, v in s.items()} for s in snaps]
    actions = np.full((n, 4), 0.5)
    sandbox = RewardSandbox(source, limits=limits, workdir=places["run"], _python_guards=guards)
    try:
        with sandbox:
            return sandbox(snaps, actions)
    except CandidateFailed as failure:
        assert sandbox._process is None, "the worker must be gone after a failure"
        with pytest.raises(CandidateFailed):
            sandbox(snaps, actions)  # stays failed, with the same reason
        return failure.reason
    finally:
        for snap, copy in zip(snaps, copies):
            assert all(np.array_equal(snap[k], copy[k]) for k in snap)
        assert np.all(actions == 0.5)
        assert list(places["run"].iterdir()) == [], "the worker's directory is removed on close"


def test_good_program_returns_batched_rewards(places):
    snaps, actions = snapshots(4), np.random.default_rng(1).uniform(-1, 1, (4, 4))
    with RewardSandbox(GOOD, limits=LIMITS, workdir=places["run"]) as sandbox:
        assert "seccomp" in sandbox.confinement and "limits" in sandbox.confinement
        for _ in range(3):
            rewards = sandbox(snaps, actions)
            assert rewards.dtype == np.float64 and rewards.shape == (4,)
            np.testing.assert_allclose(rewards, expected(snaps, actions))
        assert sandbox.stats.calls == 3 and sandbox.stats.seconds_per_call > 0
    with pytest.raises(RuntimeError, match="closed"):
        sandbox(snaps, actions)


def test_reward_components_come_back_per_env(places):
    source = body("return float(obs.index[0]), {'index': float(obs.index[0]), 'push': float(action[0])}")
    snaps, actions = snapshots(3), np.array([[0.1] * 4, [0.2] * 4, [0.3] * 4])
    with RewardSandbox(source, limits=LIMITS, workdir=places["run"]) as sandbox:
        np.testing.assert_array_equal(sandbox(snaps, actions), [0.0, 1.0, 2.0])
        assert list(sandbox.components) == ["index", "push"]
        np.testing.assert_array_equal(sandbox.components["index"], [0.0, 1.0, 2.0])
        np.testing.assert_array_equal(sandbox.components["push"], [0.1, 0.2, 0.3])
    with RewardSandbox(body("return 1.0"), limits=LIMITS, workdir=places["run"]) as sandbox:
        sandbox(snaps, actions)
        assert sandbox.components == {}


def test_confinement_in_force_as_root(places):
    if os.getuid() != 0:
        pytest.skip("the network namespace and the user switch need root")
    with RewardSandbox(GOOD, limits=LIMITS, workdir=places["run"]) as sandbox:
        assert "network namespace: yes" in sandbox.confinement
        assert "uid 65534" in sandbox.confinement
        if os.uname().machine == "x86_64":
            assert "seccomp: yes" in sandbox.confinement


def body(code: str) -> str:
    """A reward function whose body is `code` (one or more lines)."""
    lines = "\n".join("    " + line for line in code.strip().splitlines())
    return f"import numpy as np\n\ndef compute_dense_reward(obs, action):\n{lines}\n"


# (id, program, a phrase the reason must contain); the Python-level layer is on.
HOSTILE = [
    ("subclasses", body("return float(len(().__class__.__base__.__subclasses__()))"), "'__class__'"),
    ("obs_dict", body("return float(len(obs.__dict__))"), "'__dict__'"),
    ("array_interface", body("return float(action.__array_interface__['data'][0])"), "'__array_interface__'"),
    ("function_globals", body("return float(len(compute_dense_reward.__globals__))"), "'__globals__'"),
    ("builtins_name", body("return float(len(__builtins__))"), "'__builtins__'"),
    ("dunder_import", body("return float(len(__import__('os').listdir('/')))"), "'__import__'"),
    ("format_string", body("return float(len('{0.__class__.__mro__}'.format(obs)))"), "'format'"),
    ("f_string", body("return float(len(f'{obs.__class__}'))"), "'__class__'"),
    ("generator_frame", body("g = (x for x in [1])\nreturn float(len(g.gi_frame.f_globals))"), "'gi_frame'"),
    ("numpy_ctypes", body("return float(np.ctypeslib is None)"), "'ctypeslib'"),
    ("numpy_save", body("np.save('x.npy', action)\nreturn 0.0"), "'save'"),
    ("getattr", body("return float(len(getattr(obs, '_values')))"), "name 'getattr' is not defined"),
    ("eval", body("return float(eval('1+1'))"), "name 'eval' is not defined"),
    ("open_absolute", body("open('TMPNAME', 'w').write('x')\nreturn 0.0"), "name 'open' is not defined"),
    ("open_relative", body("open('out.txt', 'w').write('x')\nreturn 0.0"), "name 'open' is not defined"),
    ("import_os", "import os\n" + body("os.system('touch TMPNAME')\nreturn 0.0"), "imports 'os'"),
    ("import_in_function", body("import socket\nreturn 0.0"), "imports 'socket'"),
    ("from_import", "from os import system\n" + body("return 0.0"), "imports 'os'"),
    ("exit", body("exit(3)\nreturn 0.0"), "name 'exit' is not defined"),
    ("system_exit", body("raise SystemExit(3)"), "name 'SystemExit' is not defined"),
    ("class_definition", "class A:\n    pass\n" + body("return 0.0"), "__build_class__"),
    ("infinite_loop", body("while True:\n    pass"), "CPU-time limit"),
    ("loop_at_load", "while True:\n    pass\n" + body("return 0.0"), "CPU-time limit"),
    ("memory_bomb", body("return float(np.ones(10**10)[0])"), "out of memory"),
    ("growing_list", body("x = []\nwhile True:\n    x.append([0] * 100000)"), "out of memory"),
    ("deep_recursion", "def f(n):\n    return f(n + 1)\n" + body("return f(0)"), "RecursionError"),
    ("raises", body("x = 1\nraise ValueError('boom')"), "raised ValueError: boom (line 5 of the reward code"),
    ("zero_division", body("return 1 / 0"), "ZeroDivisionError"),
    ("nan", body("return float('nan')"), "returned nan for environment 0"),
    ("inf", body("return np.inf"), "returned inf for environment 0"),
    ("minus_inf_in_array", body("return np.array([-np.inf])"), "returned -inf"),
    ("nan_at_index_2", body("return float('nan') if obs.index[0] == 2 else 0.0"), "nan for environment 2"),
    ("huge_int", body("return 10**400"), "returned inf for environment 0"),
    ("string", body("return 'high'"), "type str"),
    ("wrong_size_array", body("return obs.ee_position"), "array of shape (3,)"),
    ("none", body("x = 1"), "type NoneType"),
    ("bool", body("return True"), "type bool"),
    ("mutate_array", body("obs.ee_position[0] = 5.0\nreturn 0.0"), "read-only"),
    ("mutate_in_place", body("obs.goal_position += 1.0\nreturn 0.0"), "read-only"),
    ("set_attribute", body("obs.ee_position = np.zeros(3)\nreturn 0.0"), "read-only"),
    ("mutate_action", body("action[0] = 2.0\nreturn 0.0"), "read-only"),
    ("missing_attribute", body("return float(obs.velocity[0])"), "no attribute 'velocity'"),
    ("pair_not_dict", body("return 1.0, 2.0"), "return a float, or (float, dict of components)"),
    ("triple", body("return 1.0, {}, 2.0"), "return a float, or (float, dict of components)"),
    ("component_nan", body("return 1.0, {'reach': float('nan')}"), "component 'reach' = nan"),
    ("component_string", body("return 1.0, {'reach': 'far'}"), "component 'reach' = a value of type str"),
    ("component_name", body("return 1.0, {'not a name': 1.0}"), "'not a name'; component names must be"),
    ("component_key_type", body("return 1.0, {3: 1.0}"), "name of type int"),
    ("too_many_components", body("return 1.0, {n: 1.0 for n in 'abcdefghijklmnopq'}"), "17 reward components"),
    ("components_differ", body("return 1.0, {'a': 1.0} if obs.index[0] == 0 else {'b': 1.0}"), "environments 0 and 1"),
    ("pair_reward_nan", body("return float('nan'), {'a': 1.0}"), "returned nan for environment 0"),
    ("no_function", "def reward(obs, action):\n    return 0.0\n", "defines no function compute_dense_reward"),
    ("syntax_error", "def compute_dense_reward(obs, action)\n    return 0.0\n", "does not parse"),
]


@pytest.mark.parametrize("source, phrase", [case[1:] for case in HOSTILE], ids=[case[0] for case in HOSTILE])
def test_hostile_program_is_refused_or_contained(places, source, phrase):
    reason = run_program(source, places)
    assert isinstance(reason, str), f"not refused: returned {reason}"
    assert phrase in reason


def test_printing_a_lot_is_contained(places):
    rewards = run_program(body("for i in range(20000):\n    print('x' * 1000)\nreturn 1.0"), places)
    np.testing.assert_array_equal(rewards, [1.0, 1.0, 1.0])


def test_memory_limit_is_near_memory_mb(places):
    """64 MB above the baseline: 32 MB fit, 160 MB do not."""
    assert np.all(run_program(body("return float(np.ones(4 * 2**20)[0])"), places) == 1.0)
    assert "out of memory" in run_program(body("return float(np.ones(20 * 2**20)[0])"), places)


# Programs that get full builtins and imports (Python-level layer off): the OS-level layer alone contains them.
ESCAPED = [
    ("write_outside", "open('OUTSIDE/x', 'w').write('x')\nreturn 0.0", "PermissionError"),
    ("write_tmp", "open('TMPNAME', 'w')\nreturn 0.0", "PermissionError"),
    ("write_relative", "open('out.txt', 'w').write('x')\nreturn 0.0", "PermissionError"),
    ("read_file", "return float(len(open('/etc/passwd').read()))", "PermissionError"),
    ("os_system", "import os\nreturn float(os.system('touch TMPNAME') == 0)", None),
    ("fork", "import os\nos.fork()\nreturn 0.0", "PermissionError"),
    ("import_new_module", "import socket\nreturn 0.0", "No module named 'socket'"),
    ("socket_syscall", "import ctypes\nreturn float(ctypes.CDLL(None).socket(2, 1, 0) >= 0)", None),
    ("kill_self", "import os\nos.kill(os.getpid(), 9)\nreturn 0.0", "PermissionError"),
    ("signal_parent", "import os\nos.kill(os.getppid(), 0)\nreturn 0.0", "PermissionError"),
    ("os_exit", "import os\nos._exit(3)", "exited with status 3"),
    ("sys_exit", "import sys\nsys.exit(4)", "raised SystemExit: 4"),
    ("raise_limits", "import resource\nresource.setrlimit(resource.RLIMIT_AS, (-1, -1))\nreturn 0.0", "Error"),
    ("memory_bomb", "return float(len(bytearray(10**10)))", "out of memory"),
    ("crash", "import ctypes\nctypes.memset(8, 1, 1)\nreturn 0.0", "SIGSEGV"),
    ("garbage_reply", "import os\nos.write(4, b'Z' * 64)\nreturn 0.0", "malformed reply"),
    ("huge_reply", "import os, struct\nos.write(4, b'E' + struct.pack('<I', 10**9))\nreturn 0.0", "malformed"),
    ("print_to_fd1", "import os\nfor _ in range(1000):\n    os.write(1, b'x' * 65536)\nreturn 0.0", None),
]


@pytest.mark.parametrize("code, phrase", [case[1:] for case in ESCAPED], ids=[case[0] for case in ESCAPED])
def test_os_level_confinement_contains_escaped_code(places, code, phrase):
    if os.getuid() != 0:
        pytest.skip("the OS-level layer as tested here needs root (user switch, network namespace)")
    result = run_program(body(code), places, guards=False)
    if phrase is None:  # contained without failing: the system call had no effect
        assert not isinstance(result, str), result
        np.testing.assert_array_equal(result, 0.0)
    else:
        assert isinstance(result, str), f"not contained: returned {result}"
        assert phrase in result


def test_escaped_code_runs_as_nobody(places):
    if os.getuid() != 0:
        pytest.skip("needs root")
    assert np.all(run_program(body("import os\nreturn float(os.getuid())"), places, guards=False) == 65534.0)


def test_wall_clock_limit_stops_code_that_disables_the_cpu_timer(places):
    code = "import signal\nsignal.setitimer(signal.ITIMER_PROF, 0)\nwhile True:\n    pass"
    limits = SandboxLimits(cpu_seconds=0.3, memory_mb=64, call_timeout_s=1.0, start_timeout_s=30.0)
    reason = run_program(body(code), places, guards=False, limits=limits)
    assert "wall-clock limit of 1.0 s" in reason


def test_worker_killed_from_outside_is_a_crash_with_its_signal(places):
    with RewardSandbox(GOOD, limits=LIMITS, workdir=places["run"]) as sandbox:
        sandbox(snapshots(2), np.zeros((2, 4)))
        os.kill(sandbox._process.pid, signal.SIGKILL)
        sandbox._process.wait()
        with pytest.raises(CandidateFailed, match=r"signal 9 \(SIGKILL\)"):
            sandbox(snapshots(2), np.zeros((2, 4)))


def test_one_failing_sandbox_leaves_the_other_working(places):
    snaps, actions = snapshots(2), np.zeros((2, 4))
    bad_source = body("return 1.0 if obs.index[0] < 1 else 1 / 0")
    with (
        RewardSandbox(GOOD, limits=LIMITS, workdir=places["run"]) as good,
        RewardSandbox(bad_source, limits=LIMITS, workdir=places["run"]) as bad,
    ):
        np.testing.assert_allclose(good(snaps, actions), expected(snaps, actions))
        with pytest.raises(CandidateFailed, match="ZeroDivisionError"):
            bad(snaps, actions)
        np.testing.assert_allclose(good(snaps, actions), expected(snaps, actions))
    assert list(places["run"].iterdir()) == []


def test_mismatched_batch_is_the_callers_error(places):
    with RewardSandbox(GOOD, limits=LIMITS, workdir=places["run"]) as sandbox:
        with pytest.raises(ValueError, match="3 snapshots but 2 actions"):
            sandbox(snapshots(3), np.zeros((2, 4)))
        assert sandbox(snapshots(1), np.zeros(4)).shape == (1,)
