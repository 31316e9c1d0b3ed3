"""Answers on disk, one JSON file per request: `<folder>/<request hash>.json`.

Why plain files rather than a database (diskcache, sqlite): a person can read, write or delete one answer with
an editor; the same folder serves as the cache and as a replay directory (copy it, commit it as test fixtures,
point `llm.replay_dir` at it); and any number of threads or processes can share it without a lock, because each
file is written to a temporary name of its own and renamed into place (whole or not at all; two writers of one
key write the same answer). A crash of the process loses only the requests still in flight. Files are not
fsynced (an fsync took 3 ms on our VM, as long as the rest of a local request): after a power cut a file may be
empty, which the client reads as "not cached" and asks again.

One file holds:

    {"text": "...",                                   # the answer (the only required field)
     "finish_reason": "stop", "refusal": null,         # optional
     "prompt_tokens": 812, "completion_tokens": 3,    # optional
     "request": {"model": ..., "params": ..., "messages": [{"role": ..., "text": ..., "images": 2}]}}  # for people

`request` only describes the request; the file name (the hash, `messages.request_key`) is what is matched."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from embodied_rl.llm.errors import LLMError


class ResponseStore:
    """The stored answers in one folder (created on the first write)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder).expanduser()

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored answer for `key`, or None when there is none; a file without a `text` is an error."""
        path = self.path(key)
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as err:
            raise LLMError(f"cannot read the stored answer {path}: {err}") from err
        if not isinstance(entry, dict) or not isinstance(entry.get("text"), str):
            raise LLMError(f'the stored answer {path} has no "text" string')
        return entry

    def put(self, key: str, entry: dict[str, Any]) -> None:
        """Store `entry` under `key`, whole or not at all."""
        self.folder.mkdir(parents=True, exist_ok=True)
        write_json_atomically(self.path(key), entry)

    def __repr__(self) -> str:
        return f"ResponseStore({str(self.folder)!r})"


def write_json_atomically(path: Path, data: Any) -> None:
    """`data` as JSON at `path` through a temporary file of its own in the same folder and a rename, so that
    concurrent writers never share a temporary file and a reader never sees half a file."""
    handle, partial = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name[:24]}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1, ensure_ascii=False)
        os.replace(partial, path)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise
