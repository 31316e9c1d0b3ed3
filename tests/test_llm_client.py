"""embodied_rl.llm against a local OpenAI-compatible server (tests/llm_server.py): the protocol on the wire, the
content-keyed cache, the replay backend, retries, malformed answers, refusals, concurrency, usage and key handling."""

from __future__ import annotations

import base64
import io
import json
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from llm_server import REFUSAL, OpenAICompatibleServer, local_settings
from PIL import Image

from embodied_rl.llm import (
    Completion,
    LLMClient,
    LLMError,
    LLMSettings,
    ReplayMiss,
    system_message,
    user_message,
)

SECRET = "sk-test-9f8e7d6c5b4a-do-not-store"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def no_environment_key(monkeypatch):
    """Tests never depend on (or reveal) the key or endpoint of whoever runs them."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


@pytest.fixture
def server():
    with OpenAICompatibleServer() as server:
        yield server


def image(seed: int, size: int = 8) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(size, size, 3), dtype=np.uint8)


def questions(n: int) -> list[list[dict]]:
    return [[user_message(f"question number {i}")] for i in range(n)]


def all_file_text(folder: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in folder.rglob("*") if p.is_file())


# ------------------------------------------------------------------ the protocol on the wire


def test_text_and_images_reach_the_server_in_protocol_form(server, tmp_path):
    client = LLMClient(local_settings(server, tmp_path, temperature=0.5, max_tokens=7))
    first, second = image(0), image(1, size=5)
    answer = client.complete([system_message("Be brief."), user_message("Which is better?", [first, second])])
    assert answer == Completion(
        text="echo: Which is better?",
        cached=False,
        finish_reason="stop",
        prompt_tokens=5,
        completion_tokens=4,
        refusal=None,
        key=answer.key,
    )
    body = server.last_request.body
    assert body["model"] == "test-model" and body["temperature"] == 0.5 and body["max_tokens"] == 7
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}
    parts = body["messages"][1]["content"]
    assert [p["type"] for p in parts] == ["text", "image_url", "image_url"]
    assert parts[0] == {"type": "text", "text": "Which is better?"}
    assert all(p["image_url"]["url"].startswith("data:image/png;base64,") for p in parts[1:])
    received = server.last_request.images  # decoded from the PNGs: the exact pixels
    assert np.array_equal(received[0], first) and np.array_equal(received[1], second)
    client.complete([user_message("plain")])
    assert server.last_request.body["messages"] == [{"role": "user", "content": "plain"}]


def test_user_message_encodes_png_and_refuses_other_arrays():
    url = user_message("x", [image(3)])["content"][1]["image_url"]["url"]
    png = base64.b64decode(url.partition(",")[2])
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and np.array_equal(np.asarray(Image.open(io.BytesIO(png))), image(3))
    for bad in (image(0).astype(np.float32), image(0)[..., 0], np.zeros((4, 4, 4), np.uint8)):
        with pytest.raises(ValueError, match=r"uint8 array of shape \(H, W, 3\)"):
            user_message("x", [bad])


# ------------------------------------------------------------------ cache


def test_a_rerun_and_a_second_client_send_nothing(server, tmp_path):
    conversations = questions(6)
    first = LLMClient(local_settings(server, tmp_path)).complete_many(conversations, progress=False)
    assert server.requests == 6 and not any(c.cached for c in first)
    again = LLMClient(local_settings(server, tmp_path)).complete_many(conversations[::-1], progress=False)
    assert server.requests == 6, "a rerun (another client, another order) sent requests already answered"
    assert [c.text for c in again] == [c.text for c in first][::-1] and all(c.cached for c in again)
    client = LLMClient(local_settings(server, tmp_path))
    assert client.complete(conversations[0]).cached and client.usage.cache_hits == 1 and client.usage.requests == 0


def test_the_cache_key_covers_image_bytes_and_parameters(server, tmp_path):
    client = LLMClient(local_settings(server, tmp_path))
    picture = image(0)
    client.complete([user_message("same text", [picture])])
    changed = picture.copy()
    changed[3, 4, 1] ^= 1  # one bit of one pixel
    assert not client.complete([user_message("same text", [changed])]).cached
    assert client.complete([user_message("same text", [picture.copy()])]).cached
    assert not client.complete([user_message("same text", [picture])], temperature=0.7).cached
    assert not client.complete([user_message("same text", [picture])], model="another-model").cached
    assert client.complete([user_message("same text", [picture])], temperature=0).cached  # 0 == 0.0
    assert server.requests == 4
    client.complete([user_message("same text", [picture])], max_tokens=None, max_completion_tokens=9)
    assert "max_tokens" not in server.last_request.body and server.last_request.body["max_completion_tokens"] == 9


def test_cache_files_are_whole_json_named_by_the_request_hash(server, tmp_path):
    client = LLMClient(local_settings(server, tmp_path))
    messages = [user_message("describe the scene", [image(0)])]
    answer = client.complete(messages)
    files = sorted((tmp_path / "llm_cache").iterdir())
    assert [p.name for p in files] == [f"{answer.key}.json"] and answer.key == client.key_for(messages)
    entry = json.loads(files[0].read_text())
    assert entry["text"] == "echo: describe the scene" and entry["finish_reason"] == "stop"
    assert entry["request"]["messages"] == [{"role": "user", "text": "describe the scene", "images": 1}]
    assert "base64" not in files[0].read_text()  # described, not stored: the hash holds the image


def test_an_unreadable_cache_file_is_asked_again(server, tmp_path):
    client = LLMClient(local_settings(server, tmp_path))
    answer = client.complete(questions(1)[0])
    (tmp_path / "llm_cache" / f"{answer.key}.json").write_text("")  # as a power cut may leave it
    with pytest.warns(UserWarning, match="asking again"):
        assert not client.complete(questions(1)[0]).cached
    assert client.complete(questions(1)[0]).cached and server.requests == 2


def test_the_client_works_with_the_cache_off(server):
    client = LLMClient(local_settings(server, None))
    assert client.cache is None
    answers = client.complete_many(questions(3) * 2, progress=False)
    assert [a.text for a in answers[:3]] == [a.text for a in answers[3:]] and not any(a.cached for a in answers)
    assert server.requests == 6 and client.usage.cache_hits == 0


def test_the_key_never_reaches_files(server, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    client = LLMClient(local_settings(server, tmp_path, max_attempts=1), usage_path=tmp_path / "usage.json")
    client.complete_many(questions(3), progress=False)
    server.fail_next("server_error")
    with pytest.raises(LLMError) as failed:
        client.complete([user_message("fails")])
    server.fail_next("unauthorized")  # a server quoting the key back in its error
    with pytest.raises(LLMError, match=r"answered HTTP 401: .*Incorrect API key provided: \*\*\*") as refused:
        client.complete([user_message("refused")])
    assert server.requests == 5  # a 401 is not retried
    assert server.headers[0]["authorization"] == f"Bearer {SECRET}"  # it was used ...
    assert SECRET not in all_file_text(tmp_path) and SECRET not in str(failed.value) + str(refused.value)  # ... only
    assert SECRET not in repr(client) and SECRET not in repr(client.settings)


def test_a_missing_key_is_a_clear_error_before_any_request(monkeypatch):
    with pytest.raises(LLMError, match="OPENAI_API_KEY is not set.*api.example.com"):
        LLMClient(LLMSettings(base_url="https://api.example.com/v1", cache_dir=None))
    monkeypatch.setenv("OPENAI_BASE_URL", "https://api.example.com/v1")
    with pytest.raises(LLMError, match="OPENAI_API_KEY is not set"):
        LLMClient(LLMSettings(cache_dir=None))


# ------------------------------------------------------------------ replay


def test_replay_answers_from_the_cache_and_from_replay_dir_without_network(server, tmp_path):
    recorded = LLMClient(local_settings(server, tmp_path)).complete_many(questions(3), progress=False)
    stored = tmp_path / "stored"
    stored.mkdir()
    replay = LLMClient(local_settings(server, tmp_path, backend="replay", replay_dir=str(stored)))
    by_hand = [user_message("written by a person", [image(5)])]
    (stored / f"{replay.key_for(by_hand)}.json").write_text(json.dumps({"text": "0"}))
    assert [a.text for a in replay.complete_many(questions(3), progress=False)] == [a.text for a in recorded]
    assert replay.complete(by_hand) == Completion(text="0", cached=True, key=replay.key_for(by_hand))
    assert server.requests == 3 and replay.usage.cache_hits == 4 and replay.usage.requests == 0
    only_stored = LLMClient(LLMSettings(backend="replay", model="test-model", cache_dir=None, replay_dir=str(stored)))
    assert only_stored.complete(by_hand).text == "0"  # no key, no URL, no cache: fine


def test_a_replay_miss_names_the_request_and_where_it_looked(server, tmp_path):
    replay = LLMClient(local_settings(server, tmp_path, backend="replay", replay_dir=str(tmp_path / "stored")))
    messages = [user_message("is the drawer open in the second image", [image(0), image(1)])]
    key = replay.key_for(messages)
    with pytest.raises(ReplayMiss) as missed:
        replay.complete(messages)
    text = str(missed.value)
    assert key[:12] in text and "is the drawer open" in text
    assert str(tmp_path / "llm_cache" / f"{key}.json") in text and str(tmp_path / "stored" / f"{key}.json") in text
    results = replay.complete_many([messages, *questions(1)], progress=False)
    assert all(isinstance(r, ReplayMiss) for r in results) and server.requests == 0
    with pytest.raises(ValueError, match="needs llm.cache_dir or llm.replay_dir"):
        LLMSettings(backend="replay", cache_dir=None)


# ------------------------------------------------------------------ retries and bad answers


@pytest.mark.parametrize("kind", ["rate_limit", "server_error"])
def test_rate_limits_and_server_errors_are_retried(server, tmp_path, kind):
    client = LLMClient(local_settings(server, tmp_path, max_attempts=3))
    server.fail_next(kind, times=2)
    assert client.complete(questions(1)[0]).text == "echo: question number 0"
    assert server.requests == 3 and client.usage.attempts == 3 and client.usage.requests == 1
    assert client.usage.failures == 0


def test_a_timeout_is_retried(tmp_path):
    with OpenAICompatibleServer(slow_s=1.5) as server:
        client = LLMClient(local_settings(server, tmp_path, timeout_s=0.3))
        server.fail_next("slow")
        assert client.complete(questions(1)[0]).text == "echo: question number 0"
        assert server.requests == 2 and client.usage.attempts == 2
        server.fail_next("slow")
        with pytest.raises(LLMError, match="no answer within 0.3 s"):
            LLMClient(local_settings(server, tmp_path, timeout_s=0.3, max_attempts=1)).complete(questions(2)[1])
        assert server.requests == 3


def test_attempts_are_bounded(server, tmp_path):
    client = LLMClient(local_settings(server, tmp_path, max_attempts=4))
    server.fail_next("rate_limit", times=100)
    with pytest.raises(LLMError, match=r"test-model at http://127\.0\.0\.1:\d+/v1/ answered HTTP 429"):
        client.complete(questions(1)[0])
    assert server.requests == 4 and client.usage.attempts == 4 and client.usage.failures == 1
    assert not (tmp_path / "llm_cache").exists()  # failures are not cached


def test_malformed_answers_fail_alone(server, tmp_path):
    client = LLMClient(local_settings(server, tmp_path, concurrency=1))
    server.fail_next("malformed")
    server.fail_next("empty_choices")
    results = client.complete_many(questions(4), progress=False)
    assert isinstance(results[0], LLMError) and "malformed answer" in str(results[0])
    assert isinstance(results[1], LLMError) and "empty choice list" in str(results[1])
    assert [r.text for r in results[2:]] == ["echo: question number 2", "echo: question number 3"]
    assert client.usage.failures == 2 and server.requests == 4  # not retried
    again = client.complete_many(questions(4), progress=False)  # the failures were not cached: asked again
    assert all(isinstance(r, Completion) for r in again) and server.requests == 6
    server.fail_next("malformed")
    with pytest.raises(LLMError, match="malformed"):
        client.complete_many(questions(6), progress=False, return_exceptions=False)


def test_a_refusal_is_surfaced(server, tmp_path):
    client = LLMClient(local_settings(server, tmp_path))
    server.fail_next("refusal")
    answer = client.complete(questions(1)[0])
    assert answer.refusal == REFUSAL and answer.text == ""
    assert client.complete(questions(1)[0]).refusal == REFUSAL  # an answer like any other: cached


def test_an_unreachable_endpoint_is_a_quick_clear_error(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # free once closed: nothing listens there
    client = LLMClient(LLMSettings(base_url=f"http://127.0.0.1:{port}/v1", cache_dir=None, max_attempts=2))
    start = time.perf_counter()
    with pytest.raises(LLMError, match=rf"could not reach gpt-4o at http://127\.0\.0\.1:{port}/v1/"):
        client.complete(questions(1)[0])
    assert time.perf_counter() - start < 5 and client.usage.attempts == 2


# ------------------------------------------------------------------ concurrency


def test_requests_overlap_up_to_the_concurrency(tmp_path):
    delay, n = 0.1, 8
    with OpenAICompatibleServer(delay_s=delay) as server:
        client = LLMClient(local_settings(server, tmp_path, concurrency=4))
        start = time.perf_counter()
        answers = client.complete_many(questions(n), progress=False)
        elapsed = time.perf_counter() - start
        assert [a.text for a in answers] == [f"echo: question number {i}" for i in range(n)]  # order kept
        assert elapsed < 0.6 * n * delay, f"{n} requests at concurrency 4 took {elapsed:.2f}s (sequential {n * delay}s)"
        assert server.max_in_flight == 4


def test_the_concurrency_limit_holds_across_caller_threads(tmp_path):
    with OpenAICompatibleServer(delay_s=0.05) as server:
        client = LLMClient(local_settings(server, None, concurrency=2))
        threads = [threading.Thread(target=client.complete, args=(m,)) for m in questions(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert server.requests == 6 and server.max_in_flight == 2


# ------------------------------------------------------------------ usage and settings


def test_the_usage_file_counts_and_prices(server, tmp_path):
    prices = {"price_input_per_million": 2.0, "price_output_per_million": 10.0}
    usage_path = tmp_path / "run" / "llm_usage.json"
    client = LLMClient(local_settings(server, tmp_path, **prices), usage_path=usage_path)
    client.complete_many(questions(3), progress=False)  # 3 prompt words, 4 answer words each (server's count)
    client.complete(questions(1)[0])  # a cache hit: free
    usage = json.loads(usage_path.read_text())
    expected = {"requests": 3, "cache_hits": 1, "failures": 0, "prompt_tokens": 9, "completion_tokens": 12}
    assert {k: usage["this_client"][k] for k in expected} == expected
    assert usage["this_client"]["cost_usd"] == pytest.approx((9 * 2.0 + 12 * 10.0) / 1e6)
    assert usage["model"] == "test-model" and usage["endpoint"] == server.url + "/"
    assert usage["prices_per_million"] == {"input": 2.0, "output": 10.0}
    resumed = LLMClient(local_settings(server, tmp_path, **prices), usage_path=usage_path)  # a resumed run
    resumed.complete(questions(5)[4])
    usage = json.loads(usage_path.read_text())
    assert usage["this_client"]["requests"] == 1 and usage["total"]["requests"] == 4
    assert usage["total"]["cost_usd"] == pytest.approx((12 * 2.0 + 16 * 10.0) / 1e6)
    unpriced = LLMClient(local_settings(server, tmp_path))
    unpriced.complete(questions(7)[6])
    assert unpriced.usage.cost_usd is None and unpriced.usage.prompt_tokens == 3


def test_settings_are_checked_and_mirrored_by_the_configs():
    from omegaconf import OmegaConf

    with pytest.raises(ValueError, match=r"unknown llm config keys \['api_key'\]"):
        LLMSettings.from_mapping({"api_key": "sk-..."})
    with pytest.raises(ValueError, match="llm.concurrency=0 .must be >= 1.*llm.timeout_s=0"):
        LLMSettings.from_mapping({"concurrency": 0, "timeout_s": 0})
    with pytest.raises(ValueError, match="llm.backend must be one of"):
        LLMSettings.from_mapping({"backend": "anthropic"})
    default = OmegaConf.to_container(OmegaConf.load(REPO / "configs/llm/default.yaml"))
    assert LLMSettings.from_mapping(default) == LLMSettings()
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(REPO / "configs"), version_base="1.3"):
        cfg = compose("config", overrides=["+llm=replay"])
    assert LLMSettings.from_mapping(cfg.llm) == LLMSettings(backend="replay")
