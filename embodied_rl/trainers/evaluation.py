"""Deterministic evaluation of a policy: success rate, returns, episode lengths and optional videos."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from embodied_rl.agents.protocol import acting_state_kept, reset_agent
from embodied_rl.logging import write_video

Policy = Callable[[Any], np.ndarray]  # obs -> action; may have `reset()`, called at each episode start


class AgentPolicy:
    """An agent's deterministic policy for evaluation: `agent.act(obs, deterministic=True)`, with the agent's
    recurrent state (if any) reset at each episode start through the agent protocol's `reset(done_mask)`."""

    def __init__(self, agent):
        self.agent = agent

    def __call__(self, obs: Any) -> np.ndarray:
        return self.agent.act(obs, deterministic=True)

    def reset(self) -> None:
        reset_agent(self.agent, np.ones(1, dtype=bool))


def run_episode(policy: Policy, env, seed: int | None, record: bool = False) -> dict[str, Any]:
    """Roll out one episode; `success` is true if the env reported success at any step."""
    obs, info = env.reset(seed=seed)
    if hasattr(policy, "reset"):
        policy.reset()
    frames = [env.render()] if record else []
    episode_return, length, success = 0.0, 0, False
    done = False
    while not done:
        obs, reward, terminated, truncated, info = env.step(policy(obs))
        episode_return += float(reward)
        length += 1
        success = success or bool(info.get("success", False))
        done = terminated or truncated
        if record:
            frames.append(env.render())
    return {"seed": seed, "return": episode_return, "length": length, "success": success, "frames": frames}


def evaluate_policy(
    policy: Policy,
    env,
    episodes: int,
    seed: int = 0,
    video_dir: str | Path | None = None,
    videos: int | None = None,
    fps: float | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Evaluate `policy` for `episodes` episodes with seeds `seed, seed+1, ...`.

    Writes `episode_<i>.mp4` into `video_dir` for the first `videos` episodes (all when None), at `fps`
    frames per second; by default the env's `render_fps` (one frame per env step: real time).
    Returns the first seed, success rate, return mean/std, lengths and per-episode records (without frames).
    """
    from tqdm import trange

    if fps is None and video_dir is not None:
        fps = getattr(env, "metadata", {}).get("render_fps") or 30
    records = []
    for i in trange(episodes, desc="eval", disable=not progress, leave=False):
        record = video_dir is not None and (videos is None or i < videos)
        result = run_episode(policy, env, seed=seed + i, record=record)
        if record:
            result["video"] = str(write_video(Path(video_dir) / f"episode_{i:03d}.mp4", result["frames"], fps))
        result.pop("frames")
        records.append(result)
    returns = np.array([r["return"] for r in records])
    return {
        "episodes": episodes,
        "seed": seed,
        "success_rate": float(np.mean([r["success"] for r in records])),
        "return_mean": float(returns.mean()),
        "return_std": float(returns.std()),
        "length_mean": float(np.mean([r["length"] for r in records])),
        "per_episode": records,
    }


SUMMARY_KEYS = ("success_rate", "return_mean", "return_std", "length_mean")


def normalized_score(episode_return: float, ref_min: float | None, ref_max: float | None) -> float | None:
    """D4RL's normalised score: 100 * (R - R_random) / (R_expert - R_random); None without references."""
    if ref_min is None or ref_max is None or ref_max == ref_min:
        return None
    return 100.0 * (episode_return - ref_min) / (ref_max - ref_min)


def evaluate_and_log(
    agent,
    env,
    episodes: int,
    seed: int,
    step: int,
    logger,
    video_dir: str | Path | None = None,
    videos: int = 0,
    ref_scores: tuple[float | None, float | None] = (None, None),
    unit: str = "step",
) -> dict[str, Any]:
    """A trainer's periodic evaluation: `agent.act(deterministic=True)` for `episodes` episodes, the summary
    scalars (plus the normalised score when `ref_scores` are known) logged under `eval/` at `step`, one
    console line. A recurrent agent's training state is kept (`acting_state_kept`). Returns {"step": step,
    **scalars}."""
    with acting_state_kept(agent):
        result = evaluate_policy(
            AgentPolicy(agent),
            env,
            episodes,
            seed=seed,
            video_dir=video_dir if videos > 0 else None,
            videos=videos,
        )
    scalars = {k: result[k] for k in SUMMARY_KEYS}
    score = normalized_score(scalars["return_mean"], *ref_scores)
    if score is not None:
        scalars["normalized_score"] = score
    logger.log(scalars, step, prefix="eval")
    logger.summary(f"[eval] {unit} {step:>9d} | {describe_evaluation(scalars)}")
    return {"step": step, **scalars}


def describe_evaluation(evaluation: dict[str, Any]) -> str:
    """`success 0.80 | return 4512.3 ± 80.1 | score 97.2` (the score when there is one): an evaluation in one line."""
    score = evaluation.get("normalized_score")
    return (
        f"success {evaluation['success_rate']:.2f} | return {evaluation['return_mean']:.1f} ± "
        f"{evaluation['return_std']:.1f}" + (f" | score {score:.1f}" if score is not None else "")
    )


def is_better(a: dict[str, Any], b: dict[str, Any] | None) -> bool:
    """Evaluation `a` beats `b` (None: no evaluation yet): higher success rate, then higher mean return."""
    return b is None or (a["success_rate"], a["return_mean"]) > (b["success_rate"], b["return_mean"])
