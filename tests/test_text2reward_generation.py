"""Text2Reward generation and checking (issue 8, section 2): the static checker on good and hostile programs,
extraction of the function from answers, prompts and few-shot selection, generation against the local
OpenAI-compatible server (distinct samples, bounded retries with the checker's message, records aligned with
samples, the cache), and the smoke test."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np
import pytest
from llm_server import OpenAICompatibleServer, local_settings

from embodied_rl.envs.task_descriptions import GOAL_TEXTS
from embodied_rl.llm import LLMClient
from embodied_rl.rewards.text2reward.abstraction import abstraction_for
from embodied_rl.rewards.text2reward.checker import ProgramRejected, check_program
from embodied_rl.rewards.text2reward.generation import (
    GenerationSettings,
    NoCodeFound,
    extract_program,
    generate_candidates,
    smoke_test,
)
from embodied_rl.rewards.text2reward.prompts import (
    generation_messages,
    load_examples,
    prompt_text,
    select_examples,
    similarity_ranking,
)

ATTRIBUTES = ("ee_position", "gripper_openness", "object_position", "goal_position")


@dataclass(frozen=True)
class StandInAbstraction:
    """The fields generation reads from an abstraction (`abstraction.Abstraction` has these too)."""

    text: str = "class Observation:\n    ee_position: np.ndarray  # (3,)\n    object_position: np.ndarray  # (3,)"
    attributes: tuple[str, ...] = ATTRIBUTES
    family: str = "metaworld"
    task: str = "metaworld/drawer-close-v3"


GOOD = """\
import numpy as np
import math
from math import exp

MARGIN = 0.05


def closeness(distance, scale=10.0):
    return 1.0 - np.tanh(scale * distance)


def compute_dense_reward(obs, action):
    \"\"\"Reach, then push.\"\"\"
    reach = np.linalg.norm(obs.ee_position - obs.object_position)
    goal = float(np.linalg.norm(obs.object_position[:2] - obs.goal_position[:2]))
    stages = [closeness(reach), closeness(goal) if reach < MARGIN else 0.0]
    bonus = 5.0 if goal < MARGIN and obs.gripper_openness < 0.5 else 0.0
    penalty = 0.01 * float(np.sum(np.square(action))) + 0.0 * exp(-goal) * math.pi
    total = 0.0
    for term in stages:
        total += term
    return float(total + bonus - penalty)
"""
MINIMAL = "def compute_dense_reward(obs, action):\n    return -abs(obs.goal_position[2] - obs.ee_position[2])\n"
LOOP = (
    "import numpy as np\n\ndef compute_dense_reward(obs, action):\n    x = obs.ee_position.copy()\n"
    "    while True:\n        x = x * 0.5\n        if np.max(np.abs(x)) < 1e-3:\n            break\n"
    "    return float(x.sum())\n"
)


def body(*lines: str) -> str:
    """A program whose function holds `lines` (line 3 is the first of them)."""
    return "import numpy as np\ndef compute_dense_reward(obs, action):\n" + "".join(f"    {x}\n" for x in lines)


# (program, a fragment its reasons must hold, the line they must name)
HOSTILE = {
    "import os": ("import os\n" + body("return 0.0"), "`import os` is not allowed", 1),
    "import numpy unaliased": ("import numpy\n" + body("return 0.0"), "`import numpy` is not allowed", 1),
    "from numpy import": (body("from numpy import save", "return 0.0"), "from numpy import", 3),
    "dunder attribute": (
        body("c = action.__class__", "return 0.0"),
        "`.__class__` is not allowed (no names starting",
        3,
    ),
    "dunder on obs": (body("c = obs.__dict__", "return 0.0"), "`.__dict__` is not allowed (no names starting", 3),
    "dunder chain": (body("return action.T.__class__.__mro__[1].__subclasses__()"), "`.__subclasses__` is not", 3),
    "dunder name": (body("return __builtins__", ""), "`__builtins__` has double underscores", 3),
    "__import__": (body("m = __import__('os')", "return 0.0"), "`__import__` is not allowed", 3),
    "getattr": (body("x = getattr(np, 'save')", "return 0.0"), "`getattr` is not allowed", 3),
    "eval": (body("return eval('1.0')"), "`eval` is not allowed", 3),
    "exec": (body("exec('x = 1')", "return 0.0"), "`exec` is not allowed", 3),
    "open": (body("open('/tmp/x', 'w').write('1')", "return 0.0"), "`open` is not allowed", 3),
    "globals": (body("g = globals()", "return 0.0"), "`globals` is not allowed", 3),
    "unknown attribute": (body("return float(obs.ee_positon[0])"), "did you mean `obs.ee_position`", 3),
    "assign obs attribute": (body("obs.goal_position = action[:3]", "return 0.0"), "read-only", 3),
    "assign obs item": (body("obs.goal_position[0] = 1.0", "return 0.0"), "read-only", 3),
    "augassign obs item": (body("obs.ee_position[:] += 1.0", "return 0.0"), "read-only", 3),
    "obs passed whole": (body("o = obs", "return 0.0"), "use `obs` only as `obs.<attribute>`", 3),
    "np.save": (body("np.save('/tmp/x', action)", "return 0.0"), "`np.save` is not allowed", 3),
    "np.load": (body("x = np.load('/tmp/x.npy')", "return 0.0"), "`np.load` is not allowed", 3),
    "np.lib": (body("x = np.lib.format", "return 0.0"), "`np.lib` is not allowed", 3),
    "tofile": (body("action.tofile('/tmp/x')", "return 0.0"), "`.tofile` is not allowed", 3),
    "format trick": (body("s = '{0.__class__}'.format(action)", "return 0.0"), "double underscores", 3),
    "out= keyword": (body("np.add(action, 1, out=action)", "return 0.0"), "`out=` is not allowed", 3),
    "global": (body("global X", "return 0.0"), "`global`", 3),
    "try": (body("try:", "    x = 1", "except Exception:", "    x = 0", "return 0.0"), "`try`", 3),
    "endless while": (body("while True:", "    pass", "return 0.0"), "never ends", 3),
    "top-level code": ("import numpy as np\nnp.zeros(3)\n" + body("return 0.0")[19:], "top level", 2),
    "missing function": ("def reward(obs, action):\n    return 0.0\n", "no top-level function", 1),
    "wrong signature": (body("return 0.0").replace("(obs, action)", "(obs)"), "signature must be exactly", 2),
    "syntax error": (body("return (0.0"), "syntax error", 3),
}


def test_checker_accepts_good_programs():
    program = check_program(GOOD, ATTRIBUTES)
    assert program.obs_attributes == ("ee_position", "goal_position", "gripper_openness", "object_position")
    assert program.helpers == ("closeness",)
    assert program.function_source.startswith("def compute_dense_reward(obs, action):")
    assert "linalg.norm" in program.numpy_names and "tanh" in program.numpy_names
    assert check_program(MINIMAL, ATTRIBUTES).obs_attributes == ("ee_position", "goal_position")
    assert check_program(LOOP, ATTRIBUTES).numpy_names == ("abs", "max")


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_checker_rejects_hostile_programs_with_a_reason_and_its_line(name):
    source, fragment, line = HOSTILE[name]
    with pytest.raises(ProgramRejected) as caught:
        check_program(source, ATTRIBUTES)
    reasons = caught.value.reasons
    assert any(fragment in reason and reason.startswith(f"line {line}:") for reason in reasons), reasons
    message = str(caught.value)
    assert message.startswith("The reward program was rejected") and all(reason in message for reason in reasons)


def test_examples_are_hand_written_and_valid_against_their_abstractions():
    examples = load_examples()
    assert len(examples) >= 5 and len({example.task for example in examples}) == len(examples)
    for example in examples:
        assert example.path.read_text().startswith("# Hand-written by embodied_rl's developers")
        assert "not model output" in example.path.read_text().splitlines()[0]
        check_program(example.code, abstraction_for(example.task).attributes)
        assert example.instruction == GOAL_TEXTS[example.task]


def test_extraction_from_answers():
    fenced = f"Here is my reward.\n```python\n{MINIMAL}```\nIt rewards height."
    assert extract_program(fenced) == MINIMAL
    helper = "```python\ndef helper(x):\n    return x\n```\n"
    several = f"First a helper:\n{helper}Then the reward:\n```py\n{MINIMAL}```\n```python\n{GOOD}```"
    assert extract_program(several) == MINIMAL  # the first block defining the function
    assert extract_program(MINIMAL) == MINIMAL  # a bare program is taken whole
    for answer, why in [
        ("I would reward the distance to the goal.", "no ```python code block"),
        (helper, "none of the 1 python code blocks"),
        (f"```python\n{MINIMAL}", "never closes"),
        (f"```json\n{MINIMAL}```", "no ```python code block"),
    ]:
        with pytest.raises(NoCodeFound) as caught:
            extract_program(answer)
        assert why in str(caught.value)


def test_prompts_and_few_shot_selection():
    examples = load_examples()
    instruction = GOAL_TEXTS["drawer-open-v3"]
    ranking = similarity_ranking(instruction, examples)
    assert ranking[0][1].task == "drawer-open-v3" and ranking[0][0] > ranking[1][0] > 0
    assert [score for score, _ in ranking] == sorted((score for score, _ in ranking), reverse=True)
    chosen = select_examples(instruction, examples, 2, "metaworld/drawer-open-v3")
    assert [example.task for example in chosen] == [example.task for _, example in ranking[1:3]]
    assert "drawer-open-v3" not in [
        example.task for example in select_examples(instruction, examples, 10, "drawer-open-v3")
    ]
    zero = prompt_text("Close the drawer.", "class Observation: ...")
    few = prompt_text("Close the drawer.", "class Observation: ...", chosen)
    assert "## Examples" not in zero and chosen[0].code.strip() in few
    for part in ("Close the drawer.", "class Observation", "success bonus", "## Rules", "```python", "obs, action"):
        assert part in zero
    assert generation_messages("x", "y")[0]["role"] == "system"


@dataclass
class Scripted:
    """Answers each request by its seed (the sample index) and how many follow-ups its conversation holds."""

    answers: dict[tuple[int, int], str]
    default: str = "no idea"
    seen: list[tuple[int, int]] = field(default_factory=list)

    def __call__(self, request) -> str:
        attempt = sum(message["role"] == "assistant" for message in request.messages)
        self.seen.append((request.body["seed"], attempt))
        return self.answers.get((request.body["seed"], attempt), self.default)


def fenced(code: str) -> str:
    return f"Sure.\n```python\n{code}```\n"


BAD = body("return float(obs.hand_position[0])")


def test_generation_samples_retries_records_and_cache(tmp_path):
    answers = {
        (0, 0): fenced(MINIMAL),  # accepted at once
        (1, 0): fenced(BAD),  # rejected, fixed by its follow-up
        (1, 1): fenced(GOOD),
        (2, 0): "I cannot write code today.",  # no block, then rejected, then out of retries
        (2, 1): fenced(BAD),
        (2, 2): fenced(BAD),
        (3, 0): fenced(GOOD),
    }
    settings = GenerationSettings(samples=4, temperature=0.9, max_retries=2)
    script = Scripted(answers)
    with OpenAICompatibleServer(answer=script) as server:
        client = LLMClient(local_settings(server, tmp_path))
        candidates = generate_candidates(client, "drawer-close-v3", "Shut the drawer.", settings, StandInAbstraction())
        first_round = server.bodies[:4]
        assert len({json.dumps(b["messages"]) for b in first_round}) == 1  # one prompt ...
        assert sorted(b["seed"] for b in first_round) == [0, 1, 2, 3]  # ... asked as 4 distinct requests
        assert all(b["temperature"] == 0.9 for b in server.bodies)
        assert server.requests == 4 + 2 + 1  # samples 1 and 2 get a follow-up; only sample 2 a second one
        assert sorted(script.seen) == sorted([(0, 0), (1, 0), (1, 1), (2, 0), (2, 1), (2, 2), (3, 0)])

        follow_up = next(b for b in server.bodies if b["seed"] == 1 and len(b["messages"]) > 2)
        assert follow_up["messages"][-2] == {"role": "assistant", "content": answers[(1, 0)]}
        assert "`obs.hand_position` is not an attribute" in follow_up["messages"][-1]["content"]
        assert "did you mean" in follow_up["messages"][-1]["content"]
        assert "line 3:" in follow_up["messages"][-1]["content"]

        assert [c.index for c in candidates] == [0, 1, 2, 3]
        assert [c.accepted for c in candidates] == [True, True, False, True]
        assert [len(c.attempts) for c in candidates] == [1, 2, 3, 1]
        assert candidates[0].code == MINIMAL and candidates[3].code == GOOD and candidates[1].code == GOOD
        assert [a.answer for a in candidates[2].attempts] == [answers[(2, i)] for i in range(3)]
        assert "no ```python code block" in candidates[2].attempts[0].problem
        assert candidates[2].attempts[0].code is None and candidates[2].code == BAD
        assert "obs.hand_position" in candidates[2].reason
        assert json.loads(json.dumps([c.to_dict() for c in candidates]))[2]["accepted"] is False

        server.reset()
        again = generate_candidates(client, "drawer-close-v3", "Shut the drawer.", settings, StandInAbstraction())
        assert server.requests == 0  # all answered from the cache
        assert [c.to_dict()["code"] for c in again] == [c.to_dict()["code"] for c in candidates]
        assert all(a.cached for c in again for a in c.attempts)


def test_retry_bound_holds_and_zero_retries(tmp_path):
    with OpenAICompatibleServer(answer=lambda request: fenced(BAD)) as server:
        client = LLMClient(local_settings(server, None))
        for retries in (0, 3):
            server.reset()
            settings = GenerationSettings(samples=2, max_retries=retries)
            candidates = generate_candidates(client, "push-v3", "Push it.", settings, StandInAbstraction())
            assert server.requests == 2 * (1 + retries)
            assert [len(c.attempts) for c in candidates] == [1 + retries] * 2 and not any(
                c.accepted for c in candidates
            )


def test_failed_request_keeps_alignment_and_few_shot_leaves_the_task_out(tmp_path):
    seen_prompts = []

    def answer(request):
        seen_prompts.append(request.body["messages"][1]["content"])
        return fenced(MINIMAL) if request.body["seed"] != 1 else "no code"

    with OpenAICompatibleServer(answer=answer) as server:
        client = LLMClient(local_settings(server, None, max_attempts=1))
        server.fail_next("server_error", times=1)  # the first request to arrive fails for good
        settings = GenerationSettings(samples=3, max_retries=0, few_shot=2)
        candidates = generate_candidates(client, "drawer-open-v3", GOAL_TEXTS["drawer-open-v3"], settings)
    failed = [c for c in candidates if c.attempts[0].answer is None]
    assert len(failed) == 1 and "the request failed" in failed[0].reason
    for candidate in candidates:
        assert candidate.index == candidates.index(candidate)
        if candidate.attempts[0].answer is not None:
            assert candidate.accepted == (candidate.index != 1)
            assert (candidate.code == MINIMAL) == (candidate.index != 1)
    drawer_open_code = next(e for e in load_examples() if e.task == "drawer-open-v3").code.strip()
    assert seen_prompts and all("## Examples" in p and drawer_open_code not in p for p in seen_prompts)
    assert abstraction_for("drawer-open-v3").text.strip() in seen_prompts[0]  # the task's own abstraction


def test_settings_validation():
    with pytest.raises(ValueError, match="generation.samples"):
        GenerationSettings(samples=0)
    with pytest.raises(ValueError, match="unknown text2reward generation config keys"):
        GenerationSettings.from_mapping({"sample": 3})


def test_smoke_test_on_rollouts():
    rng = np.random.default_rng(0)
    trajectories = [
        ([{"ee_position": rng.normal(size=3)} for _ in range(5)], rng.uniform(-1, 1, (5, 4))) for _ in range(3)
    ]
    fine = smoke_test(lambda snaps, actions: [-np.linalg.norm(s["ee_position"]) for s in snaps], trajectories)
    assert fine.ok and fine.steps == 15 and len(fine.seconds_per_call) == 3 and fine.seconds_per_step >= 0

    def nan_at_step_2(snaps, actions):
        return [math.nan if i == 2 else 0.0 for i in range(len(snaps))]

    report = smoke_test(nan_at_step_2, trajectories)
    assert not report.ok and "trajectory 0, step 2" in report.problem
    raised = smoke_test(lambda s, a: 1 / 0, trajectories)
    assert not raised.ok and "ZeroDivisionError" in raised.problem
    short = smoke_test(lambda s, a: [0.0], trajectories)
    assert not short.ok and "expected 5 rewards" in short.problem
