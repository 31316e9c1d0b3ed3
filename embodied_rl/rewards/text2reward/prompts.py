"""The prompts of Text2Reward's generation step (issue 8, section 2), in our own words.

A prompt has five parts: the instruction (what the user wants done, e.g. a task's goal text), the environment's
abstraction (the Pythonic description of what `obs` holds), the usual ingredients of a dense reward, the rules
(the checker's rules stated positively, `checker.RULES`), and the required signature with the answer's format
(one ```python block). Few-shot prompts add up to k example programs, chosen by similarity to the instruction
with the target task left out.

Few-shot examples live in `configs/text2reward/examples/<task>.py`: programs hand-written by embodied_rl's
developers (not model output), each with a header naming its task; their instruction is that task's goal text.

Similarity is TF-IDF cosine over lower-case words (stop words dropped), the document frequencies counted over
the examples' instructions and the query: rare shared words ("drawer", "button") weigh more than common ones
("the", "block" where every example has it). Ties go to the task name, alphabetically, so selection is
deterministic. No scikit-learn: twenty lines of `collections.Counter` do it.

Follow-ups: `retry_messages` continues a conversation after a rejected answer; `refinement_messages` after a
program was trained on, with the training statistics (success, episode returns and lengths, each reward component's
values over training, as Eureka's feedback does) and a person's comments (Text2Reward's human feedback).

Messages are plain chat-completions dicts (`{"role": ..., "content": text}`), built here rather than with
`embodied_rl.llm`'s helpers: `rewards` and `llm` are packages of the same layer and do not import each other.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from embodied_rl.envs.task_descriptions import GOAL_TEXTS
from embodied_rl.rewards.text2reward.checker import FUNCTION_NAME, RULES

EXAMPLES_DIR = Path(__file__).resolve().parents[3] / "configs" / "text2reward" / "examples"
EXAMPLE_HEADER = "# Hand-written by embodied_rl's developers"  # every example file starts with this line
STOP_WORDS = frozenset(
    "a an and are as at be by for from in into is it its of off on onto or out so that the them then this to "
    "until up with".split()
)

SYSTEM = (
    "You are an expert in reinforcement learning and robotics. You write dense reward functions in Python "
    "that let an agent learn a manipulation task quickly and reliably."
)
COMPONENTS = """\
Dense rewards for manipulation are usually built from a few parts:
- Distance terms: reward getting the gripper close to the object it must handle and the object close to its
  target, e.g. `-np.linalg.norm(a - b)` or a bounded shaping such as `1 - np.tanh(5 * distance)`.
- Stages: when the task has phases (reach, grasp, lift, move, release), give each phase its own term and let
  later terms count only once the earlier phase is done (for example, reward moving the object only while it
  is held), so that the reward increases from one phase to the next.
- A success bonus: a clearly larger reward when the goal condition holds (object within a small tolerance of
  its target, a joint past its target angle).
- Regularisation: a small penalty on the action's magnitude, e.g. `-0.01 * np.sum(np.square(action))`, kept
  small compared with the task terms.
- Scale: keep each term within a few units and weight the terms so that progress on the task always pays more
  than the penalties cost."""
FORMAT = f"""\
Write the function `def {FUNCTION_NAME}(obs, action) -> float`. `obs` is the current observation as described
above; `action` is the action about to be taken (a numpy array). Return one finite float, or a pair
`(reward, {{"name": value, ...}})` naming the terms it adds up (we report each term's values back after training).
Answer with exactly one ```python code block holding the imports and the function (and any small helpers), and
keep any explanation short and outside the block."""


@dataclass(frozen=True)
class Example:
    """A hand-written reward program for one task, shown in few-shot prompts."""

    task: str
    instruction: str
    code: str  # the program without its header comments
    path: Path


def load_examples(directory: str | Path | None = None) -> list[Example]:
    """The examples of `directory` (default: configs/text2reward/examples), sorted by task. Each file starts
    with EXAMPLE_HEADER and has a line `# task: <name>`; the instruction is the task's goal text."""
    examples = []
    for path in sorted(Path(directory or EXAMPLES_DIR).glob("*.py")):
        text = path.read_text()
        if not text.startswith(EXAMPLE_HEADER):
            raise ValueError(f"{path}: a few-shot example must start with {EXAMPLE_HEADER!r}")
        match = re.search(r"^# task: (\S+)$", text, flags=re.MULTILINE)
        if match is None or match[1] not in GOAL_TEXTS:
            raise ValueError(f"{path}: needs a line '# task: <Meta-World task>' naming a task with a goal text")
        lines = text.splitlines()
        body = "\n".join(lines[next(i for i, line in enumerate(lines) if not line.startswith("#")) :]).strip()
        examples.append(Example(match[1], GOAL_TEXTS[match[1]], body + "\n", path))
    return examples


def words(text: str) -> list[str]:
    """Lower-case words of `text` without stop words."""
    return [word for word in re.findall(r"[a-z]+", text.lower()) if word not in STOP_WORDS]


def similarity_ranking(instruction: str, examples: Sequence[Example]) -> list[tuple[float, Example]]:
    """Examples with their TF-IDF cosine similarity to `instruction`, most similar first (ties by task name)."""
    documents = [Counter(words(example.instruction)) for example in examples]
    query = Counter(words(instruction))
    frequency = Counter(word for counts in [*documents, query] for word in counts)
    total = len(documents) + 1

    def weights(counts: Counter) -> dict[str, float]:
        return {word: n * (math.log((1 + total) / (1 + frequency[word])) + 1) for word, n in counts.items()}

    def cosine(a: dict[str, float], b: dict[str, float]) -> float:
        dot = sum(value * b.get(word, 0.0) for word, value in a.items())
        norms = math.sqrt(sum(v * v for v in a.values())) * math.sqrt(sum(v * v for v in b.values()))
        return dot / norms if norms else 0.0

    q = weights(query)
    scored = [(cosine(q, weights(counts)), example) for counts, example in zip(documents, examples)]
    return sorted(scored, key=lambda pair: (-pair[0], pair[1].task))


def select_examples(instruction: str, examples: Sequence[Example], k: int, target_task: str) -> list[Example]:
    """The k examples most similar to `instruction`, never one of `target_task` ("metaworld/" prefix or not)."""
    target = target_task.rpartition("/")[2]
    others = [example for example in examples if example.task != target]
    return [example for _, example in similarity_ranking(instruction, others)[:k]]


def prompt_text(instruction: str, abstraction_text: str, examples: Sequence[Example] = ()) -> str:
    """The user message of a generation prompt: zero-shot without `examples`, few-shot with them."""
    rules = "\n".join(f"- {rule}" for rule in RULES)
    parts = [
        f"## Task\n{instruction.strip()}",
        f"## Environment\n{abstraction_text.strip()}",
        f"## Reward design\n{COMPONENTS}",
        f"## Rules\n{rules}",
    ]
    if examples:
        shown = "\n\n".join(
            f"Task: {example.instruction}\n```python\n{example.code.strip()}\n```" for example in examples
        )
        parts.append(
            "## Examples\nReward functions written by people for other tasks of the same robot (adapt the "
            f"ideas, not the numbers):\n\n{shown}"
        )
    parts.append(f"## Your answer\n{FORMAT}")
    return "\n\n".join(parts) + "\n"


def generation_messages(instruction: str, abstraction_text: str, examples: Sequence[Example] = ()) -> list[dict]:
    """The conversation asking for a reward program (system message, then the prompt)."""
    return [_message("system", SYSTEM), _message("user", prompt_text(instruction, abstraction_text, examples))]


def retry_messages(conversation: list[dict], answer: str, problem: str) -> list[dict]:
    """`conversation` continued with the model's `answer` and a request to fix `problem` (the checker's message
    or why no function was found)."""
    follow_up = (
        f"{problem.strip()}\n\nPlease fix this and answer again with the whole program (imports, helpers and "
        f"`{FUNCTION_NAME}`) in exactly one ```python code block."
    )
    return [*conversation, _message("assistant", answer), _message("user", follow_up)]


def _message(role: str, text: str) -> dict:
    return {"role": role, "content": text}


def refinement_messages(
    conversation: list[dict],
    code: str,
    score: Mapping[str, Any],
    curves: Sequence[Mapping[str, Any]],
    components: Sequence[Mapping[str, Any]] = (),
    feedback_text: str = "",
) -> list[dict]:
    """`conversation` (the generation prompt) continued with the program trained on and what came of it.

    `score`: the training's final evaluation (`success_rate`, `best_success_rate`, `episode_length`, `steps`) or
    `failed` (the reason); `curves`: training episodes' return and success over consecutive stretches
    (`until_step`, `episodes`, `return_mean`, `success_rate`); `components`: each reward component's episode sums
    over stretches (`until_env_steps`, `episodes`, `components`: name -> mean / min / max); `feedback_text`: a
    person's comments."""
    lines = [f"We trained SAC on your reward function for {score.get('steps') or 0} environment steps."]
    if "failed" in score:
        lines.append(f"Training stopped because the reward function failed: {score['failed']}")
    else:
        lines.append(
            f"Final evaluation: success rate {score['success_rate']:.2f} (judged by the environment's own success "
            f"criterion), best success rate {score['best_success_rate']:.2f}, mean episode length "
            f"{score.get('episode_length')}."
        )
    if curves:
        lines.append("Training episodes (return under your reward function):")
    for part in curves:
        lines.append(
            f"- up to step {part['until_step']}: {part['episodes']} episodes, mean return "
            f"{part['return_mean']:.3f}, success rate {part['success_rate']:.2f}"
        )
    if components:
        lines.append("Each reward term summed over an episode (mean, min, max over the episodes of a stretch):")
    for part in components:
        terms = ", ".join(
            f"{name} {stat['mean']:.3f} ({stat['min']:.3f} to {stat['max']:.3f})"
            for name, stat in part["components"].items()
        )
        lines.append(f"- up to step {part['until_env_steps']} ({part['episodes']} episodes): {terms}")
    if feedback_text.strip():
        lines.append(f"Feedback from a person watching the agent: {feedback_text.strip()}")
    lines.append(
        "Revise the reward function so that the agent succeeds more often and sooner: terms that barely change "
        "during training give the agent no signal, and terms much larger than the others drown them out. Answer "
        "with the whole program (imports, helpers and `compute_dense_reward`) in exactly one ```python code block."
    )
    answer = f"```python\n{code.strip()}\n```"
    return [*conversation, _message("assistant", answer), _message("user", "\n".join(lines))]
