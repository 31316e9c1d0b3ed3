"""`LLMClient`: chat completions over the OpenAI protocol (official `openai` SDK), with an on-disk cache keyed by
the request's content, bounded retries, concurrent requests and usage accounting. See docs/llm.md.

Retries are the SDK's own (exponential backoff with jitter, honouring Retry-After; 408, 409, 429, 5xx, timeouts
and lost connections), bounded by `max_retries = max_attempts - 1` in one place; this module never loops. Each
HTTP request the SDK sends is counted through an httpx event hook (`Usage.attempts`). Concurrency is a thread
pool (the SDK's client is thread-safe) plus a semaphore, so no more than `concurrency` requests are ever in
flight, whichever threads call `complete`."""

from __future__ import annotations

import os
import threading
import time
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from tqdm.auto import tqdm

from embodied_rl.llm.errors import LLMError, ReplayMiss
from embodied_rl.llm.messages import describe_request, first_words, request_key
from embodied_rl.llm.settings import LLMSettings
from embodied_rl.llm.store import ResponseStore
from embodied_rl.llm.usage import Usage, UsageFile, token_cost

LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1", "0.0.0.0")
NO_KEY = "no-key-needed"  # sent to a local server when OPENAI_API_KEY is unset (vLLM, Ollama, llama.cpp ignore it)
USAGE_WRITE_INTERVAL_S = 0.5  # the usage file is rewritten at most this often while requests finish (and at the end)


@dataclass
class Completion:
    """One answer. `cached`: read from disk, nothing was sent. `refusal`: the model's refusal message when it
    declined (the protocol's `message.refusal`; `text` is then usually empty)."""

    text: str
    cached: bool
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    refusal: str | None = None
    key: str = ""  # the request's hash: the name of its file in the cache and in a replay directory


class LLMClient:
    """Asks `settings.model` at `settings.base_url`, answering from the cache (and `replay_dir`) first.

    `usage_path`: a JSON file of the usage counters, rewritten as requests finish (see `UsageFile`)."""

    def __init__(self, settings: LLMSettings, usage_path: str | Path | None = None) -> None:
        self.settings = settings
        self.cache = ResponseStore(settings.cache_dir) if settings.cache_dir is not None else None
        self.replay = ResponseStore(settings.replay_dir) if settings.replay_dir is not None else None
        self.usage = Usage(cost_usd=token_cost(0, 0, *self._prices()))
        self._lock = threading.Lock()  # guards usage and the usage file
        self._slots = threading.BoundedSemaphore(settings.concurrency)
        self._api, self.base_url, self._key = None, None, None
        if settings.backend == "openai":
            self._api = self._connect()
            self.base_url = str(self._api.base_url)
        self._usage_file = None
        self._last_usage_write = 0.0
        if usage_path is not None:
            describe = {"model": settings.model, "backend": settings.backend, "endpoint": _public_url(self.base_url)}
            describe["prices_per_million"] = dict(zip(("input", "output"), self._prices(), strict=True))
            self._usage_file = UsageFile(usage_path, describe)
            self._write_usage(force=True)

    # ------------------------------------------------------------------ public

    def complete(self, messages: list[dict], **params: Any) -> Completion:
        """The answer to one conversation. `params` override the settings' temperature and max_tokens, or add
        other chat-completions parameters (top_p, seed, stop, response_format, model, ...); they are part of the
        cache key."""
        try:
            return self._complete(messages, params)
        finally:
            self._write_usage(force=True)

    def complete_many(
        self,
        conversations: Sequence[list[dict]],
        *,
        progress: bool = True,
        desc: str = "llm",
        return_exceptions: bool = True,
    ) -> list[Completion | LLMError]:
        """The answers to `conversations`, in their order, up to `concurrency` requests in flight. A request that
        fails gives its LLMError in its place (the others go on); with `return_exceptions=False` the first
        failure is raised and the requests not yet started are dropped."""
        results: list[Completion | LLMError | None] = [None] * len(conversations)
        with (
            ThreadPoolExecutor(max_workers=self.settings.concurrency, thread_name_prefix="llm") as pool,
            tqdm(total=len(conversations), desc=desc, disable=not progress, unit="req") as bar,
        ):
            futures = {pool.submit(self._complete, messages, {}): i for i, messages in enumerate(conversations)}
            try:
                for future in as_completed(futures):
                    try:
                        results[futures[future]] = future.result()
                    except LLMError as err:
                        if not return_exceptions:
                            raise
                        results[futures[future]] = err
                    bar.update(1)
                    bar.set_postfix(cached=self.usage.cache_hits, failed=self.usage.failures, refresh=False)
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
            finally:
                self._write_usage(force=True)
        return results

    def key_for(self, messages: list[dict], **params: Any) -> str:
        """The hash naming this request's file in the cache and in a replay directory (as `complete` computes it)."""
        return self._request(messages, params)[2]

    # ------------------------------------------------------------------ one request

    def _request(self, messages: list[dict], params: dict[str, Any]) -> tuple[str, dict[str, Any], str]:
        """The model, parameters and hash of a request: the settings' defaults under `params` (a parameter given as
        None is not sent: `max_tokens=None, max_completion_tokens=...` for models that want the latter)."""
        params = {"temperature": self.settings.temperature, "max_tokens": self.settings.max_tokens, **params}
        model = params.pop("model", self.settings.model)
        params = {name: value for name, value in params.items() if value is not None}  # None: leave it out
        if "temperature" in params:  # 0 and 0.0 are one request (and one cache key)
            params["temperature"] = float(params["temperature"])
        if "max_tokens" in params:
            params["max_tokens"] = int(params["max_tokens"])
        return model, params, request_key(model, messages, params)

    def _complete(self, messages: list[dict], params: dict[str, Any]) -> Completion:
        model, params, key = self._request(messages, params)
        stored = self._stored(key)
        if stored is not None:
            self._count(cache_hits=1)
            return Completion(
                text=stored["text"],
                cached=True,
                finish_reason=stored.get("finish_reason"),
                prompt_tokens=int(stored.get("prompt_tokens") or 0),
                completion_tokens=int(stored.get("completion_tokens") or 0),
                refusal=stored.get("refusal"),
                key=key,
            )
        if self._api is None:
            self._count(failures=1)
            looked = " and ".join(str(store.path(key)) for store in (self.cache, self.replay) if store is not None)
            raise ReplayMiss(
                f"replay backend: no stored answer for request {key[:12]} ({model}, "
                f"{first_words(messages)!r}); looked for {looked}"
            )
        completion = self._ask(model, messages, params, key)
        if self.cache is not None:
            entry = {name: value for name, value in vars(completion).items() if name not in ("cached", "key")}
            self.cache.put(key, {**entry, "request": describe_request(model, messages, params)})
        return completion

    def _stored(self, key: str) -> dict | None:
        """The stored answer from the cache, else from replay_dir. An unreadable cache file (e.g. emptied by a
        power cut) is asked again by the openai backend; the replay backend reports it."""
        for store in (self.cache, self.replay):
            if store is None:
                continue
            try:
                entry = store.get(key)
            except LLMError as err:
                if store is not self.cache or self._api is None:
                    raise
                warnings.warn(f"{err}; asking again", stacklevel=3)
                continue
            if entry is not None:
                return entry
        return None

    def _ask(self, model: str, messages: list[dict], params: dict[str, Any], key: str) -> Completion:
        """Send one request (the SDK retries it up to max_attempts in all) and read its answer."""
        import openai

        where = f"{model} at {self.base_url}"
        try:
            with self._slots:
                self._count(requests=1)
                response = self._api.chat.completions.create(model=model, messages=messages, **params)
            return self._read(response, key, where)
        except LLMError:
            self._count(failures=1)
            raise
        except openai.APIStatusError as err:
            self._count(failures=1)
            raise self._error(f"{where} answered HTTP {err.status_code}: {err.message}") from None
        except openai.APITimeoutError:
            self._count(failures=1)
            raise self._error(f"{where}: no answer within {self.settings.timeout_s} s") from None
        except openai.APIConnectionError as err:
            self._count(failures=1)
            raise self._error(f"could not reach {where}: {err.__cause__ or err}") from None
        except (openai.OpenAIError, ValueError) as err:  # a body that is not JSON, or not a chat completion
            self._count(failures=1)
            raise self._error(f"{where} sent a malformed answer: {type(err).__name__}: {err}") from None

    def _read(self, response: Any, key: str, where: str) -> Completion:
        """The Completion in an SDK response; an answer without choices or not shaped like one is an LLMError."""
        try:
            choices = response.choices
            if not choices:
                raise self._error(f"{where} answered with an empty choice list")
            message = choices[0].message
            usage = response.usage
            prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
            completion_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
            completion = Completion(
                text=message.content or "",
                cached=False,
                finish_reason=choices[0].finish_reason,
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                refusal=getattr(message, "refusal", None),
                key=key,
            )
        except (AttributeError, TypeError, IndexError, ValueError) as err:
            raise self._error(f"{where} sent a malformed answer: {type(err).__name__}: {err}") from None
        self._count(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
        return completion

    # ------------------------------------------------------------------ connection, errors, usage

    def _connect(self) -> Any:
        """The SDK client: key from OPENAI_API_KEY (a placeholder for a local server), retries bounded here."""
        import openai

        base_url = self.settings.base_url or os.environ.get("OPENAI_BASE_URL") or None
        key = os.environ.get("OPENAI_API_KEY") or None
        if key is None:
            if base_url is None or urlsplit(base_url).hostname not in LOCAL_HOSTS:
                raise LLMError(
                    f"OPENAI_API_KEY is not set: the openai backend needs it for {base_url or 'api.openai.com'} "
                    "(export it; a local server on localhost needs none; llm.backend=replay needs no network)"
                )
            key = NO_KEY
        self._key = key
        http_client = openai.DefaultHttpxClient(event_hooks={"request": [self._count_attempt]})
        return openai.OpenAI(
            api_key=key,
            base_url=base_url,
            timeout=self.settings.timeout_s,
            max_retries=self.settings.max_attempts - 1,
            http_client=http_client,
        )

    def _count_attempt(self, request: Any) -> None:
        self._count(attempts=1)

    def _error(self, message: str) -> LLMError:
        """An LLMError whose message cannot hold the key (servers may echo it back)."""
        if self._key and self._key != NO_KEY:
            message = message.replace(self._key, "***")
        return LLMError(message)

    def _prices(self) -> tuple[float | None, float | None]:
        return self.settings.price_input_per_million, self.settings.price_output_per_million

    def _count(self, **increments: int) -> None:
        with self._lock:
            for name, increment in increments.items():
                setattr(self.usage, name, getattr(self.usage, name) + increment)
            if "prompt_tokens" in increments or "completion_tokens" in increments:
                tokens = self.usage.prompt_tokens, self.usage.completion_tokens
                self.usage.cost_usd = token_cost(*tokens, *self._prices())
        self._write_usage(force=False)

    def _write_usage(self, force: bool) -> None:
        if self._usage_file is None:
            return
        with self._lock:
            if force or time.monotonic() - self._last_usage_write >= USAGE_WRITE_INTERVAL_S:
                self._usage_file.write(self.usage)
                self._last_usage_write = time.monotonic()

    def __repr__(self) -> str:
        return f"LLMClient({self.settings.backend}, {self.settings.model} at {self.base_url}, cache={self.cache})"


def _public_url(url: str | None) -> str | None:
    """`url` without user, password or query (where a key could hide)."""
    if url is None:
        return None
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
