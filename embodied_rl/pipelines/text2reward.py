"""Text2Reward (Xie et al., ICLR 2024) as a run: an LLM writes the dense reward, SAC trains on it, the env's own
success flag judges. Flow, top to bottom (`Text2RewardPipeline.run`):

    instruction + the env's abstraction --generate_candidates (LLM, checker, retries)--> N candidate programs
    accepted programs, in sample order --smoke_test in a RewardSandbox on random-action rollouts--> the first
        program that gives a finite float on every step
    SAC (the run's online trainer) on that program: every env wrapped in SnapshotInfo (info["snapshot"]), the
        training vector env in SandboxVectorReward (the rewards of each vector step computed in one call to one
        sandbox worker from the snapshots the step reached and the actions; info["env_reward"] keeps the env's own),
        success from the env's `success` flag (Meta-World) or the behaviour's criterion (locomotion, `behaviour`)

Arms (`arm`), from the same command:
- `generated`: the above, with the LLM the run's `llm:` settings reach;
- `env_reward`: SAC on the env's own (expert-written) reward, no LLM.

Selection and refinement (both optional): with `best_of` > 1, up to that many programs that pass the smoke test
each get `candidate_steps` of SAC in text2reward/candidate_<i>/, and the run continues the one with the highest final
success rate (then best success rate, then sample order; returns are on each program's own scale and are not
compared) from its checkpoint. `refine_rounds` rounds then each train the current program for `candidate_steps` in
text2reward/round_<n>/, send the statistics (final evaluation, training return and success over three stretches, a
failure's reason) and `feedback_text` back in the generation conversation, and take the revised program if it passes
the checks and the smoke test; after refinement the run trains the last program from scratch.

The reward is batched per vector step: one sandbox worker per training run, in the training process, asked once per
vector step for all sub-envs (with `trainer.asynchronous_envs=true` the snapshots come from the sub-env processes
through `info`). Evaluation episodes are judged by success only; their return is the env's own reward, so returns
compare across programs and with the env_reward arm (the program's returns are the training episodes', in
metrics.csv, and per component in text2reward/reward_components.jsonl). A program that fails during training ends
the run with `GeneratedRewardFailed` naming the reason (the command prints one `error:` line); the run directory keeps
everything in text2reward/: requests.json (every request's messages), candidates.json (each sample's attempts,
answers, code, rejection reasons and smoke test), best_of.json (candidates' scores), round_<n>.json (each refinement
round: the program trained, its score, curves and reward components, every prompt, answer, code and rejection
reason, the revision), reward_components.jsonl (per training episode: its return under the program and the sum of
each component the program reports, when it returns `(reward, {name: value})`),
program.py and selected.json (the program trained on), failure.json (why training stopped, if it did) and the LLM
usage files. A resumed run reads program.py back and asks nothing.
"""

from __future__ import annotations

import copy
import csv
import functools
import json
import shutil
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf, open_dict

from embodied_rl.files import atomic_write, write_json
from embodied_rl.llm import LLMError
from embodied_rl.pipelines.base import Pipeline
from embodied_rl.rewards.text2reward import (
    CandidateFailed,
    GenerationSettings,
    RewardSandbox,
    SandboxLimits,
    SnapshotInfo,
    abstraction_for,
    generate_candidates,
    smoke_test,
)
from embodied_rl.rewards.text2reward.behaviours import Behaviour, BehaviourSuccess, behaviour_named
from embodied_rl.rewards.text2reward.prompts import refinement_messages
from embodied_rl.rewards.text2reward.reward_wrappers import (
    COMPONENTS_FILE,
    SandboxReward,
    SandboxVectorReward,
    component_curves,
    read_component_log,
)
from embodied_rl.trainers.assembly import Run
from embodied_rl.trainers.builders import ConfigError
from embodied_rl.validation import check_field_types, check_ranges, settings_from_mapping

ARMS = ("generated", "env_reward")
OUT = "text2reward"  # the pipeline's folder in a run directory


class GeneratedRewardFailed(LLMError):
    """No usable reward program: every candidate was rejected, or the one trained on failed in its sandbox.
    (An LLMError, so that `scripts/train.py` prints it as one `error:` line.)"""


@dataclass
class Text2RewardConfig:
    """The settings of the text2reward pipeline: configs/text2reward/default.yaml (`text2reward:`) and `llm:`."""

    arm: str = "generated"
    instruction: str = ""  # "": the behaviour's instruction (locomotion) or the Meta-World task's goal text
    behaviour: str = ""  # locomotion: a behaviour of text2reward.behaviours.BEHAVIOURS (its success criterion)
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    best_of: int = 1  # programs trained for `candidate_steps` each, the best one continued (1: no selection)
    candidate_steps: int = 20000  # SAC steps of each candidate when best_of > 1
    refine_rounds: int = 0  # rounds of: train `candidate_steps`, feed the statistics back, take the revised program
    feedback_text: str = ""  # a person's comments added to every refinement prompt
    smoke_episodes: int = 2
    smoke_steps: int = 20
    sandbox: SandboxLimits = field(default_factory=SandboxLimits)
    llm: dict = field(default_factory=dict)  # embodied_rl.llm.LLMSettings (configs/llm/default.yaml)

    def __post_init__(self) -> None:
        if self.arm not in ARMS:
            raise ValueError(f"text2reward.arm={self.arm!r} is not one of {', '.join(ARMS)}")
        if not isinstance(self.generation, GenerationSettings):
            self.generation = GenerationSettings.from_mapping(self.generation)
        if not isinstance(self.sandbox, SandboxLimits):
            self.sandbox = settings_from_mapping(SandboxLimits, self.sandbox, "text2reward sandbox")
        check_field_types(self, "text2reward settings", prefix="text2reward.")
        check_field_types(self.sandbox, "text2reward sandbox settings", prefix="text2reward.sandbox.")
        check_ranges(
            "text2reward settings",
            vars(self),
            {
                **dict.fromkeys(("best_of", "candidate_steps", "smoke_episodes", "smoke_steps"), ">= 1"),
                "refine_rounds": ">= 0",
            },
        )
        positive = dict.fromkeys(("cpu_seconds", "memory_mb", "call_timeout_s", "start_timeout_s"), "> 0")
        check_ranges("text2reward sandbox settings", vars(self.sandbox), positive, prefix="text2reward.sandbox.")
        if self.arm == "generated":
            from embodied_rl.llm import LLMSettings

            LLMSettings.from_mapping(self.llm)  # a bad llm key is an error before anything runs

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> Text2RewardConfig:
        return settings_from_mapping(cls, values, "text2reward")


def best_candidate(scores: Mapping[int, Mapping[str, float]]) -> int:
    """The sample index with the highest final success rate, then best success rate, then the lowest index.
    Returns are not compared: each program's return is on its own scale."""
    return max(scores, key=lambda i: (scores[i]["success_rate"], scores[i]["best_success_rate"], -i))


def training_curves(metrics_csv: Path, parts: int = 3) -> list[dict[str, float]]:
    """Training episodes' return and success averaged over `parts` consecutive stretches of a metrics.csv."""
    if not metrics_csv.exists():
        return []
    with open(metrics_csv) as f:
        rows = [row for row in csv.DictReader(f) if row.get("train/return")]
    curves = []
    for chunk in np.array_split(np.arange(len(rows)), min(parts, len(rows))):
        picked = [rows[i] for i in chunk]
        curves.append(
            {
                "until_step": int(picked[-1]["step"]),
                "episodes": len(picked),
                "return_mean": float(np.mean([float(r["train/return"]) for r in picked])),
                "success_rate": float(np.mean([float(r["train/success"]) for r in picked])),
            }
        )
    return curves


class _RecordingClient:
    """An LLM client that notes the messages and parameters of every request it is asked (saved with the run)."""

    def __init__(self, client: Any):
        self.client, self.settings, self.requests = client, client.settings, []

    def complete(self, messages: list[dict], **params: Any) -> Any:
        self.requests.append({"messages": messages, "params": params})
        return self.client.complete(messages, **params)


class Text2RewardPipeline(Pipeline):
    """Generated rewards as a run: `experiment=text2reward env.task=... llm.base_url=... llm.model=...`."""

    name = "text2reward"
    settings_class = Text2RewardConfig
    trainer_kinds = ("online",)
    top_level_keys = ("llm", "instruction")
    outputs = (OUT,)

    @classmethod
    def settings_values(cls, cfg: DictConfig) -> dict[str, Any]:
        """`text2reward:` with the run's `llm:` and its top-level `instruction`."""
        llm = OmegaConf.to_container(cfg.llm, resolve=True) if cfg.get("llm") is not None else {}
        return {**super().settings_values(cfg), "llm": llm, "instruction": str(cfg.get("instruction") or "")}

    def run(self, run: Run) -> dict[str, Any]:
        task = run.cfg.env.task
        judge = self.success_wrappers(self.behaviour(task))  # checks the behaviour before anything runs
        if self.settings.arm == "env_reward":
            return run.train_online(wrappers=judge)
        try:
            abstraction = abstraction_for(task)
        except ValueError as err:
            raise ConfigError(f"text2reward needs an environment abstraction: {err}") from None
        out = run.run_dir / OUT
        out.mkdir(parents=True, exist_ok=True)
        program_path = out / "program.py"
        if run.resuming and program_path.exists():
            run.logger.summary(f"[text2reward] resumed with {program_path} (nothing asked again)")
            code = program_path.read_text()
        else:
            code, run = self.select(run, out, task, abstraction)
        try:
            return run.train_online(**self.wrappers(code, abstraction, out, run.run_dir / OUT))
        except CandidateFailed as err:
            reason = str(err)
            write_json(out / "failure.json", {"during": "training", "reason": reason})
            raise GeneratedRewardFailed(
                f"the generated reward program failed during training: {reason}. Its code and records are in {out}"
            ) from None

    # ---------------------------------------------------------------- the method's steps
    def behaviour(self, task: str) -> Behaviour | None:
        """The locomotion behaviour judged (`behaviour`, required for locomotion tasks); None for Meta-World."""
        name = self.settings.behaviour
        if task.startswith("metaworld/"):
            if name:
                raise ConfigError(f"text2reward.behaviour is for locomotion tasks; {task} has its own success flag")
            return None
        if not name:
            from embodied_rl.rewards.text2reward.behaviours import BEHAVIOURS

            known = ", ".join(b.name for b in BEHAVIOURS.values() if b.task == task)
            raise ConfigError(
                f"{task} has no success flag: choose what is judged with text2reward.behaviour=<{known or 'none'}>"
            )
        try:
            return behaviour_named(name, task)
        except ValueError as err:
            raise ConfigError(f"text2reward.behaviour: {err}") from None

    @staticmethod
    def success_wrappers(behaviour: Behaviour | None) -> list:
        """The wrapper setting info["success"] from a locomotion behaviour's criterion (none for Meta-World)."""
        return [] if behaviour is None else [functools.partial(BehaviourSuccess, behaviour=behaviour)]

    def instruction(self, task: str) -> str:
        """The settings' instruction, else the behaviour's (locomotion) or the Meta-World task's goal text."""
        if self.settings.instruction.strip():
            return self.settings.instruction
        behaviour = self.behaviour(task)
        if behaviour is not None:
            return behaviour.instruction
        from embodied_rl.envs.task_descriptions import goal_text

        try:
            return goal_text(task)
        except ValueError:
            raise ConfigError(f"{task} has no goal text: give instruction='...'") from None

    def wrappers(self, code: str, abstraction: Any, out: Path, log_dir: Path) -> dict[str, list]:
        """`Run.train_online`'s wrappers of a generated reward: every env puts its snapshot in info (and is judged by
        the behaviour's criterion, for locomotion); the training vector env gets the program's rewards from those
        snapshots, one sandbox call per vector step, with the per-episode components logged in `log_dir`."""
        reward = functools.partial(
            SandboxVectorReward,
            source=code,
            limits=self.settings.sandbox,
            workdir=str(out),
            components_path=log_dir / COMPONENTS_FILE,
        )
        judge = self.success_wrappers(self.behaviour(abstraction.task))
        snapshot = functools.partial(SnapshotInfo, abstraction=abstraction)
        return {"wrappers": [*judge, snapshot], "vector_wrappers": [reward]}

    def select(self, run: Run, out: Path, task: str, abstraction: Any) -> tuple[str, Run]:
        """The program to train on and the run to train it in: the only (or first) program passing the checks and
        the smoke test; with `best_of` > 1, the best of that many after `candidate_steps` of SAC each, whose
        checkpoint the run continues from (the returned run resumes)."""
        s = self.settings
        passing, records, instruction = self.generate(run, out, task, abstraction)
        chosen, scores = passing[0], {}
        if s.best_of > 1 and len(passing) > 1:
            for index, code in passing[: s.best_of]:
                scores[index] = self.train_candidate(run, out, index, code, abstraction)
                write_json(out / "best_of.json", scores)
            trained = [i for i in scores if "failed" not in scores[i]]
            if not trained:
                failures = "; ".join(f"sample {i}: {score['failed']}" for i, score in scores.items())
                raise GeneratedRewardFailed(f"every candidate failed in training ({failures}); see {out}")
            best = best_candidate({i: scores[i] for i in trained})
            chosen = next(pair for pair in passing if pair[0] == best)
            if s.refine_rounds == 0:  # a refined program trains from scratch: the buffer holds the old rewards
                shutil.copytree(out / f"candidate_{best}" / "checkpoints", run.run_dir / "checkpoints")
                run = replace(run, resuming=True)
        index, code = chosen
        for round_number in range(1, s.refine_rounds + 1):
            code = self.refine(run, out, round_number, code, abstraction)
        selected = {"index": index, "instruction": instruction, "code": code, "best_of": scores}
        write_json(out / "selected.json", selected)
        with atomic_write(out / "program.py") as f:
            f.write(code)
        run.logger.summary(f"[text2reward] training on sample {index} of {len(records)} ({out / 'program.py'})")
        return code, run

    def train_candidate(
        self, run: Run, out: Path, index: int, code: str, abstraction: Any, name: str | None = None
    ) -> dict[str, Any]:
        """SAC for `candidate_steps` on one program in <out>/<name>/ (default candidate_<index>); its final
        evaluation's success (0 when the program failed in training, with the reason)."""
        name = name or f"candidate_{index}"
        where = out / name
        cfg = copy.deepcopy(run.cfg)
        with open_dict(cfg):
            cfg.trainer.total_steps = self.settings.candidate_steps
            cfg.run_dir = str(where)
        logger = run.logger_for(f"{OUT}/{name}")
        try:
            results = Run(cfg, where, run.device, logger).train_online(**self.wrappers(code, abstraction, out, where))
        except CandidateFailed as err:
            return {"success_rate": 0.0, "best_success_rate": 0.0, "failed": str(err)}
        finally:
            logger.close()
        final, best = results.get("final") or {}, results.get("best") or {}
        score = {
            "success_rate": final.get("success_rate", 0.0),
            "best_success_rate": best.get("success_rate", 0.0),
            "return_mean": final.get("return_mean"),  # evaluation episodes' return under the env's own reward
            "return_std": final.get("return_std"),
            "episode_length": final.get("length_mean"),
            "steps": results.get("steps"),
        }
        run.logger.summary(f"[text2reward] {name}: final success {score['success_rate']:.2f}")
        return score

    # ---------------------------------------------------------------- refinement
    def refine(self, run: Run, out: Path, round_number: int, code: str, abstraction: Any) -> str:
        """One refinement round: `code` trained for `candidate_steps` in <out>/round_<n>/, its statistics (and
        `feedback_text`) sent back in the generation conversation, the revised program checked and smoke-tested.
        Returns the revised program, or `code` when no revision passed (the round's record says why)."""
        from embodied_rl.llm import LLMClient, LLMSettings
        from embodied_rl.rewards.text2reward.generation import judge
        from embodied_rl.rewards.text2reward.prompts import retry_messages

        s = self.settings
        name = f"round_{round_number}"
        score = self.train_candidate(run, out, -1, code, abstraction, name=name)
        curves = training_curves(out / name / "metrics.csv")
        components = component_curves(read_component_log(out / name / COMPONENTS_FILE))
        first = json.loads((out / "requests.json").read_text())[0]["messages"]  # the generation prompt
        messages = refinement_messages(first, code, score, curves, components, s.feedback_text)
        client = LLMClient(LLMSettings.from_mapping(s.llm), usage_path=out / f"{name}_llm_usage.json")
        params = {"temperature": s.generation.temperature, "model": s.generation.model}
        params |= {"max_tokens": s.generation.max_tokens, "seed": 1000 + round_number}
        record: dict[str, Any] = {"round": round_number, "trained": code, "score": score, "curves": curves}
        record["components"] = components
        record["attempts"], revised = [], None
        rollouts = self.smoke_rollouts(run, abstraction)
        for _ in range(s.generation.max_retries + 1):
            answer = client.complete(messages, **params)
            new_code, program, problem = judge(answer.text, abstraction.attributes)
            if program is not None:
                report = self.smoke(program.source, rollouts, out)
                problem = None if report["ok"] else f"smoke test: {report['problem']}"
            attempt = {"messages": messages, "answer": answer.text, "code": new_code, "problem": problem}
            record["attempts"].append(attempt)
            if problem is None:
                revised = program.source
                break
            messages = retry_messages(messages, answer.text, problem)
        record["revised"] = revised
        write_json(out / f"{name}.json", record)
        if revised is None:
            run.logger.summary(f"[text2reward] {name}: no revision passed; keeping the program")
            return code
        run.logger.summary(f"[text2reward] {name}: revised program accepted")
        return revised

    def generate(self, run: Run, out: Path, task: str, abstraction: Any) -> tuple[list[tuple[int, str]], list, str]:
        """The (index, code) of the samples that pass the checks and the smoke test, in sample order (at least one,
        else GeneratedRewardFailed), all records, and the instruction; records saved in `out`."""
        from embodied_rl.llm import LLMClient, LLMSettings

        s = self.settings
        instruction = self.instruction(task)
        client = _RecordingClient(LLMClient(LLMSettings.from_mapping(s.llm), usage_path=out / "llm_usage.json"))
        try:
            candidates = generate_candidates(client, task, instruction, s.generation, abstraction)
        finally:
            write_json(out / "requests.json", client.requests)
        records = [candidate.to_dict() for candidate in candidates]
        trajectories = self.smoke_rollouts(run, abstraction)
        passing = []
        for candidate, record in zip(candidates, records):
            if not candidate.accepted or len(passing) >= s.best_of:
                continue
            record["smoke_test"] = report = self.smoke(candidate.program.source, trajectories, out)
            if report["ok"]:
                passing.append((candidate.index, candidate.program.source))
            else:
                record["reason"] = f"smoke test: {report['problem']}"
        write_json(out / "candidates.json", {"task": task, "instruction": instruction, "candidates": records})
        if not passing:
            reasons = "; ".join(f"sample {r['index']}: {r['reason']}" for r in records)
            raise GeneratedRewardFailed(f"no usable reward program among {len(records)} samples ({reasons}); see {out}")
        return passing, records, instruction

    def smoke(self, source: str, trajectories: list, out: Path) -> dict[str, Any]:
        """`smoke_test` of a program in its own sandbox on the rollouts, with the mean reward it gave."""
        rewards: list[np.ndarray] = []
        sandbox = RewardSandbox(source, limits=self.settings.sandbox, workdir=out)  # starts at its first call

        def reward_batch(snapshots: list[dict], actions: np.ndarray) -> np.ndarray:
            rewards.append(sandbox(snapshots, actions))
            return rewards[-1]

        try:
            report = smoke_test(reward_batch, trajectories)  # a failure, the start's included, is in the report
        finally:
            sandbox.close()
        mean = float(np.mean(np.concatenate(rewards))) if report.ok else None
        return {**asdict(report), "mean_reward": mean}

    def smoke_rollouts(self, run: Run, abstraction: Any) -> list[tuple[list[dict], np.ndarray]]:
        """(snapshots, actions) of `smoke_episodes` random-action rollouts of `smoke_steps` steps at most."""
        from embodied_rl.envs import make_env

        s = self.settings
        env = make_env(run.env_config(), wrappers=[functools.partial(SnapshotInfo, abstraction=abstraction)])
        env.action_space.seed(run.seed)
        trajectories = []
        try:
            for episode in range(s.smoke_episodes):
                env.reset(seed=run.seed + episode)
                snapshots, actions = [], []
                for _ in range(s.smoke_steps):
                    action = env.action_space.sample()
                    _, _, terminated, truncated, info = env.step(action)
                    snapshots.append(info["snapshot"])
                    actions.append(action)
                    if terminated or truncated:
                        break
                trajectories.append((snapshots, np.asarray(actions, dtype=np.float64)))
        finally:
            env.close()
        return trajectories


__all__ = [
    "ARMS",
    "GeneratedRewardFailed",
    "best_candidate",
    "SandboxReward",
    "Text2RewardConfig",
    "Text2RewardPipeline",
]
