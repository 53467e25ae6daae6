"""The escalation interface: what an LLM backend takes (redacted text), what it returns
(a validated answer and the tokens it used), how it fails (by status), and what each backend
declares about itself (name, key variable, default model, prices)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from ..taxonomy import UNKNOWN_CATEGORY  # the LLM's way to say no category fits

if TYPE_CHECKING:
    from .prompt import Prompt


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens billed for one request (thinking tokens count as output: they are billed so).
    `cached_input_tokens` are the part of `input_tokens` the service read from its prompt
    cache, which it bills at a lower rate."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.input_tokens + other.input_tokens,
                     self.output_tokens + other.output_tokens,
                     self.cached_input_tokens + other.cached_input_tokens)


@dataclass(frozen=True)
class Prices:
    """USD per million tokens; cached input at its own rate (None: the input rate)."""

    input_per_million: float = 0.0
    output_per_million: float = 0.0
    cached_input_per_million: float | None = None

    def cost(self, usage: Usage) -> float:
        cached = min(usage.cached_input_tokens, usage.input_tokens)
        cached_rate = (self.input_per_million if self.cached_input_per_million is None
                       else self.cached_input_per_million)
        return ((usage.input_tokens - cached) * self.input_per_million + cached * cached_rate
                + usage.output_tokens * self.output_per_million) / 1_000_000

    def scaled(self, factor: float) -> Prices:
        """These prices times `factor` (a batch discount)."""
        return Prices(self.input_per_million * factor, self.output_per_million * factor,
                      None if self.cached_input_per_million is None
                      else self.cached_input_per_million * factor)


@dataclass(frozen=True, slots=True)
class LLMAnswer:
    """A validated answer: labels from the taxonomy (category may be UNKNOWN), confidence 0–1."""

    category: str
    sentiment: str
    confidence: float

    @classmethod
    def from_dict(cls, data: Any, categories: Collection[str],
                  sentiments: Collection[str]) -> LLMAnswer:
        """Validate a decoded answer against the taxonomy's labels; raises InvalidAnswer."""
        if not isinstance(data, dict):
            raise InvalidAnswer("answer is not a JSON object")
        category, sentiment, confidence = (data.get(k) for k in
                                           ("category", "sentiment", "confidence"))
        if category != UNKNOWN_CATEGORY and category not in categories:
            raise InvalidAnswer("category is off the enum")
        if sentiment not in sentiments:
            raise InvalidAnswer("sentiment is off the enum")
        if isinstance(confidence, bool) or not isinstance(confidence, int | float):
            raise InvalidAnswer("confidence is not a number")
        # NaN compares false both ways, so it fails this test too; clamping 7.5 or -1 would
        # turn an answer that misread the schema into a confident one.
        if not 0.0 <= confidence <= 1.0:
            raise InvalidAnswer("confidence is not a finite number between 0 and 1")
        return cls(str(category), str(sentiment), float(confidence))

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
    """408/429/5xx or a broken connection: worth retrying with backoff. `retry_after` is the
    wait in seconds the server asked for (Retry-After, RetryInfo), if it said."""

    retryable = True

    def __init__(self, message: str, usage: Usage | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message, usage)
        self.retry_after = retry_after


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


@dataclass(frozen=True)
class Connection:
    """Where and as whom a backend sends its requests."""

    api_key: str | None
    model: str
    base_url: str | None = None  # a proxy, a local server, or the fake server in tests
    timeout_seconds: float = 30.0


class LLMBackend(ABC):
    """One LLM service: the only code that knows its SDK. `classify` gets redacted text only
    and raises LLMError subclasses. A new backend is one module with a subclass, plus one line
    in `registry.BACKENDS`; import its SDK inside the module's methods, so that other backends'
    runs never pay for it."""

    name: ClassVar[str]
    key_variable: ClassVar[str]  # read from the environment, or from a file named by <it>_FILE
    key_required: ClassVar[bool] = True
    base_url_variable: ClassVar[str]  # the environment's endpoint override
    default_model: ClassVar[str]
    # By model; a model not listed costs `prices[default_model]` unless prices are given.
    prices: ClassVar[Mapping[str, Prices]]

    def __init__(self, connection: Connection, prompt: Prompt) -> None:
        self.connection = connection
        self.model = connection.model
        self.prompt = prompt

    @classmethod
    def price(cls, model: str) -> Prices:
        return cls.prices.get(model) or cls.prices.get(cls.default_model) or Prices()

    @abstractmethod
    def classify(self, redacted_text: str) -> Reply: ...

    def problem(self) -> str | None:
        """What keeps the service from answering (for `doctor`), or None; sends no ticket.
        A backend that cannot check without spending money says None."""
        return None

    def close(self) -> None:  # noqa: B027 - a backend without resources needs no close
        """Release the client's connections."""
