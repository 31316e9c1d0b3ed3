"""One client for language and vision-language models over the OpenAI chat-completions protocol (OpenAI, vLLM,
Ollama, llama.cpp's server, any compatible endpoint), with an on-disk cache keyed by content, a replay backend
for offline reproduction, bounded retries, concurrency and usage accounting. See docs/llm.md.

    from embodied_rl.llm import LLMClient, LLMSettings, user_message
    client = LLMClient(LLMSettings.from_mapping(cfg.llm), usage_path=run_dir / "llm_usage.json")
    answers = client.complete_many([[user_message("Which image shows the drawer open?", [a, b])], ...])
"""

from embodied_rl.llm.client import Completion, LLMClient
from embodied_rl.llm.errors import LLMError, ReplayMiss
from embodied_rl.llm.messages import image_part, request_key, system_message, user_message
from embodied_rl.llm.settings import LLMSettings
from embodied_rl.llm.store import ResponseStore
from embodied_rl.llm.usage import Usage

__all__ = [
    "Completion",
    "LLMClient",
    "LLMError",
    "LLMSettings",
    "ReplayMiss",
    "ResponseStore",
    "Usage",
    "image_part",
    "request_key",
    "system_message",
    "user_message",
]
