"""Helpers shared by the scripts in scripts/: argparse value types with a range, output paths checked to be writable
before any work, and `fail` for one error line with exit status 2 (so that a bad value or an unwritable folder is
one error line, not a traceback after the run)."""

from __future__ import annotations

import argparse
import errno
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from embodied_rl.threads import parse_setting
from embodied_rl.validation import in_range


def number(kind: type[int] | type[float] = int, spec: str = ">= 1", why: str = "") -> Callable[[str], int | float]:
    """An argparse `type=` reading a `kind` (int or float) in the range `spec` (`"> 0"`, `">= 1"`, `"(0, 1]"`; see
    `embodied_rl.validation.in_range`): `--episodes 0` is `argument --episodes: must be >= 1, got 0`, with `why`
    in parentheses after the range when given; text that is not a `kind` is argparse's `invalid int value: 'x'`."""
    phrase = spec if spec.startswith(">") else f"in {spec}"
    if why:
        phrase += f" ({why})"

    def parse(text: str) -> int | float:
        value = kind(text)  # a ValueError: argparse names the function, hence its __name__ below
        if not in_range(value, spec):
            raise argparse.ArgumentTypeError(f"must be {phrase}, got {text}")
        return value

    parse.__name__ = kind.__name__
    in_range(0, spec)  # an unknown spec fails here, when the parser is built
    return parse


def add_threads_option(parser: argparse.ArgumentParser) -> None:
    """`--threads auto|N` (default auto): torch's CPU threads, for `embodied_rl.threads.set_threads(args.threads)`;
    a value that is neither is argparse's error `argument --threads: must be auto or an integer >= 1 ...`."""

    def threads(text: str) -> int | str:
        try:
            return parse_setting(text, "--threads")
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err).removeprefix("--threads ")) from None

    parser.add_argument(
        "--threads",
        type=threads,
        default="auto",
        help="torch's CPU threads: auto (the usable cores; OMP_NUM_THREADS when set) or a number (default auto)",
    )


def fail(message: str, prefix: str = "") -> NoReturn:
    """Print `<prefix>error: <message>` on stderr and exit with status 2, as argparse does for a usage error (an
    unknown task, a missing checkpoint, an unwritable folder): `raise SystemExit("error: ...")` would exit 1, the
    status of a crash."""
    print(f"{prefix}error: {message}", file=sys.stderr)
    raise SystemExit(2)


class NotWritable(Exception):
    """An output path that cannot be written; the message is the reason (`Permission denied`, ...)."""


def writable(path: str | Path, *, directory: bool = False) -> Path:
    """Check that the output file `path` (or, with `directory`, files inside the folder `path`) can be written,
    creating the missing folders; a `NotWritable` naming the reason otherwise. An existing file is left as it is."""
    path = Path(path)
    try:
        if directory:
            folder = path
        elif path.is_dir():
            raise IsADirectoryError(errno.EISDIR, "is a directory")
        else:
            folder = path.parent
        folder.mkdir(parents=True, exist_ok=True)
        if not directory and path.exists():
            with path.open("r+b"):  # writable, and left as it is
                pass
        else:
            with tempfile.TemporaryFile(dir=folder):
                pass
    except OSError as err:
        raise NotWritable(err.strerror or str(err)) from None
    return path
