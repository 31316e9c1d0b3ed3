"""The settings of `LLMClient`, one dataclass mirrored by `configs/llm/default.yaml` (docs/llm.md)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from embodied_rl.validation import check_field_types, check_ranges, settings_from_mapping

BACKENDS = ("openai", "replay")


@dataclass
class LLMSettings:
    """Which model to ask, where, and how. The API key is never a setting: it comes from `OPENAI_API_KEY` only,
    so no config, cache or result file can hold it."""

    backend: str = "openai"  # "openai": ask the endpoint (cache first); "replay": stored answers only, no network
    model: str = "gpt-4o"
    base_url: str | None = None  # None: $OPENAI_BASE_URL, else the SDK's default (api.openai.com)
    temperature: float = 0.0
    max_tokens: int = 1024
    concurrency: int = 8  # requests in flight at once
    max_attempts: int = 5  # per request, the first try included (retries on 408/409/429/5xx, timeouts, no connection)
    timeout_s: float = 60.0  # per attempt
    cache_dir: str | None = "~/.cache/embodied_rl/llm"  # None: no cache
    replay_dir: str | None = None  # stored answers (one JSON per request hash), read by both backends
    price_input_per_million: float | None = None  # USD per million prompt tokens, for the usage file's cost_usd
    price_output_per_million: float | None = None  # USD per million completion tokens

    def __post_init__(self) -> None:
        check_field_types(self, "LLM settings", prefix="llm.")
        ranges = {
            "temperature": ">= 0",
            **dict.fromkeys(("max_tokens", "concurrency", "max_attempts"), ">= 1"),
            "timeout_s": "> 0",
            **dict.fromkeys(("price_input_per_million", "price_output_per_million"), "None or >= 0"),
        }
        check_ranges("LLM settings", vars(self), ranges, prefix="llm.")
        if self.backend not in BACKENDS:
            raise ValueError(f"llm.backend must be one of {list(BACKENDS)}, got {self.backend!r}")
        if not self.model:
            raise ValueError("llm.model must name a model")
        if self.backend == "replay" and self.cache_dir is None and self.replay_dir is None:
            raise ValueError("llm.backend=replay needs llm.cache_dir or llm.replay_dir to read stored answers from")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> LLMSettings:
        """From a dict or OmegaConf node; an unknown key is an error naming the known ones."""
        return settings_from_mapping(cls, values, "llm")
