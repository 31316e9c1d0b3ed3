"""Check that the commands in README.md and docs/*.md still work as written.

    python scripts/check_docs.py                       # static check of README.md and docs/*.md (the default, CI)
    python scripts/check_docs.py --run                 # also run every runnable command at tiny budgets
    python scripts/check_docs.py docs/training.md -v   # some files; -v prints each command's result

What is checked, from the ```bash and ```python blocks (and, statically, from inline `python scripts/...` and
`bash scripts/...` code spans in the text):
- `python scripts/train.py` / `collect.py` (Hydra): the script exists, its flags are Hydra's, the overrides parse,
  and the config composes with them (Hydra's compose API: a misspelt key, a missing experiment or group option
  is an error), for every value of a sweep (`-m seed=1,2,3 env.task=a,b`); `env.task` names a known task.
- `python scripts/<argparse script>`: the script exists, every `--flag` is in its `--help` (of the subcommand
  for make_datasets.py), values of flags with choices are among them, task names are known; evaluate.py's
  `key=value` overrides compose like train.py's.
- `bash scripts/<script>.sh`: the script exists and parses (`bash -n`), every `VAR=...` set before it is read
  by it, and test.sh's pytest arguments name existing files and known markers.
- other programs (`tensorboard`): found on the PATH (the virtualenv's bin first).
- ```python blocks: they compile and every name they import exists.
- links between the pages: relative links point to existing files, `#anchors` to existing headings.

With --run, commands are also executed, in a scratch directory that holds links to scripts/ and configs/ (so
`runs/...`, `outputs/` and datasets land there, `$MINARI_DATASETS_PATH` included), docs/data.md and
docs/datasets.md first (added when not given: they build the datasets and the SAC run that other pages use), each
command with tiny-budget overrides appended (BUDGETS below; a train.py run without `resume=true`
also gets `overwrite=true`, sweeps keep only their first value). The python blocks of a page run in one
interpreter, in order, as a reader would run them (RUN_REWRITES shrink their budgets). Commands that need what
is not here (a GPU, a Slurm cluster, a long-trained run, a placeholder path, the set-up of a shell script) are
checked statically only; the summary says which and why. Exit status 1 when a check fails.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / "configs"
HYDRA_SCRIPTS = {"scripts/train.py": "config", "scripts/collect.py": "collect"}
HYDRA_FLAGS = {
    "-m": False,
    "--multirun": False,
    "-h": False,
    "--help": False,
    "--hydra-help": False,
    "--version": False,
    "-c": True,
    "--cfg": True,
    "--resolve": False,
    "-p": True,
    "--package": True,
    "-i": True,
    "--info": True,
}
PYTHONS = {"python", "python3", ".venv/bin/python", ".venv/bin/python3"}
SHELL_OPERATORS = {"|", "||", "&&", ";", "&", ">", ">>", "<", "(", ")"}
TASK_FLAGS = {"--task", "--tasks", "--scripted"}
# Variables that act on the programs a script starts, not read by the script itself.
GENERIC_ENV = {"OMP_NUM_THREADS", "MKL_NUM_THREADS", "MUJOCO_GL", "CUDA_VISIBLE_DEVICES", "MINARI_DATASETS_PATH"}
# Pages whose commands build what other pages' commands use (datasets, the Hopper SAC run): run first with --run.
RUN_FIRST = ("docs/data.md", "docs/datasets.md")

# --run: overrides appended to each script's command (replacing the command's own value for the same key/flag).
# Hydra keys are appended only where the composed config has them (online: total_steps, offline: total_updates).
BUDGETS: dict[str, dict[str, str]] = {
    "scripts/train.py": {
        "trainer.total_steps": "300",
        "trainer.seed_steps": "100",
        "trainer.total_updates": "60",
        "trainer.batch_size": "64",
        "trainer.replay_size": "2000",
        "trainer.log_every": "50",
        "trainer.eval_episodes": "1",
        "trainer.eval_videos": "0",
        "trainer.progress": "false",
        "env.time_limit": "50",
        "ssorl.idm.steps": "40",
        "ssorl.idm.eval_every": "20",
        "ssorl.idm.progress": "false",
        "vlm_iql.labelling.num_pairs": "8",
        "vlm_iql.reward.steps": "4",
        "vlm_iql.reward.eval_every": "2",
        "vlm_iql.dataset_episodes": "2",
        "vlm_iql.frames": "32",
        "env.shadows": "false",
        "agent.cnn_depth": "4",  # RePo's networks (the keys exist only in agent=repo runs)
        "agent.embed_dim": "64",
        "agent.deter_dim": "16",
        "agent.stoch_dim": "4",
        "agent.hidden_dim": "16",
        "repo.seq_len": "8",
        "repo.test_episodes": "1",
        "repo.test_videos": "0",
        "repo_adapt.env_steps": "40",
        "repo_adapt.collect_every": "20",
        "repo_adapt.updates_per_collect": "1",
        "repo_adapt.source_collect_steps": "20",
        "repo_adapt.eval_episodes": "1",
        "repo_adapt.eval_videos": "0",
        "repo_adapt.adaptation.batch_size": "8",
        "repo_adapt.adaptation.paired_batch_size": "8",
        # eval_every / checkpoint_every: a third of the run (set in budget_overrides), so that
        # make_datasets.py finds several evaluated checkpoints
    },
    "scripts/collect.py": {
        "episodes": "2",
        "reference.episodes": "1",
        "env.time_limit": "50",
        "overwrite": "true",
        "progress": "false",
    },
    "scripts/make_datasets.py metaworld": {
        "--episodes": "7",
        "--time-limit": "50",
        "--reference-episodes": "1",
        "--overwrite": "",
        "--no-progress": "",
    },
    "scripts/make_datasets.py mujoco": {
        "--episodes": "2",
        "--reference-episodes": "1",
        "--overwrite": "",
        "--no-progress": "",
    },
    "scripts/evaluate.py": {"--episodes": "1", "--videos": "1", "--video-size": "64", "env.time_limit": "50"},
    "scripts/benchmark.py": {
        "--env-steps": "50",
        "--updates": "3",
        "--pixel-updates": "1",
        "--repeats": "1",
        "--batch-size": "32",
        "--devices": "cpu",
        "--out": "benchmark.json",
    },
    "scripts/plot.py": {},
    "scripts/summarize.py": {},
}
# --run: rewrites of the python blocks' budgets (regex, replacement).
RUN_REWRITES = [
    (r"IDMConfig\(steps=[\d_]+\)", "IDMConfig(steps=40)"),
    (r"SSORLConfig\(window=(\d+)\)", r"SSORLConfig(window=\1, idm=IDMConfig(steps=40))"),
]
RUN_TIMEOUT_S = 900


# ----------------------------------------------------------------------------------------------- extraction


@dataclass
class Command:
    """One command (or python block) of a page: where it is, how it was given, its text."""

    file: str  # path relative to the repository root, or as given when outside it
    line: int
    kind: str  # bash | python | inline
    text: str

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    @property
    def short(self) -> str:
        text = re.sub(r"\s#\s.*$", "", " ".join(self.text.split())) if self.kind != "python" else "```python block"
        return text if len(text) <= 110 else text[:107] + "..."


@dataclass
class Result:
    command: Command
    errors: list[str] = field(default_factory=list)
    static_only: str | None = None  # why the command is not run with --run
    notes: list[str] = field(default_factory=list)
    ran: bool = False
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.errors


FENCE = re.compile(r"^(\s*)(```+|~~~+)\s*([\w+-]*)[^\n]*$")


def split_fences(text: str) -> tuple[list[tuple[str, int, str]], str]:
    """(language, first line number of the body, body) of each fenced block, and the text with every fenced
    block blanked (newlines kept, so line numbers still count)."""
    blocks, prose, lines = [], [], text.split("\n")
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            prose.append(lines[i])
            i += 1
            continue
        marker, lang, start = match.group(2), match.group(3).lower(), i + 1
        j = start
        while j < len(lines) and not lines[j].strip().startswith(marker[:3]):
            j += 1
        blocks.append((lang, start + 1, "\n".join(lines[start:j])))
        prose.extend([""] * (min(j, len(lines) - 1) - i + 1))
        i = j + 1
    return blocks, "\n".join(prose)


def logical_lines(body: str, first_line: int) -> list[tuple[int, str]]:
    """Shell lines of a block with backslash continuations joined, and their line numbers."""
    out, pending, start = [], "", first_line
    for offset, line in enumerate(body.split("\n")):
        if not pending:
            start = first_line + offset
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        out.append((start, pending + line))
        pending = ""
    if pending:
        out.append((start, pending))
    return out


INLINE_COMMAND = re.compile(r"^(?:[A-Z_][A-Z0-9_]*=\S+\s+)*(?:python3?|\.venv/bin/python3?|bash)\s+scripts/")


def extract(path: Path) -> list[Command]:
    """The commands of one page: each shell line of its bash blocks, each python block, and the inline code
    spans that are script commands."""
    name = display_name(path)
    text = path.read_text(encoding="utf-8")
    blocks, prose = split_fences(text)
    commands = []
    for lang, first, body in blocks:
        if lang in ("bash", "sh", "shell", "console"):
            for line_no, line in logical_lines(body, first):
                if line.strip() and not line.strip().startswith("#"):
                    commands.append(Command(name, line_no, "bash", line.strip()))
        elif lang in ("python", "py"):
            commands.append(Command(name, first, "python", body))
    for match in re.finditer(r"(?<!`)`([^`]+)`(?!`)", prose):
        span = " ".join(match.group(1).split())
        if INLINE_COMMAND.match(span):
            commands.append(Command(name, prose.count("\n", 0, match.start()) + 1, "inline", span))
    commands.sort(key=lambda c: c.line)
    return commands


def display_name(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def default_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


# ----------------------------------------------------------------------------------------------- parsing


@dataclass
class Parsed:
    """A shell command split into its parts."""

    env: dict[str, str]
    program: str
    script: str | None  # scripts/x.py or scripts/x.sh, relative to the repository root
    args: list[str]
    placeholders: list[str]  # tokens that stand for something to fill in (`...`, `<task>`, RUN_DIR)


def is_placeholder(token: str) -> bool:
    return "..." in token or bool(re.search(r"<[\w -]+>", token))


def parse_shell(text: str, prose: bool = False) -> Parsed:
    """Environment assignments, program, script and arguments of one shell command; ValueError when it uses
    shell syntax this checker does not follow (pipes, lists, redirections) or does not parse. In `prose` (an
    inline code span) `<`, `>` and `|` are notation (`<task>`, `a|b`), not shell operators."""
    try:
        if prose:
            tokens = shlex.split(text, comments=True)
        else:
            lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            lexer.commenters = "#"
            tokens = list(lexer)
    except ValueError as err:
        raise ValueError(f"does not parse as a shell command: {err}") from err
    operators = [t for t in tokens if t in SHELL_OPERATORS]
    if operators:
        raise ValueError(f"shell operators {operators} (one plain command per line, please)")
    env = {}
    while tokens and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", tokens[0]):
        key, _, value = tokens.pop(0).partition("=")
        env[key] = value
    if not tokens:
        raise ValueError("no command after the variable assignments")
    program, args = tokens[0], tokens[1:]
    script = None
    if program in PYTHONS or program == "bash":
        if args and not args[0].startswith("-"):
            script = args.pop(0)
            if script.startswith("./"):
                script = script[2:]
    placeholders = [t for t in [script or "", *args] if t and is_placeholder(t)]
    return Parsed(env, program, script, args, placeholders)


# ----------------------------------------------------------------------------------------------- static checks


class Checker:
    """Static checks, with the caches they share (script help texts, Hydra)."""

    def __init__(self) -> None:
        self._help: dict[tuple[str, str], tuple[dict[str, tuple[bool, list[str] | None]], list[str]] | str] = {}
        self._imports: dict[str, str | None] = {}

    # -- Hydra

    def compose(self, config_name: str, overrides: list[str]):
        """The composed config (hydra keys included), or raise with Hydra's message."""
        from hydra import compose, initialize_config_dir

        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            return compose(config_name, overrides=overrides, return_hydra_config=True)

    def hydra_variants(self, overrides: list[str], multirun: bool) -> list[list[str]]:
        """The override lists to compose: the first value of every sweep, then each other value of each sweep
        with the first values of the rest (every value composed once, not the whole product)."""
        from hydra.core.override_parser.overrides_parser import OverridesParser

        parsed = OverridesParser.create().parse_overrides(overrides)
        sweeps = {}
        for index, override in enumerate(parsed):
            if override.is_sweep_override():
                if not multirun:
                    raise ValueError(f"'{overrides[index]}' is a sweep: it needs -m (--multirun)")
                values = list(override.sweep_string_iterator())
                sweeps[index] = [f"{override.get_key_element()}={value}" for value in values]
        base = [sweeps[i][0] if i in sweeps else o for i, o in enumerate(overrides)]
        variants = [base]
        for index, options in sweeps.items():
            for option in options[1:]:
                variants.append([option if i == index else o for i, o in enumerate(base)])
        return variants

    def check_hydra(self, script: str, args: list[str], result: Result) -> None:
        flags = [a for a in args if a.startswith("-")]
        multirun = any(f in ("-m", "--multirun") for f in flags)
        for flag in flags:
            if flag.split("=")[0] not in HYDRA_FLAGS:
                result.errors.append(f"{flag}: not a flag of {script} (Hydra's: {', '.join(sorted(HYDRA_FLAGS))})")
        overrides = [a for a in args if not a.startswith("-") and not is_placeholder(a)]
        overrides = [expand_alternatives(o)[0] for o in overrides]  # inline `key=a|b`: checked below
        alternatives = [v for a in args if not a.startswith("-") for v in expand_alternatives(a)[1:]]
        try:
            variants = self.hydra_variants(overrides, multirun)
        except Exception as err:  # noqa: BLE001  (Hydra's parser raises several kinds)
            result.errors.append(f"overrides do not parse: {first_line(err)}")
            return
        for alternative in alternatives:
            variants.append([*variants[0], alternative])
        for variant in variants:
            try:
                cfg = self.compose(HYDRA_SCRIPTS[script], variant)
            except Exception as err:  # noqa: BLE001
                result.errors.append(f"config does not compose ({' '.join(variant)}): {hydra_message(err)}")
                continue
            task = cfg.get("env", {}).get("task") if "env" in cfg else None
            from embodied_rl import UNKNOWN_RUN_TASK

            from_run = str(task) == UNKNOWN_RUN_TASK and any(o.startswith("checkpoint=") for o in variant)
            if task is not None and not from_run:  # a checkpoint= run's task is that of a run the docs make first
                self.check_task(str(task), result)

    def check_task(self, task: str, result: Result) -> None:
        from embodied_rl.envs.tasks import UnknownTaskError, canonical_task

        for name in task.split(","):
            if is_placeholder(name):
                continue
            try:
                canonical_task(name)
            except UnknownTaskError as err:
                result.errors.append(f"task {name!r}: {first_line(err)}")

    # -- argparse scripts

    def help_of(self, script: str, subcommand: str = "") -> tuple[dict[str, tuple[bool, list[str] | None]], list[str]]:
        """{flag: (takes a value, choices)} and the subcommands, from `python script [sub] --help`."""
        key = (script, subcommand)
        if key not in self._help:
            argv = [sys.executable, str(ROOT / script), *([subcommand] if subcommand else []), "--help"]
            proc = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, env=child_env(), timeout=300)
            if proc.returncode != 0:
                self._help[key] = f"`{script} {subcommand} --help` failed: {last_lines(proc.stderr)}"
            else:
                self._help[key] = parse_help(proc.stdout)
        value = self._help[key]
        if isinstance(value, str):
            raise RuntimeError(value)
        return value

    def prefetch_help(self, commands: list[tuple[str, str]]) -> None:
        """Run the --help of several scripts two at a time."""
        todo = sorted(set(commands) - set(self._help))
        with ThreadPoolExecutor(max_workers=2) as pool:
            list(pool.map(lambda k: self._safe_help(*k), todo))

    def _safe_help(self, script: str, subcommand: str) -> None:
        try:
            self.help_of(script, subcommand)
        except Exception:  # noqa: BLE001  (reported when the command is checked)
            pass

    def check_argparse(self, script: str, args: list[str], result: Result) -> None:
        try:
            flags, subcommands = self.help_of(script)
            subcommand = ""
            if subcommands:
                positional = [a for a in args if not a.startswith("-")]
                if not positional or positional[0] not in subcommands:
                    result.errors.append(f"{script} needs a subcommand: {', '.join(subcommands)}")
                    return
                subcommand = positional[0]
                args = list(args)
                args.remove(subcommand)
                flags, _ = self.help_of(script, subcommand)
        except RuntimeError as err:
            result.errors.append(str(err))
            return
        overrides = []
        i = 0
        while i < len(args):
            arg = args[i]
            if arg.startswith("-") and arg != "-":
                flag, has_inline, inline_value = arg.partition("=")
                if flag not in flags:
                    result.errors.append(f"{flag}: not a flag of {script} {subcommand}".rstrip())
                    i += 1
                    continue
                takes_value, choices = flags[flag]
                value = None
                if takes_value:
                    value = inline_value if has_inline else (args[i + 1] if i + 1 < len(args) else None)
                    i += 0 if has_inline else 1
                    if value is None:
                        result.errors.append(f"{flag} needs a value")
                if value is not None and not is_placeholder(value):
                    for alternative in value.split("|"):
                        if choices and alternative not in choices:
                            result.errors.append(f"{flag} {alternative}: not one of {', '.join(choices)}")
                    if flag in TASK_FLAGS:
                        self.check_task(value, result)
            elif "=" in arg and script == "scripts/evaluate.py" and not is_placeholder(arg):
                overrides.append(arg)
            i += 1
        if overrides:  # evaluate.py: overrides of the run's config, the keys of train.py's
            for variant in [[expand_alternatives(o)[0] for o in overrides]] + [
                [*[expand_alternatives(o)[0] for o in overrides], alt]
                for o in overrides
                for alt in expand_alternatives(o)[1:]
            ]:
                try:
                    self.compose("config", variant)
                except Exception as err:  # noqa: BLE001
                    result.errors.append(f"override(s) {' '.join(variant)} do not compose: {hydra_message(err)}")

    # -- shell scripts

    def check_shell_script(self, parsed: Parsed, result: Result) -> None:
        path = ROOT / parsed.script
        proc = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
        if proc.returncode != 0:
            result.errors.append(f"bash -n {parsed.script}: {last_lines(proc.stderr)}")
        text = path.read_text(encoding="utf-8")
        for var in parsed.env:
            if var not in GENERIC_ENV and not re.search(rf"\${{?{var}\b", text):
                result.errors.append(f"{var}=...: {parsed.script} never reads ${var}")
        if parsed.script == "scripts/test.sh":
            self.check_pytest_args(parsed.args, result)

    def check_pytest_args(self, args: list[str], result: Result) -> None:
        markers = set(re.findall(r'^\s*"(\w+):', (ROOT / "pyproject.toml").read_text(), flags=re.M))
        i = 0
        while i < len(args):
            arg = args[i]
            if arg == "-m" and i + 1 < len(args):
                words = set(re.findall(r"\w+", args[i + 1])) - {"and", "or", "not"}
                for unknown in sorted(words - markers):
                    result.errors.append(f"-m {args[i + 1]}: no marker {unknown!r} in pyproject.toml")
                i += 2
                continue
            if not arg.startswith("-") and not (ROOT / arg.split("::")[0]).exists():
                result.errors.append(f"{arg}: no such test file")
            i += 1

    # -- python blocks

    def check_python(self, source: str, result: Result) -> None:
        try:
            tree = ast.parse(source)
        except SyntaxError as err:
            result.errors.append(f"does not compile: {err.msg} (block line {err.lineno})")
            return
        if "LLMClient(" in source and not re.search(r"replay|OpenAICompatibleServer", source):
            result.static_only = "needs an LLM / VLM endpoint"
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    self.check_import(alias.name, None, result)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                for alias in node.names:
                    self.check_import(node.module, alias.name, result)

    def check_import(self, module: str, name: str | None, result: Result) -> None:
        key = f"{module}:{name}"
        if key not in self._imports:
            error = None
            try:
                imported = importlib.import_module(module)
                if name is not None and name != "*" and not hasattr(imported, name):
                    try:
                        importlib.import_module(f"{module}.{name}")
                    except ImportError:
                        error = f"`from {module} import {name}`: {module} has no {name}"
            except Exception as err:  # noqa: BLE001  (any import failure is the finding)
                error = f"`import {module}` fails: {type(err).__name__}: {first_line(err)}"
            self._imports[key] = error
        if self._imports[key]:
            result.errors.append(self._imports[key])

    # -- one command

    def check(self, command: Command) -> Result:
        result = Result(command)
        if command.kind == "python":
            self.check_python(command.text, result)
            return result
        try:
            parsed = parse_shell(command.text, prose=command.kind == "inline")
        except ValueError as err:
            result.errors.append(f"cannot parse: {err}")
            return result
        if parsed.script is not None:
            self.check_script_command(parsed, result)
        elif parsed.program in PYTHONS or parsed.program == "bash":
            result.errors.append(f"{parsed.program} without a script")
        else:
            path = os.pathsep.join([str(ROOT / ".venv" / "bin"), os.environ.get("PATH", "")])
            if shutil.which(parsed.program, path=path) is None:
                result.errors.append(f"{parsed.program}: not found on the PATH (nor in .venv/bin)")
            result.static_only = "not a script of this repository (only found on the PATH)"
        if result.static_only is None:
            result.static_only = run_blocker(command, parsed)
        return result

    def check_script_command(self, parsed: Parsed, result: Result) -> None:
        script = parsed.script
        if is_placeholder(script):
            result.notes.append("placeholder script path, not checked")
            result.static_only = "placeholder"
            return
        if not (ROOT / script).is_file():
            result.errors.append(f"{script}: no such file")
            return
        if script.endswith(".sh"):
            self.check_shell_script(parsed, result)
        elif script in HYDRA_SCRIPTS:
            self.check_hydra(script, parsed.args, result)
        elif script.endswith(".py"):
            self.check_argparse(script, parsed.args, result)
        else:
            result.errors.append(f"{script}: neither a .py nor a .sh script")


def expand_alternatives(arg: str) -> list[str]:
    """`key=a|b` (an inline "either" in the text) -> [`key=a`, `key=b`]; anything else -> [arg]."""
    key, eq, value = arg.partition("=")
    if not eq or "|" not in value or value.startswith(("'", '"', "[", "{")):
        return [arg]
    return [f"{key}={v}" for v in value.split("|")]


def parse_help(text: str) -> tuple[dict[str, tuple[bool, list[str] | None]], list[str]]:
    """Flags (with whether they take a value and their choices) and subcommands of an argparse --help."""
    flags: dict[str, tuple[bool, list[str] | None]] = {}
    in_options = False
    for line in text.split("\n"):
        if re.match(r"^(options|optional arguments|[\w ]+ arguments):\s*$", line):
            in_options = True
            continue
        if in_options and re.match(r"^\s{1,4}-", line):
            spec = re.split(r"\s{2,}", line.strip())[0]
            for part in spec.split(", "):
                match = re.match(r"^(-{1,2}[\w][\w-]*)(?:[ =](.+))?$", part.strip())
                if match:
                    metavar = match.group(2)
                    choices = None
                    if metavar and metavar.startswith("{"):
                        choices = metavar.strip("{}").split(",")
                    flags[match.group(1)] = (metavar is not None, choices)
    usage = text.split("\n\n")[0]
    subcommands: list[str] = []
    match = re.search(r"\{([\w,-]+)\} \.\.\.", usage)
    if match:
        subcommands = match.group(1).split(",")
    return flags, subcommands


def run_blocker(command: Command, parsed: Parsed) -> str | None:
    """Why the command is checked statically only (None: --run executes it)."""
    if command.kind == "inline":
        return "inline in the text (a reproduction command or a fragment)"
    if parsed.placeholders:
        return f"placeholder {parsed.placeholders[0]!r}"
    if parsed.script and parsed.script.endswith(".sh"):
        return "shell script (runs scripts/setup.sh and long jobs)"
    args = " ".join(parsed.args)
    if re.search(r"(^|\s)device=cuda|--devices \S*cuda|gpu_check", args) and not cuda_available():
        return "needs a GPU"
    if "hydra/launcher=slurm" in args:
        return "needs a Slurm cluster"
    vlm_arm = "experiment=vlm_iql" in args and not re.search(r"vlm_iql\.arm=(scripted|env_reward)", args)
    if re.search(r"llm\.base_url=|--base-url", args) or vlm_arm:
        return "needs an LLM / VLM endpoint"
    if parsed.script and parsed.script not in BUDGETS and not parsed.script.startswith("scripts/make_datasets"):
        return f"no tiny budget known for {parsed.script}"
    return None


def cuda_available() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except ImportError:
        return False


def hydra_message(err: BaseException) -> str:
    text = str(err).strip()
    text = text.split("\nConfig search path")[0]
    return " / ".join(" ".join(line.split()) for line in text.split("\n") if line.strip()) if text else repr(err)


def first_line(err: BaseException) -> str:
    return (str(err).strip().split("\n") or [repr(err)])[0]


def last_lines(text: str, n: int = 3) -> str:
    return " / ".join(line for line in text.strip().split("\n")[-n:])


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("MUJOCO_GL", "osmesa")
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.update(extra or {})
    return env


# ----------------------------------------------------------------------------------------------- links


def slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", lambda m: m.group(1) or "", heading.strip()).lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    _, prose = split_fences(path.read_text(encoding="utf-8"))
    found, seen = set(), {}
    for match in re.finditer(r"^#{1,6}\s+(.+?)\s*#*\s*$", prose, flags=re.M):
        base = slug(match.group(1))
        count = seen.get(base, 0)
        found.add(base if count == 0 else f"{base}-{count}")
        seen[base] = count + 1
    return found


def check_links(path: Path) -> list[Result]:
    """One result per broken relative link or anchor of a page."""
    _, prose = split_fences(path.read_text(encoding="utf-8"))
    prose = re.sub(r"`[^`]*`", lambda m: " " * len(m.group(0)), prose)
    results = []
    for match in re.finditer(r"!?\[[^\]]*\]\(([^)\s]+)\)", prose):
        target = match.group(1)
        if re.match(r"^[a-z]+:", target):
            continue
        file_part, _, anchor = target.partition("#")
        target_path = (path.parent / file_part).resolve() if file_part else path
        command = Command(display_name(path), prose.count("\n", 0, match.start()) + 1, "link", target)
        result = Result(command, static_only="link")
        if not target_path.exists():
            result.errors.append(f"link to {target}: no such file")
        elif anchor and target_path.suffix == ".md" and anchor not in anchors(target_path):
            result.errors.append(f"link to {target}: no heading with anchor #{anchor} in {display_name(target_path)}")
        if result.errors:
            results.append(result)
    return results


# ----------------------------------------------------------------------------------------------- --run


def budget_overrides(script: str, args: list[str], checker: Checker) -> list[str]:
    """The command's arguments with the tiny budget of BUDGETS: the same keys / flags replaced, the rest
    appended; sweeps reduced to their first value."""
    if script in HYDRA_SCRIPTS:
        multirun = any(a in ("-m", "--multirun") for a in args)
        flags = [a for a in args if a.startswith("-")]
        overrides = checker.hydra_variants([a for a in args if not a.startswith("-")], multirun)[0]
        cfg = checker.compose(HYDRA_SCRIPTS[script], overrides)
        budget = {k: v for k, v in BUDGETS[script].items() if has_key(cfg, k)}
        if script == "scripts/train.py":
            total = budget.get("trainer.total_steps") or budget.get("trainer.total_updates")
            third = str(max(int(total) // 3, 1))
            budget.update({"trainer.eval_every": third, "trainer.checkpoint_every": third})
            if not any(o.startswith(("resume=true", "overwrite=true")) for o in overrides):
                budget["overwrite"] = "true"
        kept = [o for o in overrides if o.split("=")[0] not in budget]
        return flags + kept + [f"{k}={v}" for k, v in budget.items()]
    positional = [a for a in args if not a.startswith("-")]
    key = f"{script} {positional[0]}" if script == "scripts/make_datasets.py" and positional else script
    budget = dict(BUDGETS.get(key, {}))
    out, i = [], 0
    takes_value = {}
    try:
        flags, _ = checker.help_of(script, positional[0] if key != script else "")
        takes_value = {f: v[0] for f, v in flags.items()}
    except (RuntimeError, IndexError):
        pass
    while i < len(args):
        arg = args[i]
        name = arg.split("=")[0]
        if arg.startswith("-") and name in budget:
            i += 1 if "=" in arg or not takes_value.get(name, False) else 2
            continue
        if not arg.startswith("-") and "=" in arg and name in budget:
            i += 1
            continue
        out.append(arg)
        i += 1
    for flag, value in budget.items():
        if flag.startswith("-"):
            out.extend([flag, value] if value else [flag])
        else:
            out.append(f"{flag}={value}")
    return out


def has_key(cfg, dotted: str) -> bool:
    node = cfg
    for part in dotted.split("."):
        if not hasattr(node, "keys") or part not in node:
            return False
        node = node[part]
    return True


class Sandbox:
    """A scratch directory where the commands run: links to scripts/ and configs/, its own datasets folder."""

    def __init__(self, keep: bool) -> None:
        self.path = Path(tempfile.mkdtemp(prefix="check_docs_"))
        self.keep = keep
        for name in ("scripts", "configs", "pyproject.toml"):
            (self.path / name).symlink_to(ROOT / name)
        (self.path / "datasets").mkdir()
        self.env = child_env({"MINARI_DATASETS_PATH": str(self.path / "datasets")})

    def close(self) -> None:
        if self.keep:
            print(f"[check_docs] kept the scratch directory {self.path}")
        else:
            shutil.rmtree(self.path, ignore_errors=True)

    def run_shell(self, command: Command, checker: Checker, result: Result, timeout: float) -> None:
        parsed = parse_shell(command.text)
        argv = [sys.executable, parsed.script, *budget_overrides(parsed.script, parsed.args, checker)]
        result.notes.append("ran: " + shlex.join(["python", *argv[1:]]))
        self._run(argv, {**self.env, **parsed.env}, result, timeout)

    def run_python(self, commands: list[Command], results: list[Result], timeout: float) -> None:
        """The python blocks of one page in one interpreter, in order (later blocks use earlier names)."""
        blocks = []
        for command in commands:
            source = command.text
            for pattern, replacement in RUN_REWRITES:
                source = re.sub(pattern, replacement, source)
            blocks.append((command.where, source))
        driver = self.path / f"blocks_{abs(hash(commands[0].file))}.py"
        driver.write_text(
            "import sys, traceback\nnamespace = {'__name__': '__main__'}\n"
            f"for index, (where, source) in enumerate({blocks!r}):\n"
            "    print(f'@@block {index}', flush=True)\n"
            "    try:\n"
            "        exec(compile(source, where, 'exec'), namespace)\n"
            "    except BaseException:\n"
            "        traceback.print_exc()\n"
            "        print(f'@@failed {index}', flush=True)\n"
            "        sys.exit(1)\n"
        )
        start = time.monotonic()
        try:
            proc = subprocess.run(
                [sys.executable, str(driver)],
                cwd=self.path,
                env=self.env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=timeout,
            )
            output = proc.stdout
        except subprocess.TimeoutExpired as err:
            partial = err.stdout.decode(errors="replace") if isinstance(err.stdout, bytes) else err.stdout or ""
            output = f"{partial}\n@@timeout"
        seconds = time.monotonic() - start
        failed = re.search(r"@@failed (\d+)", output)
        reached = [int(i) for i in re.findall(r"@@block (\d+)", output)]
        for index, result in enumerate(results):
            result.ran = bool(reached) and index <= max(reached)
            result.seconds = seconds / len(results)
            if failed and index == int(failed.group(1)):
                result.errors.append("raised: " + last_lines(output.split("@@failed")[0], 4))
            elif "@@timeout" in output and index == (max(reached) if reached else 0):
                result.errors.append(f"timed out after {timeout:.0f}s")
            elif not result.ran and result.ok:
                result.notes.append("not reached (an earlier block failed)")

    def _run(self, argv: list[str], env: dict[str, str], result: Result, timeout: float) -> None:
        start = time.monotonic()
        try:
            proc = subprocess.run(argv, cwd=self.path, env=env, capture_output=True, text=True, timeout=timeout)
            if proc.returncode != 0:
                result.errors.append(f"exit {proc.returncode}: {last_lines(proc.stdout + proc.stderr, 4)}")
        except subprocess.TimeoutExpired:
            result.errors.append(f"timed out after {timeout:.0f}s")
        result.ran = True
        result.seconds = time.monotonic() - start


# ----------------------------------------------------------------------------------------------- main


def check_files(
    paths: list[Path], run: bool = False, keep: bool = False, timeout: float = RUN_TIMEOUT_S, log=print
) -> list[Result]:
    """Check (and with `run`, execute) the commands of the pages; one Result per command / python block and
    per broken link."""
    checker = Checker()
    if run:  # the pages whose commands build the datasets and runs that other pages' commands use
        given = {p.resolve() for p in paths}
        paths = [ROOT / name for name in RUN_FIRST if (ROOT / name).resolve() not in given] + list(paths)
    pages = [(path, extract(path)) for path in paths]
    wanted = []
    for _, commands in pages:
        for command in commands:
            if command.kind == "python":
                continue
            try:
                parsed = parse_shell(command.text, prose=command.kind == "inline")
            except ValueError:
                continue
            if parsed.script and parsed.script.endswith(".py") and parsed.script not in HYDRA_SCRIPTS:
                positional = [a for a in parsed.args if not a.startswith("-")]
                wanted.append((parsed.script, ""))
                if parsed.script == "scripts/make_datasets.py" and positional:
                    wanted.append((parsed.script, positional[0]))
    checker.prefetch_help([w for w in wanted if (ROOT / w[0]).is_file()])
    results: list[Result] = []
    by_page: dict[str, list[Result]] = {}
    for path, commands in pages:
        page_results = [checker.check(command) for command in commands]
        page_results += check_links(path)
        by_page[display_name(path)] = page_results
        results.extend(page_results)
    if run:
        sandbox = Sandbox(keep)
        try:
            order = sorted(by_page, key=lambda name: RUN_FIRST.index(name) if name in RUN_FIRST else len(RUN_FIRST))
            for name in order:
                runnable = [r for r in by_page[name] if r.ok and r.static_only is None]
                python = [r for r in runnable if r.command.kind == "python"]
                for result in runnable:
                    if result.command.kind == "python":
                        continue
                    log(f"[check_docs] running {result.command.where}: {result.command.short}")
                    sandbox.run_shell(result.command, checker, result, timeout)
                if python:
                    log(f"[check_docs] running the python blocks of {name}")
                    sandbox.run_python([r.command for r in python], python, timeout)
        finally:
            sandbox.close()
    return results


def report(results: list[Result], run: bool, verbose: bool) -> str:
    lines = []
    for result in results:
        command = result.command
        if result.errors:
            lines.append(f"FAIL  {command.where}  {command.short}")
            lines.extend(f"        {error}" for error in result.errors)
        elif verbose and command.kind != "link":
            how = f"static ({result.static_only})" if result.static_only else "static"
            how = f"ran {result.seconds:.0f}s" if result.ran else how
            lines.append(f"ok    {command.where}  {command.short}  [{how}]")
    commands = [r for r in results if r.command.kind != "link"]
    failed = [r for r in results if not r.ok]
    ran = [r for r in commands if r.ran]
    static_only: dict[str, list[Result]] = {}
    for r in commands:
        if r.static_only and not r.ran:
            static_only.setdefault(r.static_only.split(" '")[0].split(" {")[0], []).append(r)
    lines.append("")
    lines.append(
        f"[check_docs] {len(commands)} commands and python blocks in {len({r.command.file for r in results})} pages: "
        f"{len(commands) - len([r for r in failed if r.command.kind != 'link'])} ok, "
        f"{len([r for r in failed if r.command.kind != 'link'])} failed; "
        f"{len([r for r in failed if r.command.kind == 'link'])} broken links"
    )
    if run:
        lines.append(f"[check_docs] ran {len(ran)} at tiny budgets ({sum(r.seconds for r in ran):.0f}s)")
    else:
        runnable = [r for r in commands if not r.static_only]
        lines.append(f"[check_docs] static mode: {len(runnable)} of them would run with --run")
    for reason, items in sorted(static_only.items()):
        where = ", ".join(r.command.where for r in items[:6]) + (", ..." if len(items) > 6 else "")
        lines.append(f"[check_docs] static only ({reason}): {len(items)}: {where}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="*", type=Path, help="Markdown pages (default: README.md and docs/*.md)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--static", action="store_true", help="check without running (the default)")
    mode.add_argument("--run", action="store_true", help="also run the runnable commands at tiny budgets")
    parser.add_argument("--keep", action="store_true", help="--run: keep the scratch directory")
    parser.add_argument("--timeout", type=float, default=RUN_TIMEOUT_S, help="--run: seconds per command")
    parser.add_argument("-v", "--verbose", action="store_true", help="one line per command, not only failures")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MUJOCO_GL", "osmesa")
    files = args.files or default_files()
    missing = [f for f in files if not f.is_file()]
    if missing:
        parser.error(f"no such file: {', '.join(map(str, missing))}")
    results = check_files(files, run=args.run, keep=args.keep, timeout=args.timeout)
    print(report(results, args.run, args.verbose))
    return 1 if any(not r.ok for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
