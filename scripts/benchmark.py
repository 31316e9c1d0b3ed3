"""Speed figures: env steps/s (raw vs wrapped, state vs pixels, vectorised) and agent updates/s
(eager vs compiled), on CPU and on CUDA when present. Prints one `key=value` line per figure and writes JSON.

    python scripts/benchmark.py --out benchmark.json
    python scripts/benchmark.py --only env --env-steps 5000
    python scripts/benchmark.py --only sac --updates 500
    python scripts/benchmark.py --only iql --updates 200 --repeats 2
    python scripts/benchmark.py --only sac_pixels --pixel-updates 20   # float32 vs mixed precision (bf16)

Each figure is the median of --repeats timed runs after a warm-up (compilation happens in warm-up).
--devices takes auto, cpu, cuda and cuda:N (a CUDA device torch does not see is an error); the folder of --out is
created, and the file checked to be writable, before anything is measured. --threads sets torch's CPU threads
(default auto: the usable cores, or OMP_NUM_THREADS when set); another torch process running beside the benchmark
slows it far more than its share, so compare figures measured alone (or give each process its share of --threads).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["env", "sac", "sac_pixels", "iql"], default=None)
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
