"""A local OpenAI-compatible endpoint standing in for a code-writing LLM when none can be reached. Its answers are
PROGRAMS HAND-WRITTEN BY EMBODIED_RL'S DEVELOPERS (by default the few-shot examples in configs/text2reward/examples/),
not model output: a generation request for task T (the prompt's line "Task T.") is answered with <programs>/T.py in
one ```python block, headed by a comment that says so. A task without a program gets an answer with no code (the
pipeline reports "no code block"); a refinement request gets the same program back.

    python scripts/stand_in_reward_code.py --port 8012
    # prints http://127.0.0.1:8012/v1; in another shell (llm.cache_dir keeps the answers for an offline replay):
    python scripts/train.py experiment=text2reward env.task=metaworld/reach-v3 \
        llm.base_url=http://127.0.0.1:8012/v1 llm.model=stand-in llm.cache_dir=runs/stand_in_code_answers

Serves until Ctrl-C (exit status 0), then prints how many requests it answered per task. See docs/text2reward.md.
"""

from __future__ import annotations

import argparse
import re
import signal
import sys
from collections import Counter
from pathlib import Path

from embodied_rl import cli

PREFIX = "[stand_in_reward_code] "
STAND_IN_HEADER = "# Hand-written by embodied_rl's developers as a stand-in for a model's answer; not model output."
DEFAULT_PROGRAMS = Path(__file__).resolve().parents[1] / "configs" / "text2reward" / "examples"


def program_for(task: str, programs: Path) -> str | None:
    """The program of `task` (e.g. "reach-v3") without its header comments, or None."""
    path = programs / f"{task}.py"
    if not path.is_file():
        return None
    lines = path.read_text().splitlines()
    start = next((i for i, line in enumerate(lines) if not line.startswith("#")), len(lines))
    return "\n".join(lines[start:]).strip() + "\n"


def answer_for(prompt: str, programs: Path, counts: Counter) -> str:
    """The stand-in's answer to a request whose conversation text is `prompt`."""
    tasks = re.findall(r"^Task (\S+)\.$", prompt, flags=re.MULTILINE)
    task = tasks[0] if tasks else "?"
    counts[task] += 1
    code = program_for(task, programs) if tasks else None
    if code is None:
        return f"(stand-in) no hand-written program for task {task}."
    return f"```python\n{STAND_IN_HEADER}\n{code}```\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--programs", type=Path, default=DEFAULT_PROGRAMS, help="folder of <task>.py programs")
    parser.add_argument("--port", type=cli.number(int, "[0, 65535]"), default=0, help="0: a free port")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from embodied_rl.llm.local_server import OpenAICompatibleServer

    if not args.programs.is_dir():
        sys.exit(f"error: --programs {args.programs} is not a folder")
    counts: Counter = Counter()

    def answer(request) -> str:
        conversation = "\n".join(str(m.get("content", "")) for m in request.body.get("messages", []))
        return answer_for(conversation, args.programs, counts)

    stop = {"now": False}
    signal.signal(signal.SIGINT, lambda *_: stop.update(now=True))
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    with OpenAICompatibleServer(answer=answer, port=args.port) as server:
        print(server.url, flush=True)
        print(f"{PREFIX}answering with the hand-written programs in {args.programs}", file=sys.stderr, flush=True)
        while not stop["now"]:
            signal.pause()
    print(f"{PREFIX}answered {dict(counts)}", file=sys.stderr)


if __name__ == "__main__":
    main()
