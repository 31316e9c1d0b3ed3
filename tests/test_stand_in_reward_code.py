"""The stand-in for a code-writing LLM (scripts/stand_in_reward_code.py): a generation prompt for a task is answered
with that task's hand-written program, marked as not model output, which the checker accepts; a task without a
program gets an answer with no code."""

from __future__ import annotations

import importlib.util
from collections import Counter
from pathlib import Path

from embodied_rl.rewards.text2reward import abstraction_for
from embodied_rl.rewards.text2reward.generation import judge
from embodied_rl.rewards.text2reward.prompts import generation_messages

ROOT = Path(__file__).resolve().parents[1]


def load_script():
    spec = importlib.util.spec_from_file_location("stand_in_reward_code", ROOT / "scripts" / "stand_in_reward_code.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def prompt_for(task: str) -> str:
    abstraction = abstraction_for(task)
    return "\n".join(m["content"] for m in generation_messages("Do the task.", abstraction.text))


def test_a_task_with_a_program_is_answered_with_it_marked_as_ours():
    script, counts = load_script(), Counter()
    answer = script.answer_for(prompt_for("metaworld/drawer-open-v3"), script.DEFAULT_PROGRAMS, counts)
    code, program, problem = judge(answer, abstraction_for("metaworld/drawer-open-v3").attributes)
    assert problem is None and program is not None
    assert code.startswith(script.STAND_IN_HEADER) and "not model output" in code
    assert script.program_for("drawer-open-v3", script.DEFAULT_PROGRAMS).strip() in code
    assert counts == {"drawer-open-v3": 1}


def test_a_task_without_a_program_gets_no_code():
    script, counts = load_script(), Counter()
    answer = script.answer_for(prompt_for("metaworld/soccer-v3"), script.DEFAULT_PROGRAMS, counts)
    _, program, problem = judge(answer, abstraction_for("metaworld/soccer-v3").attributes)
    assert program is None and "soccer-v3" in answer and problem


def test_the_recorded_stand_in_answers_replay_offline(tmp_path):
    """The pipeline end to end on the recorded answers, with no endpoint: the program trained on is the stand-in's
    (hand-written, marked as such). Fails when the generation prompt changes (re-record: the fixture's README)."""
    from script_helpers import train_in_process
    from test_text2reward_pipeline import t2r_args

    fixtures = ROOT / "tests" / "fixtures" / "text2reward_stand_in"
    run_dir = tmp_path / "run"
    replay = ["llm=replay", f"llm.replay_dir={fixtures}", "llm.model=stand-in", "llm.cache_dir=null"]
    assert train_in_process(t2r_args(run_dir, *replay))["steps"] == 60
    program = (run_dir / "text2reward" / "program.py").read_text()
    script = load_script()
    assert program.startswith(script.STAND_IN_HEADER)
    assert script.program_for("reach-v3", script.DEFAULT_PROGRAMS).strip() in program
