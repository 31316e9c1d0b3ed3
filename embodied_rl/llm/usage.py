"""What a client has asked for and what it cost: live counters (`Usage`) and the usage file that keeps them with a
run (`UsageFile`)."""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from embodied_rl.llm.store import write_json_atomically


@dataclass
class Usage:
    """Counters of one client. `requests` are the requests sent to the endpoint (each once, however many
    attempts it took; `attempts` counts the HTTP requests, retries included); `cache_hits` were answered from disk
    and sent nothing; `failures` ended in an LLMError. Tokens are those the endpoint reported for the requests
    sent; `cost_usd` prices them when both prices are configured (None otherwise)."""

    requests: int = 0
    cache_hits: int = 0
    failures: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = None
    attempts: int = 0

    def __add__(self, other: Usage) -> Usage:
        values = {}
        for field in dataclasses.fields(self):
            mine, theirs = getattr(self, field.name), getattr(other, field.name)
            values[field.name] = mine if theirs is None else theirs if mine is None else mine + theirs
        return Usage(**values)


def token_cost(
    prompt_tokens: int, completion_tokens: int, input_per_million: float | None, output_per_million: float | None
) -> float | None:
    """US dollars for the tokens at the given prices per million; None unless both prices are known."""
    if input_per_million is None or output_per_million is None:
        return None
    return (prompt_tokens * input_per_million + completion_tokens * output_per_million) / 1e6


class UsageFile:
    """The usage JSON of a run: this client's counters, and the total with those of earlier clients that wrote the
    same file (a resumed run adds to it rather than starting again). Written atomically (temporary file, then
    rename), so a reader or a crash never sees half a file. It names the model and endpoint, never the key."""

    def __init__(self, path: str | Path, describe: dict[str, Any]) -> None:
        self.path = Path(path)
        self.describe = describe
        self.earlier = self._read_total()

    def _read_total(self) -> Usage:
        try:
            total = json.loads(self.path.read_text())["total"]
            known = {f.name for f in dataclasses.fields(Usage)}
            return Usage(**{name: value for name, value in total.items() if name in known})
        except (OSError, ValueError, KeyError, TypeError):
            return Usage()

    def write(self, usage: Usage) -> None:
        data = {
            **self.describe,
            "this_client": dataclasses.asdict(usage),
            "total": dataclasses.asdict(self.earlier + usage),
            "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomically(self.path, data)
