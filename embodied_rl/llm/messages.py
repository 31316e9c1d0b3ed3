"""Chat messages in the OpenAI protocol's form, and the content hash that names a request in the cache.

Images travel as base64 PNG data URLs inside `image_url` parts, so the image bytes are part of the message and
therefore part of the hash: two requests differing in one pixel are two cache entries."""

from __future__ import annotations

import base64
import hashlib
import io
import json
from collections.abc import Sequence
from typing import Any

import numpy as np

# Parameters that change how a request travels, not what it asks: left out of the hash.
TRANSPORT_PARAMS = frozenset({"timeout", "extra_headers", "extra_query"})


def system_message(text: str) -> dict:
    """A system message."""
    return {"role": "system", "content": text}


def user_message(text: str, images: Sequence[np.ndarray] = ()) -> dict:
    """A user message: plain text, or the text followed by one image part per uint8 (H, W, 3) array."""
    if len(images) == 0:
        return {"role": "user", "content": text}
    return {"role": "user", "content": [{"type": "text", "text": text}, *(image_part(image) for image in images)]}


def image_part(image: np.ndarray) -> dict:
    """One `image_url` content part holding `image` (uint8, (H, W, 3)) as a base64 PNG data URL."""
    from PIL import Image

    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"an image must be a uint8 array of shape (H, W, 3), got {image.dtype} {image.shape}")
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buffer, format="PNG")  # no timestamp: same pixels, same bytes
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{encoded}"}}


def request_key(model: str, messages: list[dict], params: dict[str, Any]) -> str:
    """The sha256 (hex) of the request's model, messages (image bytes included) and answer-shaping parameters,
    as canonical JSON (sorted keys), so equal requests share a key whatever the order they are asked in."""
    shaping = {name: value for name, value in params.items() if name not in TRANSPORT_PARAMS and value is not None}
    request = {"model": model, "messages": messages, "params": shaping}
    text = json.dumps(request, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def message_text(message: dict) -> str:
    """The text of a message (its text parts joined by spaces)."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    return " ".join(part.get("text", "") for part in content or () if part.get("type") == "text")


def image_count(message: dict) -> int:
    content = message.get("content")
    return 0 if isinstance(content, str) else sum(part.get("type") == "image_url" for part in content or ())


def describe_request(model: str, messages: list[dict], params: dict[str, Any]) -> dict:
    """A short, readable account of a request, kept beside its answer (no image bytes, nothing secret)."""
    return {
        "model": model,
        "params": {name: value for name, value in params.items() if name not in TRANSPORT_PARAMS},
        "messages": [
            {"role": m.get("role"), "text": message_text(m), **({"images": n} if (n := image_count(m)) else {})}
            for m in messages
        ],
    }


def first_words(messages: list[dict], count: int = 12) -> str:
    """The first words of the last user message, to name a request in an error."""
    users = [m for m in messages if m.get("role") == "user"] or messages
    words = message_text(users[-1]).split() if users else []
    return " ".join(words[:count]) + (" ..." if len(words) > count else "")
