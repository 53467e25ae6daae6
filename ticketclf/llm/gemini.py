"""The Gemini backend, on the google-genai SDK: the only module that imports it.

One generateContent request per ticket: the system instruction, the redacted ticket as JSON,
temperature 0, JSON output constrained by the enum schema. The SDK's own retries stay off:
the escalator retries, so that every retry is counted, rate-limited and charged to the budget.
"""

from __future__ import annotations

from google import genai
from google.genai import errors, types

from .base import (
    BlockedAnswer,
    InvalidAnswer,
    Reply,
    RequestRejected,
    RequestTimeout,
    TransientError,
    Usage,
)
from .prompt import RESPONSE_SCHEMA, SYSTEM_INSTRUCTION, parse_answer, user_message

# Worth retrying: the request may succeed later. Never 400/401/403/404: it will not.
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_BLOCKED_FINISH = frozenset({
    types.FinishReason.SAFETY, types.FinishReason.RECITATION, types.FinishReason.BLOCKLIST,
    types.FinishReason.PROHIBITED_CONTENT, types.FinishReason.SPII,
    types.FinishReason.LANGUAGE,
})
_TRANSPORT_MODULES = ("httpx", "httpcore", "aiohttp")
# A label needs no long reasoning, and thinking tokens are billed as output.
MAX_OUTPUT_TOKENS = 1024


def _thinking(model: str) -> types.ThinkingConfig | None:
    """The least thinking each model family accepts (2.5 takes a budget, 3.x a level)."""
    if model.startswith("gemini-2.5-flash"):
        return types.ThinkingConfig(thinking_budget=0)
    if model.startswith("gemini-3"):
        return types.ThinkingConfig(thinking_level=types.ThinkingLevel.LOW)
    return None


class GeminiBackend:
    def __init__(self, api_key: str, model: str, timeout_seconds: float,
                 base_url: str | None = None) -> None:
        self.model = model
        self._client = genai.Client(api_key=api_key, http_options=types.HttpOptions(
            base_url=base_url, timeout=max(1, round(timeout_seconds * 1000))))  # milliseconds
        self._config = types.GenerateContentConfig(
            system_instruction=SYSTEM_INSTRUCTION,
            temperature=0.0,
            candidate_count=1,
            max_output_tokens=MAX_OUTPUT_TOKENS,
            response_mime_type="application/json",
            response_json_schema=RESPONSE_SCHEMA,
            thinking_config=_thinking(model),
        )

    def classify(self, redacted_text: str) -> Reply:
        try:
            response = self._client.models.generate_content(
                model=self.model, contents=user_message(redacted_text), config=self._config)
        except errors.APIError as exc:
            message = f"HTTP {exc.code} {exc.status or ''}".rstrip()
            if exc.code in RETRYABLE_STATUS:
                raise TransientError(message) from None
            raise RequestRejected(message) from None
        except (errors.UnknownApiResponseError, ValueError):  # JSON or schema errors alike
            raise InvalidAnswer("response body is not a generateContent response") from None
        except Exception as exc:  # noqa: BLE001 - transport errors differ by HTTP library
            raise _transport_error(exc) from None
        usage = _usage(response)
        if response.prompt_feedback is not None and response.prompt_feedback.block_reason:
            raise BlockedAnswer(f"prompt blocked: {response.prompt_feedback.block_reason}", usage)
        if not response.candidates:
            raise BlockedAnswer("no candidates", usage)
        candidate = response.candidates[0]
        if candidate.finish_reason in _BLOCKED_FINISH:
            raise BlockedAnswer(f"answer blocked: {candidate.finish_reason}", usage)
        parts = candidate.content.parts if candidate.content and candidate.content.parts else []
        text = "".join(p.text for p in parts if p.text and not p.thought)
        try:
            answer = parse_answer(text)
        except InvalidAnswer as exc:
            raise InvalidAnswer(str(exc), usage) from None
        return Reply(answer, usage)

    def close(self) -> None:
        self._client.close()


def _usage(response: types.GenerateContentResponse) -> Usage:
    meta = response.usage_metadata
    if meta is None:
        return Usage()
    return Usage(meta.prompt_token_count or 0,
                 (meta.candidates_token_count or 0) + (meta.thoughts_token_count or 0))


def _transport_error(exc: Exception) -> TransientError | RequestRejected:
    """Timeouts and connection failures, whichever HTTP library the SDK runs on (httpx,
    httpx2, aiohttp), told apart by class and module name rather than by importing each;
    anything else is unexpected and not retried."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    if names & {"TimeoutException", "TimeoutError", "ServerTimeoutError"}:
        return RequestTimeout("timed out")
    if isinstance(exc, OSError) or type(exc).__module__.startswith(_TRANSPORT_MODULES):
        return TransientError(f"connection failed: {type(exc).__name__}")
    return RequestRejected(f"unexpected {type(exc).__name__}")
