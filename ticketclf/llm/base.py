"""The escalation interface: what an LLM backend takes (redacted text), what it returns
(a validated answer and the tokens it used) and how it fails (by status)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from ..schema import CATEGORIES, SENTIMENTS

UNKNOWN_CATEGORY = "UNKNOWN"  # the LLM's way to say no category fits


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens billed for one request (thinking tokens count as output: they are billed so)."""

    input_tokens: int = 0
    output_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.input_tokens + other.input_tokens,
                     self.output_tokens + other.output_tokens)


@dataclass(frozen=True, slots=True)
class LLMAnswer:
    """A validated answer: labels from the taxonomy (category may be UNKNOWN), confidence 0–1."""

    category: str
    sentiment: str
    confidence: float

    @classmethod
    def from_dict(cls, data: Any) -> LLMAnswer:
        """Validate a decoded answer (from the LLM or the cache); raises InvalidAnswer."""
        if not isinstance(data, dict):
            raise InvalidAnswer("answer is not a JSON object")
        category, sentiment, confidence = (data.get(k) for k in
                                           ("category", "sentiment", "confidence"))
        if category != UNKNOWN_CATEGORY and category not in CATEGORIES:
            raise InvalidAnswer("category is off the enum")
        if sentiment not in SENTIMENTS:
            raise InvalidAnswer("sentiment is off the enum")
        if isinstance(confidence, bool) or not isinstance(confidence, int | float):
            raise InvalidAnswer("confidence is not a number")
        # NaN compares false both ways, so it fails this test too; clamping 7.5 or -1 would
        # turn an answer that misread the schema into a confident one.
        if not 0.0 <= confidence <= 1.0:
            raise InvalidAnswer("confidence is not a finite number between 0 and 1")
        return cls(category, sentiment, float(confidence))

    def as_dict(self) -> dict[str, Any]:
        return {"category": self.category, "sentiment": self.sentiment,
                "confidence": self.confidence}


@dataclass(frozen=True, slots=True)
class Reply:
    answer: LLMAnswer
    usage: Usage


class LLMError(Exception):
    """A request that produced no usable answer. `status` is what the run counts it as;
    `retryable` says whether trying again may help; `usage` is what it still cost."""

    status = "error"
    retryable = False
    # Whether it says the service is unwell (the circuit breaker counts these); an answer
    # that was blocked or malformed says the service is up.
    service_failure = True

    def __init__(self, message: str, usage: Usage | None = None) -> None:
        super().__init__(message)
        self.usage = usage or Usage()


class TransientError(LLMError):
    """408/429/5xx or a broken connection: worth retrying with backoff."""

    retryable = True


class RequestTimeout(TransientError):
    status = "timeout"


class RequestRejected(LLMError):
    """400/401/403/404 and the like: the same request will fail again."""


class BlockedAnswer(LLMError):
    """Safety-blocked, or no candidates at all."""

    status = "blocked"
    service_failure = False


class InvalidAnswer(LLMError):
    """Malformed JSON, a missing field or a label off the enum."""

    status = "invalid"
    service_failure = False


class LLMBackend(Protocol):
    """One LLM service. `classify` gets redacted text only and raises LLMError subclasses."""

    model: str

    def classify(self, redacted_text: str) -> Reply: ...

    def close(self) -> None: ...
