"""Speed figures: env steps/s (raw vs wrapped, state vs pixels, vectorised) and agent updates/s
(eager vs compiled), on CPU and on CUDA when present. Prints one `key=value` line per figure and writes JSON.

    python scripts/benchmark.py --out benchmark.json
    python scripts/benchmark.py --only env --env-steps 5000
    python scripts/benchmark.py --only sac --updates 500
    python scripts/benchmark.py --only iql --updates 200 --repeats 2
    python scripts/benchmark.py --only sac_pixels --pixel-updates 20   # float32 vs mixed precision (bf16)
    python scripts/benchmark.py --only gw --gw-sizes 500,1000,2000      # PEARL's GW transfer: exact vs fast
    python scripts/benchmark.py --only llm --llm-requests 1000          # LLM client: concurrency and cache
    python scripts/benchmark.py --only reward_sandbox                   # SAC steps/s: env reward vs sandboxed code

Each figure is the median of --repeats timed runs after a warm-up (compilation happens in warm-up).
--devices takes auto, cpu, cuda and cuda:N (a CUDA device torch does not see is an error); the folder of --out is
created, and the file checked to be writable, before anything is measured. --threads sets torch's CPU threads
(default auto: the usable cores, or OMP_NUM_THREADS when set); another torch process running beside the benchmark
slows it far more than its share, so compare figures measured alone (or give each process its share of --threads).
The GW benchmark (docs/transfer.md) runs on numpy's BLAS: set OMP_NUM_THREADS for its threads.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import platform
import statistics
import sys
import time
from datetime import date

import numpy as np

from embodied_rl import cli

STATE_TASKS = ["metaworld/drawer-open-v3", "mujoco/Hopper-v5"]
VECTOR_ENVS = 4  # envs of the vectorised env benchmark: --env-steps are split among them


def parse_devices(text: str | None, parser: argparse.ArgumentParser) -> list[str]:
    """--devices as a list (default: cpu, and cuda when torch sees a GPU); a device `resolve_device` refuses (an
    unknown name, a CUDA device torch does not see) is a parser error."""
    import torch

    from embodied_rl.trainers.builders import ConfigError, resolve_device

    if text is None:
        return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]
    devices = [d.strip() for d in text.split(",") if d.strip()]
    if not devices:
        parser.error(f"--devices {text!r} names no device")
    try:
        return [str(resolve_device(device, option="--devices")) for device in devices]
    except ConfigError as err:
        parser.error(str(err))


def timed(fn, repeats: int) -> float:
    """Median wall-clock seconds of `fn()` over `repeats` runs."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def raw_env(task: str):
    """The unwrapped simulator as its library ships it (the baseline for wrapper overhead)."""
    suite, name = task.split("/", 1)
    if suite == "metaworld":
        from metaworld.env_dict import ALL_V3_ENVIRONMENTS

        env = ALL_V3_ENVIRONMENTS[name]()
        env._partially_observable = False
        env._freeze_rand_vec = False
        env._set_task_called = True
        return env
    import gymnasium as gym

    return gym.make(name).unwrapped


def env_steps_per_second(env, steps: int, repeats: int, vector: bool = False) -> float:
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    shape = env.action_space.shape
    actions = rng.uniform(-1, 1, size=(steps, *shape)).astype(np.float32)
    limit = getattr(env, "max_path_length", None)

    def run():
        t = 0
        for a in actions:
            _, _, terminated, truncated, _ = env.step(a)
            t += 1
            if vector:
                continue
            if np.any(terminated) or np.any(truncated) or (limit and t >= limit - 1):
                env.reset()
                t = 0

    run()  # warm-up
    n = steps * (env.num_envs if vector else 1)
    return n / timed(run, repeats)


def benchmark_envs(args) -> list[dict]:
    from embodied_rl.envs import make_env, make_vector_env

    rows = []
    for task in STATE_TASKS:
        raw = env_steps_per_second(raw_env(task), args.env_steps, args.repeats)
        wrapped = env_steps_per_second(make_env(task=task, obs_mode="state"), args.env_steps, args.repeats)
        rows.append(
            {
                "bench": "env",
                "task": task,
                "obs": "state",
                "raw_steps_per_s": raw,
                "wrapped_steps_per_s": wrapped,
                "wrapped_over_raw": wrapped / raw,
            }
        )
        for num_envs, asynchronous in [(VECTOR_ENVS, False), (VECTOR_ENVS, True)]:
            venv = make_vector_env({"task": task, "obs_mode": "state"}, num_envs=num_envs, asynchronous=asynchronous)
            sps = env_steps_per_second(venv, args.env_steps // num_envs, args.repeats, vector=True)
            venv.close()
            rows.append(
                {
                    "bench": "env",
                    "task": task,
                    "obs": "state",
                    "vector": f"{'async' if asynchronous else 'sync'}x{num_envs}",
                    "wrapped_steps_per_s": sps,
                }
            )
        pixel_steps = max(args.env_steps // 50, 20)
        for shadows in (True, False):
            env = make_env(task=task, obs_mode="pixels", image_size=64, shadows=shadows)
            pix = env_steps_per_second(env, pixel_steps, args.repeats)
            rows.append(
                {
                    "bench": "env",
                    "task": task,
                    "obs": f"pixels64{'' if shadows else '-noshadows'}",
                    "wrapped_steps_per_s": pix,
                }
            )
    return rows


def random_batch(batch_size: int, device: str, obs_dim: int = 39, action_dim: int = 4) -> dict:
    """A fixed batch shaped like Meta-World states (39-d) and actions (4-d)."""
    import torch

    g = torch.Generator().manual_seed(0)
    batch = {
        "obs": torch.randn(batch_size, obs_dim, generator=g),
        "action": torch.rand(batch_size, action_dim, generator=g) * 2 - 1,
        "reward": torch.randn(batch_size, generator=g),
        "next_obs": torch.randn(batch_size, obs_dim, generator=g),
        "terminated": torch.zeros(batch_size),
    }
    return {k: v.to(device) for k, v in batch.items()}


def benchmark_updates(
    bench: str, agents: dict, batch: dict, device: str, args, baseline: str = "plain_eager", updates: int | None = None
) -> list[dict]:
    """Updates/s of each agent on the same batch. Each agent is warmed up (compilation, CUDA-graph capture),
    then the modes' timed runs are interleaved (each repeat times every mode once) so that load drift on a
    shared machine hits them alike; `over_plain` is the ratio of medians to the `baseline` agent's."""
    import torch

    def run(agent, n):
        for _ in range(n):
            agent.update(batch)
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    updates = args.updates if updates is None else updates
    warmups = {}
    for name, agent in agents.items():
        start = time.perf_counter()
        run(agent, 5)
        warmups[name] = time.perf_counter() - start
    times: dict[str, list[float]] = {name: [] for name in agents}
    for _ in range(args.repeats):
        for name, agent in agents.items():
            start = time.perf_counter()
            run(agent, updates)
            times[name].append(time.perf_counter() - start)
    ups = {name: updates / statistics.median(t) for name, t in times.items()}
    return [
        {
            "bench": bench,
            "device": device,
            "mode": name,
            "batch": args.batch_size,
            "threads": torch.get_num_threads(),
            "updates_per_s": ups[name],
            "warmup_s": warmups[name],
            "over_plain": ups[name] / ups[baseline],
        }
        for name in agents
    ]


def compile_modes(device: str) -> list[tuple[str, dict]]:
    modes = [("eager", {}), ("compiled", {"compile": True})]
    if device.startswith("cuda"):
        modes.append(("compiled+cudagraphs", {"compile": True, "cudagraphs": True}))
    return modes


def benchmark_sac(args, device: str) -> list[dict]:
    """SAC updates/s: the plain CleanRL-style baseline (embodied_rl.bench.plain_sac) vs our SAC."""
    import gymnasium as gym
    import torch

    from embodied_rl.agents.sac import SAC
    from embodied_rl.bench.plain_sac import PlainSAC

    obs_space = gym.spaces.Box(-np.inf, np.inf, (39,), np.float32)
    act_space = gym.spaces.Box(-1, 1, (4,), np.float32)
    torch.manual_seed(0)
    agents = {"plain_eager": PlainSAC(39, 4, hidden=256, device=device)}
    for name, flags in compile_modes(device):
        agents[name] = SAC(obs_space, act_space, hidden_dims=(256, 256), device=device, **flags)
    return benchmark_updates("sac_update", agents, random_batch(args.batch_size, device), device, args)


def benchmark_sac_pixels(args, device: str) -> list[dict]:
    """Pixel SAC updates/s (64x64 images, 3 stacked RGB frames, DrQ shifts, the default 4-layer encoder):
    float32 vs `mixed_precision` (the encoder in bfloat16), eager and compiled; `over_plain` is relative to
    eager float32. Uses `--pixel-updates` updates per repeat (a pixel update costs ~50x a state one)."""
    import gymnasium as gym
    import torch

    from embodied_rl.agents.sac import SAC

    obs_space = gym.spaces.Box(0, 255, (64, 64, 9), np.uint8)
    act_space = gym.spaces.Box(-1, 1, (4,), np.float32)
    g = torch.Generator().manual_seed(0)
    batch = random_batch(args.batch_size, device)
    for key in ("obs", "next_obs"):
        batch[key] = torch.randint(0, 256, (args.batch_size, 64, 64, 9), dtype=torch.uint8, generator=g).to(device)
    agents = {}
    for name, flags in compile_modes(device):
        for precision, mixed in (("", False), ("+bf16", True)):
            torch.manual_seed(0)
            agents[name + precision] = SAC(
                obs_space, act_space, augment=True, mixed_precision=mixed, device=device, **flags
            )
    return benchmark_updates("sac_pixels_update", agents, batch, device, args, "eager", args.pixel_updates)


def benchmark_iql(args, device: str) -> list[dict]:
    """IQL updates/s: the plain CORL-style baseline (embodied_rl.bench.plain_iql) vs our IQL."""
    import gymnasium as gym
    import torch

    from embodied_rl.agents.iql import IQL
    from embodied_rl.bench.plain_iql import PlainIQL

    obs_space = gym.spaces.Box(-np.inf, np.inf, (39,), np.float32)
    act_space = gym.spaces.Box(-1, 1, (4,), np.float32)
    batch = random_batch(args.batch_size, device)
    torch.manual_seed(0)
    agents = {"plain_eager": PlainIQL(39, 4, hidden=256, device=device)}
    for name, flags in compile_modes(device):
        agents[name] = IQL(obs_space, act_space, hidden_dims=(256, 256), device=device, **flags)
        agents[name].fit_normalizer(batch["obs"])
    return benchmark_updates("iql_update", agents, batch, device, args)


def int_list(spec: str):
    """An argparse `type=` reading comma-separated ints, each in the range `spec` (cli.number's)."""
    one = cli.number(int, spec)

    def parse(text: str) -> list[int]:
        values = [one(part) for part in text.split(",") if part.strip()]
        if not values:
            raise argparse.ArgumentTypeError(f"names no value: {text!r}")
        return values

    return parse


GW_TASKS = ("metaworld/button-press-v3", "metaworld/window-open-v3")  # source, target
GW_SEGMENT_LENGTH = 50
GW_NOISE_LEVELS = (0.1, 0.3, 0.6, 1.0)  # noisy scripted episodes at each level, then as many random ones


def gw_trajectories(task: str, episodes: int, seed: int) -> list:
    """A small local dataset of `task`: 200-step episodes of the scripted expert at graded noise, and random ones."""
    from embodied_rl.data import iterate_rollouts
    from embodied_rl.envs import make_env
    from embodied_rl.pipelines.offline_datasets import make_behaviour_policy

    env = make_env(task=task, time_limit=200)
    per_level = max(1, episodes // (len(GW_NOISE_LEVELS) + 1))
    policies = [
        make_behaviour_policy("scripted", env, task, noise_std=n, seed=seed + i) for i, n in enumerate(GW_NOISE_LEVELS)
    ]
    policies.append(make_behaviour_policy("random", env, task, seed=seed))
    trajectories = []
    for i, policy in enumerate(policies):
        trajectories += iterate_rollouts(env, policy, per_level, seed=seed + 1000 * i, progress=False)
    env.close()
    return trajectories


def gw_segments(trajectories: list, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n distinct windows of GW_SEGMENT_LENGTH steps: states (n, H, S), actions (n, H, A), true returns (n,)."""
    H = GW_SEGMENT_LENGTH
    windows = [(t, s) for t, traj in enumerate(trajectories) for s in range(len(traj) - H + 1)]
    if n > len(windows):
        raise ValueError(f"{n} segments asked for, the dataset has {len(windows)} windows: raise --gw-episodes")
    chosen = [windows[w] for w in rng.choice(len(windows), n, replace=False)]
    obs = np.stack([trajectories[t].observations[s : s + H] for t, s in chosen]).astype(np.float32)
    action = np.stack([trajectories[t].actions[s : s + H] for t, s in chosen]).astype(np.float32)
    returns = np.array([trajectories[t].rewards[s : s + H].sum() for t, s in chosen])
    return obs, action, returns


def scripted_labels(returns: np.ndarray, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """1 where the first segment's true return is higher, 0 where lower, 0.5 for a tie."""
    return np.sign(returns[first] - returns[second]) * 0.5 + 0.5


def pairs_through(coupling: np.ndarray, first: np.ndarray, second: np.ndarray, count: int, rng) -> tuple:
    """`count` target pairs drawn through the coupling, as the PEARL pipeline draws them: a labelled source pair
    (i, k) uniformly, then j ~ T[i, :] and l ~ T[k, :] (pairs with j == l dropped)."""
    cumulative = np.cumsum(coupling, axis=1)  # (Ns, Nt)
    chosen = rng.integers(len(first), size=count)

    def draw(rows):  # inverse CDF of each row
        u = rng.random(len(rows)) * cumulative[rows, -1]
        return np.minimum((cumulative[rows] <= u[:, None]).sum(1), coupling.shape[1] - 1)

    j, l = draw(first[chosen]), draw(second[chosen])
    return j[j != l], l[j != l]


def release_freed_memory() -> None:
    """Make resident memory follow numpy's large arrays (glibc; elsewhere nothing): glibc raises its mmap threshold
    after a large free, so later arrays reuse heap pages that are still resident and a peak of resident memory
    misses them. Fixing the thresholds (128 KiB) maps and unmaps every large array; then give back what is free."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 128 * 1024)  # M_TRIM_THRESHOLD
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        pass


def measured(fn, *args, **kwargs):
    """(fn(*args, **kwargs), seconds, peak resident memory above the start in bytes). The peak is Linux's VmHWM,
    reset through /proc/self/clear_refs, so memory allocated by C++ (POT's network simplex) counts; elsewhere,
    tracemalloc's peak of Python and numpy allocations."""
    import tracemalloc

    def status(key: str) -> int:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key))

    release_freed_memory()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the high-water mark to the current RSS
        before, proc = status("VmRSS:"), True
    except OSError:
        tracemalloc.start()
        proc = False
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    seconds = time.perf_counter() - start
    if proc:
        peak = status("VmHWM:") - before
    else:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return result, seconds, max(peak, 0)


def benchmark_gw(args) -> list[dict]:
    """PEARL's cross-task transfer (embodied_rl.labelling.transfer) at each of --gw-sizes: n source segments in n/2
    pairs labelled from true returns, n unlabelled target segments, GW coupling by the exact solver and by
    --gw-fast-method (seconds and peak memory of `gw_coupling` alone), then 5n target pairs drawn through each coupling
    (as the pipeline draws them) labelled by `transfer_labels`, scored against the target's true returns
    (`transfer_accuracy`). With --gw-labels all, every source pair is labelled and the target pairs (5n) are drawn
    uniformly, the same ones for both couplings (`agreement`: the fraction of them labelled alike)."""
    import os

    from embodied_rl.labelling.transfer import (
        distance_matrix,
        gw_coupling,
        segment_features,
        transfer_accuracy,
        transfer_labels,
    )

    source_task, target_task = args.gw_tasks
    print(f"collecting {args.gw_episodes} episodes each of {source_task} and {target_task}", flush=True)
    data = {task: gw_trajectories(task, args.gw_episodes, seed=0) for task in (source_task, target_task)}
    rows = []
    for seed in args.gw_seeds:
        for n in args.gw_sizes:
            rng = np.random.default_rng(seed)
            s_obs, s_act, s_ret = gw_segments(data[source_task], n, rng)
            t_obs, t_act, t_ret = gw_segments(data[target_task], n, rng)
            C_s = distance_matrix(segment_features(s_obs, s_act, args.gw_features))  # (n, n)
            C_t = distance_matrix(segment_features(t_obs, t_act, args.gw_features))
            if args.gw_labels == "all":
                i, k = np.triu_indices(n, 1)
                j = rng.integers(n, size=5 * n)
                l = (j + rng.integers(1, n, size=5 * n)) % n  # l != j
            else:
                i, k = np.arange(n // 2), np.arange(n // 2, 2 * (n // 2))
            z = scripted_labels(s_ret, i, k)
            results = {}
            for method in ("exact", args.gw_fast_method):
                options = {"num_clusters": args.gw_clusters} if method == "fast" else {}
                T, seconds, peak = measured(gw_coupling, C_s, C_t, method=method, **options)
                if args.gw_labels == "pairs":
                    j, l = pairs_through(T, i, k, 5 * n, np.random.default_rng(seed + 1))
                labels, _ = transfer_labels(T, (i, k), z, (j, l))
                results[method] = labels
                row = {
                    "bench": "gw",
                    "seed": seed,
                    "segments": n,
                    "method": method,
                    "seconds": seconds,
                    "peak_mb": peak / 2**20,
                    "accuracy": transfer_accuracy(labels, scripted_labels(t_ret, j, l)),
                    "labelled": float(np.mean(np.isfinite(labels))),
                    "threads": os.environ.get("OMP_NUM_THREADS", "unset"),
                }
                if method != "exact":
                    exact = next(r for r in reversed(rows) if r["method"] == "exact")
                    row["speedup"] = exact["seconds"] / seconds
                    row["accuracy_minus_exact"] = row["accuracy"] - exact["accuracy"]
                    if args.gw_labels == "all":
                        row["agreement"] = float(np.mean(np.sign(labels - 0.5) == np.sign(results["exact"] - 0.5)))
                rows.append(row)
                print(f"  [gw] seed {seed}, {n} segments, {method}: {seconds:.2f}s", file=sys.stderr, flush=True)
    return rows


def benchmark_llm(args) -> list[dict]:
    """embodied_rl.llm (docs/llm.md) against a local OpenAI-compatible server in a process of its own that answers
    after --llm-delay-ms: --llm-requests requests one at a time, as many others at --llm-concurrency, then those
    again by a new client on the same cache (`sent`: HTTP requests the client sent; a rerun must send none)."""
    import subprocess
    import tempfile

    from embodied_rl.llm import LLMClient, LLMError, LLMSettings, user_message

    command = [sys.executable, "-m", "embodied_rl.llm.local_server", "--delay-s", str(args.llm_delay_ms / 1000)]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    rows = []
    try:
        url = server.stdout.readline().strip()
        with tempfile.TemporaryDirectory() as cache:
            for mode, concurrency, batch in [
                ("sequential", 1, "first"),
                ("concurrent", args.llm_concurrency, "second"),
                ("rerun", args.llm_concurrency, "second"),
            ]:
                settings = LLMSettings(model="bench", base_url=url, cache_dir=cache, concurrency=concurrency)
                client = LLMClient(settings)
                conversations = [
                    [user_message(f"{batch} batch, pair {i}: which segment?")] for i in range(args.llm_requests)
                ]
                start = time.perf_counter()
                answers = client.complete_many(conversations, progress=False)
                rows.append(
                    {
                        "bench": "llm",
                        "mode": mode,
                        "concurrency": concurrency,
                        "requests": args.llm_requests,
                        "seconds": time.perf_counter() - start,
                        "sent": client.usage.attempts,
                        "cache_hits": client.usage.cache_hits,
                        "failures": sum(isinstance(answer, LLMError) for answer in answers),
                    }
                )
                print(f"  [llm] {mode}: {rows[-1]['seconds']:.2f}s", file=sys.stderr, flush=True)
    finally:
        server.terminate()
        server.wait()
    rows[1]["sequential_over_concurrent"] = rows[0]["seconds"] / rows[1]["seconds"]
    return rows


SANDBOX_TASK = "metaworld/drawer-open-v3"
SANDBOX_REWARD = """
import numpy as np

def compute_dense_reward(obs, action):
    reach = np.linalg.norm(obs.ee_position - obs.object_position)
    to_goal = np.linalg.norm(obs.object_position - obs.goal_position)
    return float(-reach - to_goal - 0.01 * np.sum(action ** 2))
"""


def metaworld_snapshots(obs: np.ndarray) -> list[dict]:
    """Plain snapshots of a batch of Meta-World observations, named as the text2reward abstraction names them
    (hand, gripper, first object, goal; the abstraction's own snapshots are read from the simulator)."""
    obs = obs.astype(np.float64)
    return [
        {"ee_position": o[0:3], "gripper_openness": o[3], "object_position": o[4:7], "goal_position": o[36:39]}
        for o in obs
    ]


def benchmark_reward_sandbox(args, device: str) -> list[dict]:
    """SAC training env steps/s on VECTOR_ENVS Meta-World envs (act, step, store, one update per env step) with the
    env's own reward vs a generated reward in a `RewardSandbox` (one worker round trip per vector step); the same
    loop without updates gives the worst-case ratio. Modes are interleaved per repeat, as in `benchmark_updates`."""
    import tempfile

    from embodied_rl.agents.sac import SAC
    from embodied_rl.data.replay import ReplayBuffer
    from embodied_rl.envs import make_vector_env
    from embodied_rl.rewards.text2reward.sandbox import RewardSandbox

    steps = args.sandbox_steps
    envs = make_vector_env({"task": SANDBOX_TASK, "obs_mode": "state"}, num_envs=VECTOR_ENVS, seed=0)
    agent = SAC(envs.single_observation_space, envs.single_action_space, device=device)
    obs_shape = envs.single_observation_space.shape
    capacity = (steps * (2 * args.repeats + 2) + 64) * VECTOR_ENVS
    buffer = ReplayBuffer(capacity, obs_shape, envs.single_action_space.shape[0], device=device)
    obs, _ = envs.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(64):  # a first batch of random transitions
        action = rng.uniform(-1, 1, (VECTOR_ENVS, 4)).astype(np.float32)
        next_obs, reward, terminated, truncated, _ = envs.step(action)
        buffer.add(obs, action, reward, next_obs, terminated, truncated=truncated)
        obs = next_obs
    state = {"obs": obs}

    def run(sandbox, updates: bool) -> None:
        obs = state["obs"]
        for _ in range(steps):
            action = agent.act(obs)
            next_obs, reward, terminated, truncated, _ = envs.step(action)
            if sandbox is not None:
                reward = sandbox(metaworld_snapshots(next_obs), action)
            buffer.add(obs, action, reward, next_obs, terminated, truncated=truncated)
            obs = next_obs
            for _ in range(VECTOR_ENVS if updates else 0):
                agent.update(buffer.sample(args.batch_size))
        state["obs"] = obs

    rows = []
    with tempfile.TemporaryDirectory() as workdir, RewardSandbox(SANDBOX_REWARD, workdir=workdir) as sandbox:
        for updates in (True, False):
            modes = {"env_reward": None, "sandboxed_reward": sandbox}
            for mode in modes.values():
                run(mode, updates)  # warm-up
            times: dict[str, list[float]] = {name: [] for name in modes}
            calls, seconds = sandbox.stats.calls, sandbox.stats.seconds
            for _ in range(args.repeats):
                for name, mode in modes.items():
                    start = time.perf_counter()
                    run(mode, updates)
                    times[name].append(time.perf_counter() - start)
            sps = {name: steps * VECTOR_ENVS / statistics.median(t) for name, t in times.items()}
            rows.append(
                {
                    "bench": "reward_sandbox",
                    "device": device,
                    "loop": "sac_training" if updates else "env_only",
                    "envs": VECTOR_ENVS,
                    "env_reward_steps_per_s": sps["env_reward"],
                    "sandboxed_steps_per_s": sps["sandboxed_reward"],
                    "sandboxed_over_env": sps["sandboxed_reward"] / sps["env_reward"],
                    "round_trip_us": (sandbox.stats.seconds - seconds) / (sandbox.stats.calls - calls) * 1e6,
                }
            )
            print(f"  [reward_sandbox] {rows[-1]['loop']}: ratio {rows[-1]['sandboxed_over_env']:.3f}", file=sys.stderr)
    envs.close()
    return rows


REPO_TASK = "dmc/walker-walk"  # the RePo run's env (configs/experiment/repo.yaml): 6-d actions
REPO_ACTION_DIM = 6
REPO_ACTION_REPEAT = 2
REPO_EPISODE = 500  # agent steps of a walker episode at action repeat 2 (1000 control steps)
REPO_OBJECTIVES = {  # --repo-objectives: RePoConfig settings of each
    "repo": {"objective": "repo"},
    # the authors' RePo update always trains the image decoder on detached features (for pictures): the same work
    "repo_decoder": {"objective": "repo", "train_decoder": True},
    "dreamer": {"objective": "dreamer"},
}


def batch_shapes(text: str) -> list[tuple[int, int]]:
    """An argparse `type=` reading comma-separated BxL batch shapes (B windows of L steps; B >= 1, L >= 2)."""
    shapes = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            b, length = (int(x) for x in part.lower().split("x"))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{part!r} is not BxL (e.g. 50x50)") from None
        if b < 1 or length < 2:
            raise argparse.ArgumentTypeError(f"{part!r}: B must be >= 1 and L >= 2")
        shapes.append((b, length))
    if not shapes:
        raise argparse.ArgumentTypeError(f"names no batch: {text!r}")
    return shapes


def name_list(choices: tuple[str, ...]):
    """An argparse `type=` reading comma-separated names, each one of `choices`."""

    def parse(text: str) -> list[str]:
        names = [n.strip() for n in text.split(",") if n.strip()]
        unknown = [n for n in names if n not in choices]
        if unknown or not names:
            raise argparse.ArgumentTypeError(f"{text!r}: each must be one of {', '.join(choices)}")
        return names

    return parse


def repo_setting(text: str) -> tuple[str, object]:
    """--repo-set KEY=VALUE: one RePoConfig field (VALUE read as YAML: 32, 1e-4, true, null)."""
    import yaml

    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    return key.strip(), yaml.safe_load(value)


def repo_settings(args, **overrides):
    """RePoConfig at the paper's sizes (configs/agent/repo.yaml), then --repo-set, then `overrides`."""
    from embodied_rl.agents.repo import RePoConfig

    return RePoConfig.from_mapping({**dict(args.repo_set or []), **overrides})


def repo_modes(args, device: str) -> list[tuple[str, dict]]:
    """eager, bf16 (`mixed_precision`), and compiled (`compile`) on CUDA or with --repo-compile (minutes on CPU)."""
    modes = [("eager", {}), ("bf16", {"mixed_precision": True})]
    if device.startswith("cuda") or args.repo_compile:
        modes.append(("compiled", {"compile": True}))
    return modes


def repo_replay(device: str, seq_len: int, episodes: int = 4, seed: int = 0):
    """A `SequenceReplay` on `device` holding `episodes` walker-length episodes of random 64x64 frames, actions in
    [-1, 1] and rewards (what a training run samples from; the numbers do not change the update's cost)."""
    import torch

    from embodied_rl.data.sequences import SequenceReplay
    from embodied_rl.data.trajectory import Trajectory

    rng = np.random.default_rng(seed)
    steps = max(REPO_EPISODE, seq_len)
    replay = SequenceReplay(
        episodes * (steps + 1), (64, 64, 3), REPO_ACTION_DIM, seq_len, device=device, obs_dtype=torch.uint8
    )
    for episode in range(episodes):
        replay.add_trajectory(
            Trajectory(
                observations=rng.integers(0, 256, (steps + 1, 64, 64, 3), dtype=np.uint8),
                actions=rng.uniform(-1, 1, (steps, REPO_ACTION_DIM)).astype(np.float32),
                rewards=rng.uniform(0, 1, steps).astype(np.float32),
                terminations=np.zeros(steps, bool),
                truncations=np.arange(steps) == steps - 1,
                success=np.zeros(steps, bool),
                episode_id=episode,
            )
        )
    return replay


def count_host_syncs(fn) -> int:
    """Synchronising CUDA calls made by `fn()` (torch.cuda.set_sync_debug_mode("warn") warnings)."""
    import warnings

    import torch

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
        torch.cuda.synchronize()
    return sum("synchroniz" in str(w.message).lower() for w in caught)


def benchmark_repo(args, device: str) -> list[dict]:
    """RePo.update (world model + log beta, actor, value: one training iteration) at the paper's sizes, each
    update on a fresh sample of B windows of L steps from a SequenceReplay on `device` (sampling included, as in
    training), for each --repo-batches shape, --repo-objectives and mode (`repo_modes`). Agents are warmed up
    (1 update; compiled: 2, their time is `compile_s`), then the modes' timed runs are interleaved per repeat
    (--repeats runs of --repo-updates updates each); medians. On CUDA, `host_syncs` counts the synchronising
    calls of one more sample + update under torch.cuda.set_sync_debug_mode("warn") (0: none)."""
    import torch

    from embodied_rl.agents.repo import RePo

    cuda = device.startswith("cuda")
    shapes = args.repo_batches or ([(50, 50)] if cuda else [(16, 32), (50, 50)])
    generator = torch.Generator().manual_seed(0)
    rows = []
    for batch, seq_len in shapes:
        replay = repo_replay(device, seq_len)

        def run(agent, n: int, sync: bool = True, replay=replay, batch=batch) -> None:
            for _ in range(n):
                agent.update(replay.sample(batch, generator))  # as training: a fresh sample per update
            if cuda and sync:
                torch.cuda.synchronize(device)

        for objective in args.repo_objectives:
            agents, warmups = {}, {}
            for mode, flags in repo_modes(args, device):
                torch.manual_seed(0)
                settings = repo_settings(args, **REPO_OBJECTIVES[objective], **flags)
                agents[mode] = RePo((64, 64, 3), REPO_ACTION_DIM, settings, device)
                start = time.perf_counter()
                run(agents[mode], 2 if flags.get("compile") else 1)
                warmups[mode] = time.perf_counter() - start
                print(f"  [repo] {batch}x{seq_len} {objective} {mode}: warm-up {warmups[mode]:.1f}s", file=sys.stderr)
            times: dict[str, list[float]] = {mode: [] for mode in agents}
            for _ in range(args.repeats):
                for mode, agent in agents.items():
                    start = time.perf_counter()
                    run(agent, args.repo_updates)
                    times[mode].append((time.perf_counter() - start) / args.repo_updates)
            for mode, agent in agents.items():
                seconds = statistics.median(times[mode])
                row = {
                    "bench": "repo_update",
                    "device": device,
                    "objective": objective,
                    "mode": mode,
                    "batch": f"{batch}x{seq_len}",
                    "threads": torch.get_num_threads(),
                    "updates_per_s": 1.0 / seconds,
                    "s_per_update": seconds,
                    "over_eager": statistics.median(times["eager"]) / seconds,
                    "warmup_s": warmups[mode],
                    "repeats": args.repeats,
                }
                if mode == "compiled":
                    row["compile_s"] = max(warmups[mode] - 2 * seconds, 0.0)
                if cuda:
                    row["host_syncs"] = count_host_syncs(lambda agent=agent: run(agent, 1, sync=False))
                rows.append(row)
                print(f"  [repo] {batch}x{seq_len} {objective} {mode}: {seconds:.3f} s/update", file=sys.stderr)
            del agents
    return rows


def benchmark_repo_env(args, devices: list[str]) -> list[dict]:
    """Steps/s of the RePo run's env (dmc/walker-walk, 64x64 pixels, action repeat 2, `train` distractors; shadows
    on and off): --repo-env-steps agent steps with random actions, then with the actions of a RePo agent at the
    paper's sizes on each device (`act` included; `act_ms`: its share per step). env_steps_per_s counts the
    simulator's steps (agent steps x action repeat)."""
    import torch

    from embodied_rl.agents.repo import RePo
    from embodied_rl.envs import make_env

    steps = args.repo_env_steps
    rows = []
    for shadows in (True, False):
        env = make_env(
            task=REPO_TASK,
            obs_mode="pixels",
            image_size=64,
            action_repeat=REPO_ACTION_REPEAT,
            distractors="train",
            shadows=shadows,
            seed=0,
        )
        env.action_space.seed(0)
        policies: dict[str, tuple[str, object]] = {"random": ("cpu", None)}
        for device in devices:
            torch.manual_seed(0)
            policies[f"repo_act({device})"] = (
                device,
                RePo(env.observation_space, env.action_space, repo_settings(args), device),
            )
        for policy, (device, agent) in policies.items():
            obs, _ = env.reset(seed=0)
            if agent is not None:
                agent.reset(np.ones(1, bool))
                agent.act(obs)  # warm-up
            act_seconds = 0.0
            start = time.perf_counter()
            for _ in range(steps):
                if agent is None:
                    action = env.action_space.sample()
                else:
                    t = time.perf_counter()
                    action = agent.act(obs)
                    act_seconds += time.perf_counter() - t
                obs, _, terminated, truncated, _ = env.step(action)
                if terminated or truncated:
                    obs, _ = env.reset()
                    if agent is not None:
                        agent.reset(np.ones(1, bool))
            seconds = time.perf_counter() - start
            rows.append(
                {
                    "bench": "repo_env",
                    "task": REPO_TASK,
                    "obs": f"pixels64-train-distractors{'' if shadows else '-noshadows'}",
                    "policy": policy,
                    "device": device,
                    "agent_steps_per_s": steps / seconds,
                    "env_steps_per_s": steps * REPO_ACTION_REPEAT / seconds,
                    "act_ms": act_seconds / steps * 1e3,
                }
            )
            print(f"  [repo_env] shadows={shadows} {policy}: {steps / seconds:.1f} agent steps/s", file=sys.stderr)
        env.close()
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--only", choices=["env", "sac", "sac_pixels", "iql", "gw", "llm", "reward_sandbox", "repo"], default=None
    )
    parser.add_argument(
        "--env-steps", type=cli.number(int, f">= {VECTOR_ENVS}", f"split among {VECTOR_ENVS} envs"), default=3000
    )
    parser.add_argument("--updates", type=cli.number(int, ">= 1"), default=200)
    parser.add_argument(
        "--pixel-updates", type=cli.number(int, ">= 1"), default=10, help="updates per repeat of the pixel benchmark"
    )
    parser.add_argument("--batch-size", type=cli.number(int, ">= 1"), default=256)
    parser.add_argument("--repeats", type=cli.number(int, ">= 1"), default=3)
    parser.add_argument(
        "--devices", default=None, help="comma-separated auto, cpu, cuda, cuda:N (default: cpu, and cuda if present)"
    )
    parser.add_argument("--out", default="benchmark.json")
    gw = parser.add_argument_group("gw: PEARL's Gromov-Wasserstein transfer, exact vs a faster path (docs/transfer.md)")
    gw.add_argument(
        "--gw-sizes", type=int_list(">= 4"), default=[500, 1000, 2000], help="segments per task, comma-separated"
    )
    gw.add_argument("--gw-fast-method", choices=["fast", "entropic"], default="fast", help="compared with exact")
    gw.add_argument(
        "--gw-clusters", type=cli.number(int, ">= 2"), default=None, help="num_clusters of the fast path (default: n/5)"
    )
    gw.add_argument("--gw-seeds", type=int_list(">= 0"), default=[0], help="segment samples, comma-separated")
    gw.add_argument("--gw-tasks", nargs=2, default=list(GW_TASKS), metavar=("SOURCE", "TARGET"))
    gw.add_argument("--gw-episodes", type=cli.number(int, ">= 5"), default=40, help="episodes collected per task")
    gw.add_argument("--gw-features", choices=["states", "state_actions"], default="states")
    gw.add_argument(
        "--gw-labels",
        choices=["pairs", "all"],
        default="pairs",
        help="pairs: n/2 labelled source pairs, target pairs drawn through the coupling (the pipeline's way); "
        "all: every source pair labelled, the same uniform target pairs for both couplings",
    )
    llm = parser.add_argument_group("llm: the LLM client against a local server with a fixed delay (docs/llm.md)")
    llm.add_argument("--llm-requests", type=cli.number(int, ">= 1"), default=1000, help="requests per batch")
    llm.add_argument("--llm-delay-ms", type=cli.number(float, ">= 0"), default=20.0, help="the server's answer delay")
    llm.add_argument("--llm-concurrency", type=cli.number(int, ">= 1"), default=16)
    sandbox = parser.add_argument_group("reward_sandbox: SAC steps/s, env reward vs sandboxed generated reward")
    sandbox.add_argument("--sandbox-steps", type=cli.number(int, ">= 1"), default=100, help="vector steps per repeat")
    repo = parser.add_argument_group(
        "repo: RePo's update (world model + actor + value) at the paper's sizes and its env (docs/speed.md)"
    )
    repo.add_argument(
        "--repo-batches",
        type=batch_shapes,
        default=None,
        help="BxL windows per update, comma-separated (default: 16x32,50x50 on CPU, 50x50 on CUDA)",
    )
    repo.add_argument(
        "--repo-objectives",
        type=name_list(tuple(REPO_OBJECTIVES)),
        default=list(REPO_OBJECTIVES),
        help="comma-separated, of repo, repo_decoder (RePo with its image decoder on detached features, as the "
        "authors' code always trains it) and dreamer (default: all three)",
    )
    repo.add_argument("--repo-updates", type=cli.number(int, ">= 1"), default=1, help="updates per timed repeat")
    repo.add_argument(
        "--repo-compile", action="store_true", help="the compiled mode on CPU too (compiling takes minutes there)"
    )
    repo.add_argument(
        "--repo-env-steps", type=cli.number(int, ">= 0"), default=100, help="agent steps per env run (0: no env rows)"
    )
    repo.add_argument(
        "--repo-set",
        type=repo_setting,
        action="append",
        metavar="KEY=VALUE",
        help="a RePoConfig field over the paper's sizes, e.g. --repo-set cnn_depth=4 (repeatable; for tests)",
    )
    cli.add_threads_option(parser)
    args = parser.parse_args(argv)

    import torch

    from embodied_rl.threads import set_threads

    print(set_threads(args.threads, option="--threads"))  # before anything is timed
    devices = parse_devices(args.devices, parser)
    try:
        cli.writable(args.out)
    except cli.NotWritable as err:
        parser.error(f"--out {args.out}: cannot write there: {err}")
    if args.only == "repo":
        try:
            repo_settings(args)  # a bad --repo-set fails before anything is measured
        except (TypeError, ValueError) as err:
            parser.error(f"--repo-set: {err}")
    rows: list[dict] = []
    if args.only in (None, "env"):
        rows += benchmark_envs(args)
    if args.only in (None, "sac"):
        for device in devices:
            rows += benchmark_sac(args, device)
    if args.only in (None, "sac_pixels"):
        for device in devices:
            rows += benchmark_sac_pixels(args, device)
    if args.only in (None, "iql"):
        for device in devices:
            rows += benchmark_iql(args, device)
    if args.only == "gw":  # minutes at 2000 segments: only when asked for
        rows += benchmark_gw(args)
    if args.only == "llm":  # half a minute, most of it waiting on the server: only when asked for
        rows += benchmark_llm(args)
    if args.only == "reward_sandbox":  # a minute of SAC training per device: only when asked for
        for device in devices:
            rows += benchmark_reward_sandbox(args, device)
    if args.only == "repo":  # a few minutes on CPU (one 50x50 update takes seconds): only when asked for
        for device in devices:
            rows += benchmark_repo(args, device)
        if args.repo_env_steps:
            rows += benchmark_repo_env(args, devices)
    machine = {
        "date": date.today().isoformat(),
        "cpu": platform.processor() or platform.machine(),
        "cores": __import__("os").cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }
    for row in rows:
        print(" | ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
    with open(args.out, "w") as f:
        json.dump({"machine": machine, "results": rows}, f, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
