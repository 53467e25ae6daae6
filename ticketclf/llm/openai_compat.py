"""The OpenAI-compatible backend, on the official `openai` SDK: chat completions against
OpenAI or anything that speaks its wire format (vLLM, llama.cpp server, Ollama, LiteLLM,
Azure OpenAI's v1 endpoint). The only module that imports the SDK, and only when this
backend is built.

One chat-completions request per ticket: the system instruction, the redacted ticket as
JSON, temperature 0, the answer constrained by `response_format` of type `json_schema`
(strict) carrying the enum. The SDK's own retries stay off (max_retries=0): the escalator
retries, so that every retry is counted, rate-limited and charged to the budget.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from .base import (
    BlockedAnswer,
    Connection,
    InvalidAnswer,
    LLMBackend,
    LLMError,
    Prices,
    Reply,
    RequestRejected,
    RequestTimeout,
    TransientError,
    Usage,
)
from .limits import retry_after_seconds
from .prompt import Prompt

if TYPE_CHECKING:
    from openai.types.chat import ChatCompletion

# Worth retrying: the request may succeed later (409: a conflicting request in flight).
RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})
# The SDK refuses to build a client without a key; a local server ignores whatever it gets.
NO_KEY = "unused"


def strict_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The answer schema as strict structured output needs it: no extra properties."""
    return {**schema, "additionalProperties": False}


class OpenAIBackend(LLMBackend):
    name = "openai"
    key_variable = "OPENAI_API_KEY"
    key_required = False  # local servers need none; OpenAI itself answers 401 without one
    base_url_variable = "TICKETCLF_LLM_BASE_URL"
    default_model = "gpt-4.1-mini"
    # OpenAI's standard tier, text. Any other model name is taken for a local server: free.
    prices: ClassVar[dict[str, Prices]] = {
        "gpt-4.1-mini": Prices(0.40, 1.60, cached_input_per_million=0.10),
        "gpt-4o-mini": Prices(0.15, 0.60, cached_input_per_million=0.075),
    }

    def __init__(self, connection: Connection, prompt: Prompt) -> None:
        super().__init__(connection, prompt)
        import openai

        self._openai = openai
        self._client = openai.OpenAI(
            api_key=connection.api_key or NO_KEY, base_url=connection.base_url,
            timeout=connection.timeout_seconds, max_retries=0)
        self._response_format: Any = {"type": "json_schema", "json_schema": {
            "name": "ticket_labels", "strict": True,
            "schema": strict_schema(prompt.response_schema)}}

    @classmethod
    def price(cls, model: str) -> Prices:
        return cls.prices.get(model) or Prices()

    def classify(self, redacted_text: str) -> Reply:
        try:
            completion = self._client.chat.completions.create(
                model=self.model, temperature=0, n=1, response_format=self._response_format,
                messages=[{"role": "system", "content": self.prompt.system_instruction},
                          {"role": "user", "content": self.prompt.user_message(redacted_text)}])
        except self._openai.APIError as exc:
            raise self._error(exc) from None
        except ValueError:  # a 200 whose body is no JSON, or not a completion's
            raise InvalidAnswer("response body is not a chat completion") from None
        usage = _usage(completion)
        if not completion.choices:
            raise BlockedAnswer("no choices", usage)
        choice = completion.choices[0]
        if choice.finish_reason == "content_filter":
            raise BlockedAnswer("answer blocked: content_filter", usage)
        if getattr(choice.message, "refusal", None):
            raise BlockedAnswer("the model refused", usage)
        try:
            answer = self.prompt.parse_answer(choice.message.content or "")
        except InvalidAnswer as exc:
            raise InvalidAnswer(str(exc), usage) from None
        return Reply(answer, usage)

    def _error(self, exc: Exception) -> LLMError:
        """The SDK's exception as what the run counts it as (never its text: it may quote
        the request)."""
        if isinstance(exc, self._openai.APITimeoutError):  # before its base class
            return RequestTimeout("timed out")
        if isinstance(exc, self._openai.APIConnectionError):
            return TransientError(f"connection failed: {type(exc).__name__}")
        if isinstance(exc, self._openai.APIStatusError):
            message = f"HTTP {exc.status_code}"
            if exc.status_code in RETRYABLE_STATUS:
                return TransientError(message, retry_after=retry_after_seconds(
                    exc.response.headers.get("retry-after")))
            return RequestRejected(message)
        # APIResponseValidationError and the like: a 200 whose body is no completion
        return InvalidAnswer("response body is not a chat completion")

    def problem(self) -> str | None:
        """GET {base_url}/models: free, and it proves the endpoint and the key."""
        try:
            models = [m.id for m in self._client.models.list()]
        except self._openai.APIError as exc:
            return self._error(exc).args[0]
        if models and self.model not in models:
            return f"the server does not list model {self.model!r} (it has: " \
                   f"{', '.join(models[:10])})"
        return None

    def close(self) -> None:
        self._client.close()


def _usage(completion: ChatCompletion) -> Usage:
    usage = completion.usage
    if usage is None:
        return Usage()
    details = usage.prompt_tokens_details
    return Usage(usage.prompt_tokens or 0, usage.completion_tokens or 0,
                 (details.cached_tokens or 0) if details is not None else 0)
