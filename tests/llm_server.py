"""A local OpenAI-compatible server for tests that talk to an LLM or VLM (`embodied_rl.llm.local_server`, which the
benchmark also uses), plus a helper building client settings that point at it.

    from llm_server import OpenAICompatibleServer, local_settings

    with OpenAICompatibleServer(answer=lambda request: "1" if request.images[0].mean() > 100 else "0") as server:
        client = LLMClient(local_settings(server, tmp_path))      # cache in tmp_path/llm_cache
        server.fail_next("rate_limit", times=2)                    # rate_limit, server_error, unauthorized, slow,
        ...                                                        # malformed, empty_choices, refusal
        server.requests, server.last_request.text, server.last_request.images, server.max_in_flight

`answer` receives a `ChatRequest` (`.body`, `.text`: the last user text, `.images`: decoded uint8 arrays)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from embodied_rl.llm import LLMSettings
from embodied_rl.llm.local_server import FAILURES, REFUSAL, ChatRequest, OpenAICompatibleServer, echo

__all__ = ["FAILURES", "REFUSAL", "ChatRequest", "OpenAICompatibleServer", "echo", "local_settings"]


def local_settings(server: OpenAICompatibleServer, tmp_path: Path | None, **overrides: Any) -> LLMSettings:
    """Settings asking `server` (no key needed), caching under `tmp_path/llm_cache` (no cache when tmp_path is
    None), with one-second timeouts and few attempts so that failing tests fail fast."""
    values = {
        "model": "test-model",
        "base_url": server.url,
        "cache_dir": None if tmp_path is None else str(tmp_path / "llm_cache"),
        "timeout_s": 5.0,
        "max_attempts": 3,
        "concurrency": 4,
        **overrides,
    }
    return LLMSettings(**values)
