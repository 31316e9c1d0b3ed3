"""The errors of the LLM client."""

from __future__ import annotations


class LLMError(RuntimeError):
    """A request that got no usable answer: it failed after its retries, the endpoint could not be reached, or
    the answer was malformed (not JSON, no choices). Messages name the endpoint, never the key."""


class ReplayMiss(LLMError):
    """The replay backend has no stored answer for a request (the message names the request and where it
    looked)."""
