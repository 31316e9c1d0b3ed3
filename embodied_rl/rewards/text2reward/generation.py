"""Asking the LLM for reward programs (issue 8, section 2): N samples of one prompt, the function extracted from
each answer, checked, and each rejected sample given a bounded number of follow-ups carrying the reason.

    settings = GenerationSettings.from_mapping(cfg.text2reward.generation)
    candidates = generate_candidates(LLMClient(LLMSettings.from_mapping(cfg.llm)), "drawer-open-v3",
                                     goal_text("drawer-open-v3"), settings)
    accepted = [c for c in candidates if c.accepted]      # c.program: a CheckedProgram

Every sample is a `Candidate` record from the first request to the last: its index, each attempt (the raw answer,
the code extracted or why none was, the checker's verdict), and the accepted program or the final reasons. Records
are never matched to answers by their position in a filtered list: sample i is asked, retried and stored as
record i whatever happens to the others.

Distinct samples and the cache: the client caches by a hash of the request, so N identical requests would be one
cached answer. Each sample's requests carry `seed=<sample index>` (a chat-completions parameter, part of the hash,
and for servers that honour it a reproducible draw), so sample i of a rerun is answered from the cache and sample
i and j are distinct requests.

Retries: only for answers that fail the extraction or the checks, at most `max_retries` follow-ups per sample,
each continuing that sample's conversation with the problem stated. A request that fails at the protocol level
(the client has already retried it) ends its sample with the error as the reason; nothing loops beyond these
bounds.

The client is handed in (`embodied_rl.llm.LLMClient`, or anything with its `complete` and `settings`): `rewards`
and `llm` are packages of the same layer and do not import each other (tests/test_layering.py).
"""

from __future__ import annotations

import ast
import re
import time
from collections.abc import Collection, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np

from embodied_rl.rewards.text2reward.checker import FUNCTION_NAME, CheckedProgram, ProgramRejected, check_program
from embodied_rl.rewards.text2reward.prompts import generation_messages, load_examples, retry_messages, select_examples
from embodied_rl.validation import check_field_types, check_ranges, settings_from_mapping


class ChatClient(Protocol):
    """What generation uses of `embodied_rl.llm.LLMClient`."""

    settings: Any  # .concurrency: requests in flight at once

    def complete(self, messages: list[dict], **params: Any) -> Any: ...  # a Completion, or raises LLMError


_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)```", re.DOTALL)


@dataclass
class GenerationSettings:
    """`configs/text2reward/default.yaml`'s `generation` block; the model and endpoint come from `configs/llm/`."""

    samples: int = 4  # N: programs asked for per prompt
    temperature: float = 0.7  # overrides llm.temperature for these requests
    max_retries: int = 2  # follow-ups per sample after a rejected answer (0: none)
    few_shot: int = 0  # examples shown (0: zero-shot)
    examples_dir: str | None = None  # None: configs/text2reward/examples
    model: str | None = None  # None: llm.model
    max_tokens: int | None = None  # None: llm.max_tokens

    def __post_init__(self) -> None:
        check_field_types(self, "text2reward generation settings", prefix="generation.")
        ranges = {"samples": ">= 1", "temperature": ">= 0", "max_retries": ">= 0", "few_shot": ">= 0"}
        ranges["max_tokens"] = "None or >= 1"
        check_ranges("text2reward generation settings", vars(self), ranges, prefix="generation.")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> GenerationSettings:
        return settings_from_mapping(cls, values, "text2reward generation")


@dataclass
class Attempt:
    """One request of a sample and what came of it."""

    answer: str | None  # the raw answer text (None: the request failed)
    code: str | None = None  # the program extracted from it
    problem: str | None = None  # why it was not accepted: no code, the checker's message, or the request's error
    cached: bool = False
    key: str = ""  # the request's hash in the client's cache
    seconds: float = 0.0


@dataclass
class Candidate:
    """Sample `index` of a prompt: all its attempts, and the accepted program (None if it never passed)."""

    index: int
    attempts: list[Attempt] = field(default_factory=list)
    program: CheckedProgram | None = None

    @property
    def accepted(self) -> bool:
        return self.program is not None

    @property
    def code(self) -> str | None:
        """The last program extracted (the accepted one when accepted)."""
        return next((attempt.code for attempt in reversed(self.attempts) if attempt.code is not None), None)

    @property
    def reason(self) -> str | None:
        """Why the sample ended without a program (its last attempt's problem); None when accepted."""
        return None if self.accepted else self.attempts[-1].problem

    def to_dict(self) -> dict:
        """A JSON-friendly record."""
        return {
            "index": self.index,
            "accepted": self.accepted,
            "code": self.code,
            "reason": self.reason,
            "obs_attributes": list(self.program.obs_attributes) if self.program else None,
            "attempts": [asdict(attempt) for attempt in self.attempts],
        }


class NoCodeFound(ValueError):
    """An answer with no usable program; `str()` says why, for the record and for the follow-up."""


def extract_program(answer: str, function_name: str = FUNCTION_NAME) -> str:
    """The program in `answer`: the first fenced code block (python, py or unlabelled) that defines
    `function_name`; an answer that is itself a program defining it is taken whole. NoCodeFound otherwise."""
    blocks = [body for language, body in _FENCE.findall(answer) if language.lower() in ("", "python", "py", "python3")]
    defines = re.compile(rf"^\s*def\s+{re.escape(function_name)}\s*\(", re.MULTILINE)
    for body in blocks:
        if defines.search(body):
            return body.strip() + "\n"
    if blocks:
        raise NoCodeFound(
            f"none of the {len(blocks)} python code blocks in the answer defines `def {function_name}(obs, action):`"
        )
    if answer.count("```") % 2:
        raise NoCodeFound(
            "the answer opens a code block but never closes it (it may have been cut off): give the whole program "
            "in one closed ```python block"
        )
    if defines.search(answer) and _parses(answer):
        return answer.strip() + "\n"
    raise NoCodeFound(f"the answer has no ```python code block defining `def {function_name}(obs, action):`")


def _parses(text: str) -> bool:
    try:
        ast.parse(text)
    except SyntaxError:
        return False
    return True


def judge(answer: str, attributes: Collection[str]) -> tuple[str | None, CheckedProgram | None, str | None]:
    """(code, accepted program, problem) for one answer: extraction, then the checker."""
    try:
        code = extract_program(answer)
    except NoCodeFound as err:
        return None, None, str(err)
    try:
        return code, check_program(code, attributes), None
    except ProgramRejected as err:
        return code, None, str(err)


def generate_candidates(
    client: ChatClient,
    task: str,
    instruction: str,
    settings: GenerationSettings,
    abstraction: Any = None,
) -> list[Candidate]:
    """`settings.samples` candidates for `task` (its abstraction: `abstraction_for(task)` unless given; any object
    with `.text` and `.attributes`), asked with `instruction`; zero-shot or with `settings.few_shot` examples
    chosen by similarity, the task's own left out. Records in sample order, one per sample."""
    if abstraction is None:
        from embodied_rl.rewards.text2reward.abstraction import abstraction_for

        abstraction = abstraction_for(task)
    examples = []
    if settings.few_shot:
        examples = select_examples(instruction, load_examples(settings.examples_dir), settings.few_shot, task)
    first = generation_messages(instruction, abstraction.text, examples)
    candidates = [Candidate(index) for index in range(settings.samples)]
    conversations = {candidate.index: first for candidate in candidates}  # the next request of each open sample
    params = {"temperature": settings.temperature, "model": settings.model, "max_tokens": settings.max_tokens}
    for _round in range(settings.max_retries + 1):
        if not conversations:
            break
        sent, conversations = conversations, {}
        asked = sorted(sent)
        answers = _ask_all(client, [(sent[i], {**params, "seed": i}) for i in asked])
        for index, (result, seconds) in zip(asked, answers):
            candidate = candidates[index]
            if isinstance(result, BaseException):
                candidate.attempts.append(Attempt(None, problem=f"the request failed: {result}", seconds=seconds))
                continue  # the client has retried it already
            if result.refusal:
                problem = f"the model declined: {result.refusal}"
                candidate.attempts.append(Attempt(result.text, None, problem, result.cached, result.key, seconds))
                continue  # asking again what was refused is not a fix
            code, program, problem = judge(result.text, abstraction.attributes)
            attempt = Attempt(result.text, code, problem, result.cached, result.key, seconds)
            candidate.attempts.append(attempt)
            candidate.program = program
            if program is None:
                conversations[index] = retry_messages(sent[index], result.text, problem or "")
    return candidates


def _ask_all(client: ChatClient, requests: list[tuple[list[dict], dict]]) -> list[tuple[Any, float]]:
    """The answers (or LLMErrors) to `requests` (messages, params), in order, with each one's seconds; up to the
    client's concurrency in flight (the client's semaphore holds the limit)."""

    def ask(request: tuple[list[dict], dict]) -> tuple[Any, float]:
        messages, params = request
        start = time.perf_counter()
        try:
            result = client.complete(messages, **params)
        except RuntimeError as err:  # LLMError (a RuntimeError): no answer after the client's own retries
            result = err
        return result, time.perf_counter() - start

    with ThreadPoolExecutor(max_workers=client.settings.concurrency, thread_name_prefix="t2r") as pool:
        return list(pool.map(ask, requests))


# ---------------------------------------------------------------------- smoke test


@dataclass
class SmokeReport:
    """`smoke_test`'s outcome: whether every reward was a finite float, the first problem, time per call."""

    ok: bool
    problem: str | None
    steps: int  # rewards computed
    seconds_per_call: list[float]  # one per trajectory (a call of reward_batch)

    @property
    def seconds_per_step(self) -> float:
        return sum(self.seconds_per_call) / max(self.steps, 1)


def smoke_test(reward_batch: Any, trajectories: list[tuple[list[dict], np.ndarray]]) -> SmokeReport:
    """Call `reward_batch(snapshots, actions) -> rewards` on each (snapshots, actions) trajectory (random or
    scripted rollouts), timing each call; fails on an exception, a wrong shape or a non-finite value, naming the
    trajectory and step. Integration (section 3) passes the sandbox as `reward_batch`."""
    seconds, steps = [], 0
    for number, (snapshots, actions) in enumerate(trajectories):
        start = time.perf_counter()
        try:
            rewards = np.asarray(reward_batch(snapshots, actions), dtype=np.float64)
        except Exception as err:  # the candidate's failure, reported rather than raised
            seconds.append(time.perf_counter() - start)
            return SmokeReport(False, f"trajectory {number}: {type(err).__name__}: {err}", steps, seconds)
        seconds.append(time.perf_counter() - start)
        if rewards.shape != (len(snapshots),):
            problem = f"trajectory {number}: expected {len(snapshots)} rewards, got shape {rewards.shape}"
            return SmokeReport(False, problem, steps, seconds)
        bad = np.flatnonzero(~np.isfinite(rewards))
        if bad.size:
            problem = f"trajectory {number}, step {bad[0]}: the reward is {rewards[bad[0]]}, not a finite float"
            return SmokeReport(False, problem, steps + int(bad[0]), seconds)
        steps += len(snapshots)
    return SmokeReport(True, None, steps, seconds)
