"""The Gemini backend, on the google-genai SDK: the only module that imports it, and only
when a Gemini backend is built (the SDK takes over half a second to import).

One generateContent request per ticket: the system instruction, the redacted ticket as JSON,
temperature 0, JSON output constrained by the enum schema, explicit safety settings. The SDK's
own retries stay off: the escalator retries, so that every retry is counted, rate-limited and
charged to the budget, waiting what the server asks for (RetryInfo, Retry-After) when it does.
Batch mode sends the same requests as one Batch API job (`submit_batch`, `poll_batch`).
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import ConfigError
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
from .batch import BatchPoll
from .limits import retry_after_seconds
from .prompt import Prompt

if TYPE_CHECKING:
    from google.genai import types

# Worth retrying: the request may succeed later. Never 400/401/403/404: it will not.
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
# A label needs no long reasoning, and thinking tokens are billed as output.
MAX_OUTPUT_TOKENS = 1024
# One threshold for the four adjustable harm categories. Google's default blocks medium
# probability and up, which would silently block the furious customers who most need an
# answer; a label for an abusive ticket harms no one.
SAFETY_VARIABLE = "TICKETCLF_GEMINI_SAFETY_THRESHOLD"
DEFAULT_SAFETY_THRESHOLD = "BLOCK_ONLY_HIGH"
SAFETY_CATEGORIES = ("HARM_CATEGORY_HARASSMENT", "HARM_CATEGORY_HATE_SPEECH",
                     "HARM_CATEGORY_SEXUALLY_EXPLICIT", "HARM_CATEGORY_DANGEROUS_CONTENT")
SAFETY_THRESHOLDS = ("OFF", "BLOCK_NONE", "BLOCK_ONLY_HIGH", "BLOCK_MEDIUM_AND_ABOVE",
                     "BLOCK_LOW_AND_ABOVE")
# The Batch API bills half the standard rate.
BATCH_PRICE_FACTOR = 0.5
_RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
_DURATION = re.compile(r"^(\d+(?:\.\d*)?)s$")  # google.protobuf.Duration in JSON: "12.5s"
_BATCH_SUCCEEDED = frozenset({"JOB_STATE_SUCCEEDED", "JOB_STATE_PARTIALLY_SUCCEEDED"})
_BATCH_ENDED = frozenset({"JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED"})


def _thinking(model: str) -> types.ThinkingConfig | None:
    """The least thinking each model family accepts (2.5 takes a budget, 3.x a level)."""
    from google.genai import types

    if model.startswith("gemini-2.5-flash"):
        return types.ThinkingConfig(thinking_budget=0)
    if model.startswith("gemini-3"):
        return types.ThinkingConfig(thinking_level=types.ThinkingLevel.LOW)
    return None


class GeminiBackend(LLMBackend):
    name = "gemini"
    key_variable = "GEMINI_API_KEY"
    base_url_variable = "TICKETCLF_GEMINI_BASE_URL"
    default_model = "gemini-3.8-flash"
    batch_price_factor = BATCH_PRICE_FACTOR
    # Gemini API paid tier, standard, text. Google lists gemini-3.8-flash's as the promotional
    # rate until 2026-12-31; from 2027-01-01 they are 1.50 / 7.50. Input read from Google's
    # implicit prompt cache is billed at a tenth of the input rate.
    prices: ClassVar[dict[str, Prices]] = {
        "gemini-3.8-flash": Prices(0.75, 3.75, cached_input_per_million=0.075)}

    def __init__(self, connection: Connection, prompt: Prompt) -> None:
        super().__init__(connection, prompt)
        from google import genai
        from google.genai import errors, types

        self._errors = errors
        self._blocked_finish = frozenset({
            types.FinishReason.SAFETY, types.FinishReason.RECITATION,
            types.FinishReason.BLOCKLIST, types.FinishReason.PROHIBITED_CONTENT,
            types.FinishReason.SPII, types.FinishReason.LANGUAGE,
        })
        self._client = genai.Client(api_key=connection.api_key, http_options=types.HttpOptions(
            base_url=connection.base_url,
            timeout=max(1, round(connection.timeout_seconds * 1000))))  # milliseconds
        self._config = types.GenerateContentConfig(
            system_instruction=prompt.system_instruction,
            temperature=0.0,
            candidate_count=1,
            max_output_tokens=MAX_OUTPUT_TOKENS,
            response_mime_type="application/json",
            response_json_schema=prompt.response_schema,
            thinking_config=_thinking(self.model),
            safety_settings=[types.SafetySetting(category=types.HarmCategory(category),
                                                 threshold=types.HarmBlockThreshold(threshold))
                             for category, threshold in safety_settings().items()],
        )

    def classify(self, redacted_text: str) -> Reply:
        try:
            response = self._client.models.generate_content(
                model=self.model, contents=self.prompt.user_message(redacted_text),
                config=self._config)
        except Exception as exc:  # noqa: BLE001 - sorted by _error
            raise self._error(exc) from None
        return self._reply(response)

    def _error(self, exc: Exception) -> LLMError:
        """The SDK's or the HTTP library's exception as what the run counts it as."""
        if isinstance(exc, self._errors.APIError):
            message = f"HTTP {exc.code} {exc.status or ''}".rstrip()
            if exc.code in RETRYABLE_STATUS:
                return TransientError(message, retry_after=_server_delay(exc))
            return RequestRejected(message)
        if isinstance(exc, self._errors.UnknownApiResponseError | ValueError):  # JSON, schema
            return InvalidAnswer("response body is not a generateContent response")
        return _transport_error(exc)

    def _reply(self, response: types.GenerateContentResponse) -> Reply:
        """The validated answer in a response; raises BlockedAnswer or InvalidAnswer."""
        usage = _usage(response)
        if response.prompt_feedback is not None and response.prompt_feedback.block_reason:
            raise BlockedAnswer(f"prompt blocked: {response.prompt_feedback.block_reason}", usage)
        if not response.candidates:
            raise BlockedAnswer("no candidates", usage)
        candidate = response.candidates[0]
        if candidate.finish_reason in self._blocked_finish:
            raise BlockedAnswer(f"answer blocked: {candidate.finish_reason}", usage)
        parts = candidate.content.parts if candidate.content and candidate.content.parts else []
        text = "".join(p.text for p in parts if p.text and not p.thought)
        try:
            answer = self.prompt.parse_answer(text)
        except InvalidAnswer as exc:
            raise InvalidAnswer(str(exc), usage) from None
        return Reply(answer, usage)

    def submit_batch(self, texts: Mapping[str, str]) -> str:
        """One Batch API job asking about these redacted texts (by cache key, which each
        inline request carries as metadata); the job's name. Raises LLMError."""
        from google.genai import types

        try:
            job = self._client.batches.create(
                model=self.model,
                src=[types.InlinedRequest(contents=self.prompt.user_message(text),
                                          config=self._config, metadata={"key": key})
                     for key, text in texts.items()],
                config=types.CreateBatchJobConfig(display_name="ticketclf"))
        except Exception as exc:  # noqa: BLE001 - sorted by _error
            raise self._error(exc) from None
        if not job.name:
            raise InvalidAnswer("the Batch API named no job")
        return job.name

    def poll_batch(self, name: str, keys: Sequence[str]) -> BatchPoll:
        """Where job `name` stands; once it succeeded, each ticket's reply or error by key
        (`keys`: the order the job was sent in). Raises LLMError when the poll fails."""
        try:
            job = self._client.batches.get(name=name)
        except Exception as exc:  # noqa: BLE001 - sorted by _error
            raise self._error(exc) from None
        state = job.state.value if job.state is not None else "JOB_STATE_UNSPECIFIED"
        if state in _BATCH_ENDED:
            return BatchPoll("ended", detail=state)
        if state not in _BATCH_SUCCEEDED:
            return BatchPoll("running", detail=state)
        outcomes: dict[str, Reply | LLMError] = {}
        responses = job.dest.inlined_responses if job.dest is not None else None
        for i, item in enumerate(responses or []):
            key = (item.metadata or {}).get("key") or (keys[i] if i < len(keys) else None)
            if key is None:
                continue
            if item.error is not None or item.response is None:
                outcomes[key] = RequestRejected(
                    f"batch item failed: {item.error.code if item.error else 'no response'}")
                continue
            try:
                outcomes[key] = self._reply(item.response)
            except LLMError as exc:
                outcomes[key] = exc
        return BatchPoll("succeeded", outcomes, state)

    def close(self) -> None:
        self._client.close()


def safety_settings() -> dict[str, str]:
    """The threshold per harm category: TICKETCLF_GEMINI_SAFETY_THRESHOLD, else
    BLOCK_ONLY_HIGH, for each of the four adjustable categories."""
    threshold = (os.environ.get(SAFETY_VARIABLE) or DEFAULT_SAFETY_THRESHOLD).strip().upper()
    if threshold not in SAFETY_THRESHOLDS:
        raise ConfigError(f"{SAFETY_VARIABLE}={threshold!r} is not a safety threshold",
                          f"use one of: {', '.join(SAFETY_THRESHOLDS)}")
    return dict.fromkeys(SAFETY_CATEGORIES, threshold)


def _server_delay(exc: Any) -> float | None:
    """The wait the server asked for: RetryInfo.retryDelay in the error's details, else the
    Retry-After header."""
    error = exc.details.get("error", exc.details) if isinstance(exc.details, dict) else {}
    for detail in error.get("details") or []:
        if isinstance(detail, dict) and detail.get("@type") == _RETRY_INFO:
            match = _DURATION.match(str(detail.get("retryDelay", "")))
            if match:
                return float(match[1])
    headers = getattr(exc.response, "headers", None)
    return retry_after_seconds(headers.get("retry-after") if headers is not None else None)


def _usage(response: types.GenerateContentResponse) -> Usage:
    meta = response.usage_metadata
    if meta is None:
        return Usage()
    return Usage(meta.prompt_token_count or 0,
                 (meta.candidates_token_count or 0) + (meta.thoughts_token_count or 0),
                 meta.cached_content_token_count or 0)


def _transport_errors() -> tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...]]:
    """Timeout and transport exception classes of the HTTP library the SDK runs on: httpx,
    or its fork httpx2 (the SDK takes whichever is installed)."""
    timeouts: list[type[BaseException]] = [TimeoutError]
    transports: list[type[BaseException]] = [OSError]
    for name in ("httpx", "httpx2"):
        try:
            library = importlib.import_module(name)
        except ImportError:
            continue
        timeouts.append(library.TimeoutException)
        transports.append(library.TransportError)
    return tuple(timeouts), tuple(transports)


def _transport_error(exc: Exception) -> TransientError | RequestRejected:
    """Timeouts and connection failures are worth retrying; anything else is unexpected."""
    timeouts, transports = _transport_errors()
    if isinstance(exc, timeouts):
        return RequestTimeout("timed out")
    if isinstance(exc, transports):
        return TransientError(f"connection failed: {type(exc).__name__}")
    return RequestRejected(f"unexpected {type(exc).__name__}")
