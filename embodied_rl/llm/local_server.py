"""A small local server speaking the OpenAI chat-completions protocol, for tests and benchmarks: it answers
`POST /v1/chat/completions` with a text computed from the request, counts and records requests, and misbehaves on
demand (rate limits, server errors, slow or malformed answers, no choices, refusals).

    with OpenAICompatibleServer(answer=lambda request: request.text.upper(), delay_s=0.02) as server:
        settings = LLMSettings(base_url=server.url, cache_dir=None)   # OPENAI_API_KEY may stay unset
        ...
        server.fail_next("rate_limit", times=2)    # the next two requests get 429 + Retry-After
        assert server.requests == ...

Standard library only (http.server in a thread); it never needs a key and ignores the one it is sent. In a process
of its own (as the benchmark runs it, so that it does not share the client's interpreter):

    python -m embodied_rl.llm.local_server --delay-s 0.02      # prints its URL; GET <url>/../stats: request count
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

FAILURES = ("rate_limit", "server_error", "unauthorized", "slow", "malformed", "empty_choices", "refusal")
REFUSAL = "I'm sorry, but I can't help with that."


@dataclass
class ChatRequest:
    """A request as the server received it: the JSON `body`, the last user message's `text`, its `images`."""

    body: dict

    @property
    def messages(self) -> list[dict]:
        return self.body.get("messages", [])

    @property
    def text(self) -> str:
        """The text of the last user message (text parts joined by spaces)."""
        users = [m for m in self.messages if m.get("role") == "user"]
        content = users[-1].get("content", "") if users else ""
        if isinstance(content, str):
            return content
        return " ".join(part.get("text", "") for part in content if part.get("type") == "text")

    @property
    def image_urls(self) -> list[str]:
        """The `image_url` URLs of every message, in order."""
        return [
            part["image_url"]["url"]
            for m in self.messages
            if isinstance(m.get("content"), list)
            for part in m["content"]
            if part.get("type") == "image_url"
        ]

    @property
    def images(self) -> list[np.ndarray]:
        """The base64 PNG images of the request, decoded to uint8 arrays."""
        from PIL import Image

        decoded = []
        for url in self.image_urls:
            header, _, data = url.partition(",")
            assert header == "data:image/png;base64", f"not a base64 PNG data URL: {header!r}"
            decoded.append(np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB")))
        return decoded


def echo(request: ChatRequest) -> str:
    """The default answer: the last user text, prefixed."""
    return f"echo: {request.text}"


class OpenAICompatibleServer:
    """The server on a free port of 127.0.0.1 while used as a context manager (or between start() and stop()).

    answer: the answer text of a request (a `ChatRequest`); delay_s: every answer waits this long (a model's
    latency); slow_s: how long a "slow" answer waits; retry_after_s: the Retry-After of a 429."""

    def __init__(
        self,
        answer: Callable[[ChatRequest], str] = echo,
        delay_s: float = 0.0,
        slow_s: float = 2.0,
        retry_after_s: float = 0.01,
        port: int = 0,
    ) -> None:
        self.answer, self.delay_s, self.slow_s, self.retry_after_s = answer, delay_s, slow_s, retry_after_s
        self.requests = 0  # POSTs to /v1/chat/completions, misbehaving ones included
        self.bodies: list[dict] = []  # their JSON bodies, in arrival order
        self.headers: list[dict[str, str]] = []  # their HTTP headers (lower-case names)
        self.in_flight = self.max_in_flight = 0  # requests being answered now, and the most at once
        self._failures: deque[str] = deque()
        self._lock = threading.Lock()
        self._http = ThreadingHTTPServer(("127.0.0.1", port), _handler_for(self))
        self._http.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL to give a client (`llm.base_url`)."""
        return f"http://127.0.0.1:{self._http.server_address[1]}/v1"

    @property
    def last_request(self) -> ChatRequest:
        return ChatRequest(self.bodies[-1])

    def fail_next(self, kind: str, times: int = 1) -> None:
        """Make the next `times` requests misbehave as `kind`, one of FAILURES: rate_limit (429 with Retry-After),
        server_error (500), unauthorized (401 quoting the key it was sent, as careless servers do), slow (waits
        slow_s, then answers), malformed (200 with a body that is not JSON),
        empty_choices (a completion with no choices), refusal (the model declines: `message.refusal`)."""
        if kind not in FAILURES:
            raise ValueError(f"unknown failure {kind!r}; known: {list(FAILURES)}")
        with self._lock:
            self._failures.extend([kind] * times)

    def reset(self) -> None:
        """Forget counted requests and pending failures."""
        with self._lock:
            self.requests, self.max_in_flight = 0, 0
            self.bodies.clear()
            self.headers.clear()
            self._failures.clear()

    def start(self) -> OpenAICompatibleServer:
        self._thread = threading.Thread(
            target=self._http.serve_forever, kwargs={"poll_interval": 0.05}, name="llm-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()

    def __enter__(self) -> OpenAICompatibleServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ answering

    def _arrived(self, body: dict, headers: dict[str, str]) -> str | None:
        """Count a request; the failure it gets, if any."""
        with self._lock:
            self.requests += 1
            self.bodies.append(body)
            self.headers.append(headers)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            return self._failures.popleft() if self._failures else None

    def _left(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def _completion(self, body: dict, text: str | None, refusal: str | None, choices: bool = True) -> dict:
        request = ChatRequest(body)
        words = sum(len(_text_of(m).split()) for m in request.messages)
        completion_words = len((text or refusal or "").split())
        message = {"role": "assistant", "content": text, "refusal": refusal}
        return {
            "id": f"chatcmpl-{self.requests}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", ""),
            "choices": [{"index": 0, "message": message, "finish_reason": "stop", "logprobs": None}] if choices else [],
            "usage": {
                "prompt_tokens": words,
                "completion_tokens": completion_words,
                "total_tokens": words + completion_words,
            },
        }


def _text_of(message: dict) -> str:
    content = message.get("content") or ""
    if isinstance(content, str):
        return content
    return " ".join(part.get("text", "") for part in content if part.get("type") == "text")


def _handler_for(server: OpenAICompatibleServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: a client reuses its connections
        disable_nagle_algorithm = True  # headers and body leave at once (no 40 ms delayed-ACK stall per answer)

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            if self.path.rstrip("/") == "/stats":  # for a client in another process (the benchmark)
                self._send(200, {"requests": server.requests, "max_in_flight": server.max_in_flight})
            elif self.path.rstrip("/") == "/v1/models":
                self._send(200, {"object": "list", "data": [{"id": "local", "object": "model"}]})
            else:
                self._send(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})

        def do_POST(self) -> None:  # noqa: N802
            body_bytes = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.path.rstrip("/") != "/v1/chat/completions":
                self._send(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
                return
            try:
                body = json.loads(body_bytes)
            except ValueError:
                self._send(400, {"error": {"message": "the body is not JSON", "type": "invalid_request_error"}})
                return
            failure = server._arrived(body, {name.lower(): value for name, value in self.headers.items()})
            try:
                self._answer(body, failure)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (its timeout)
                pass
            finally:
                server._left()

        def _answer(self, body: dict, failure: str | None) -> None:
            time.sleep(server.delay_s + (server.slow_s if failure == "slow" else 0.0))
            if failure == "rate_limit":
                error = {"error": {"message": "Rate limit reached", "type": "rate_limit_error"}}
                self._send(429, error, {"Retry-After": f"{server.retry_after_s:g}"})
            elif failure == "server_error":
                self._send(500, {"error": {"message": "The server had an error", "type": "server_error"}})
            elif failure == "unauthorized":
                key = self.headers.get("Authorization", "").removeprefix("Bearer ")
                error = {"error": {"message": f"Incorrect API key provided: {key}", "type": "invalid_request_error"}}
                self._send(401, error)
            elif failure == "malformed":
                self._send_bytes(200, b'{"id": "chatcmpl-broken", "choices": [{"index": 0, "mess')
            elif failure == "empty_choices":
                self._send(200, server._completion(body, "", None, choices=False))
            elif failure == "refusal":
                self._send(200, server._completion(body, None, REFUSAL))
            else:
                self._send(200, server._completion(body, server.answer(ChatRequest(body)), None))

        def _send(self, status: int, data: Any, headers: dict[str, str] | None = None) -> None:
            self._send_bytes(status, json.dumps(data).encode(), headers)

        def _send_bytes(self, status: int, payload: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

    return Handler


def main(argv: list[str] | None = None) -> None:
    """Serve echo answers until killed, printing the base URL first."""
    parser = argparse.ArgumentParser(description="A local OpenAI-compatible server answering echo texts.")
    parser.add_argument("--delay-s", type=float, default=0.0, help="every answer waits this long")
    parser.add_argument("--port", type=int, default=0, help="0: a free port")
    args = parser.parse_args(argv)
    server = OpenAICompatibleServer(delay_s=args.delay_s, port=args.port)
    print(server.url, flush=True)
    try:
        server._http.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server._http.server_close()


if __name__ == "__main__":
    main()
