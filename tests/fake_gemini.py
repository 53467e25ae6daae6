"""A fake Gemini server: real HTTP on 127.0.0.1, speaking the generateContent REST shape and
the Batch API's (batchGenerateContent with inline requests, batches/{id}), so tests go
through the real google-genai SDK (HttpOptions(base_url=...)) with no mocks.

Replies are scripted per request (tests/fake_http.py); once the script runs out,
`answer_for(ticket_text)` answers. A batch job answers `answer_for` for each of its tickets
once it is done: after `batch_polls` GETs that say it is running, in `batch_final_state`.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from .fake_http import FakeServer, Reply, SeenRequest, running

__all__ = ["API_KEY", "FakeBatch", "FakeGemini", "Reply", "SeenRequest", "answer_body",
           "blocked_answer_body", "blocked_prompt_body", "error", "error_body", "text_body"]

API_KEY = "fake-gemini-key-7f3a9c"  # distinctive, so tests can grep for leaks
_GENERATE = re.compile(r"^/v1(?:beta)?/models/(?P<model>[^/:]+):generateContent$")
_BATCH_CREATE = re.compile(r"^/v1(?:beta)?/models/(?P<model>[^/:]+):batchGenerateContent$")
_BATCH_GET = re.compile(r"^/v1(?:beta)?/batches/(?P<id>[^/:?]+)$")


def answer_body(category: str = "BILLING", sentiment: str = "NEUTRAL", confidence: float = 0.9,
                input_tokens: int = 120, output_tokens: int = 15,
                cached_tokens: int = 0) -> dict[str, Any]:
    """A successful response whose answer is the given JSON."""
    return text_body(json.dumps({"category": category, "sentiment": sentiment,
                                 "confidence": confidence}), input_tokens, output_tokens,
                     cached_tokens)


def text_body(text: str, input_tokens: int = 120, output_tokens: int = 15,
              cached_tokens: int = 0) -> dict[str, Any]:
    usage = {"promptTokenCount": input_tokens, "candidatesTokenCount": output_tokens,
             "totalTokenCount": input_tokens + output_tokens}
    if cached_tokens:
        usage["cachedContentTokenCount"] = cached_tokens
    return {
        "candidates": [{"content": {"parts": [{"text": text}], "role": "model"},
                        "finishReason": "STOP", "index": 0}],
        "usageMetadata": usage,
        "modelVersion": "fake",
    }


def blocked_prompt_body() -> dict[str, Any]:
    """The prompt was blocked: no candidates, a block reason."""
    return {"promptFeedback": {"blockReason": "SAFETY"},
            "usageMetadata": {"promptTokenCount": 100, "totalTokenCount": 100}}


def blocked_answer_body() -> dict[str, Any]:
    """A candidate stopped for safety, with no content."""
    return {"candidates": [{"finishReason": "SAFETY", "index": 0}],
            "usageMetadata": {"promptTokenCount": 100, "totalTokenCount": 100}}


def error_body(code: int, retry_delay: str | None = None) -> dict[str, Any]:
    """Google's error shape; `retry_delay` (e.g. "7s") adds the RetryInfo detail a 429 has."""
    status = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
              404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL",
              503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}.get(code, "UNKNOWN")
    error: dict[str, Any] = {"code": code, "message": f"fake {status}", "status": status}
    if retry_delay is not None:
        error["details"] = [{"@type": "type.googleapis.com/google.rpc.RetryInfo",
                             "retryDelay": retry_delay}]
    return {"error": error}


def error(code: int, retry_delay: str | None = None,
          headers: dict[str, str] | None = None) -> Reply:
    return Reply(code, error_body(code, retry_delay), headers=headers or {})


def _user_text(request: dict[str, Any]) -> str:
    text = request["contents"][0]["parts"][0]["text"]
    return json.loads(text[text.index("{"):])["ticket"]


@dataclass
class FakeBatch:
    """One batch job: its inline requests and how many more polls it stays running."""

    name: str
    model: str
    requests: list[dict[str, Any]]
    polls_left: int
    final_state: str

    @property
    def ticket_texts(self) -> list[str]:
        return [_user_text(r["request"]) for r in self.requests]


@dataclass
class FakeGemini(FakeServer):
    answer_for: Callable[[str], dict[str, Any]] = field(default=lambda _text: answer_body())
    batch_polls: int = 0  # GETs of a new job that still say "running"
    batch_final_state: str = "BATCH_STATE_SUCCEEDED"
    batches: dict[str, FakeBatch] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__()
        self._ids = itertools.count(1)

    @property
    def url(self) -> str:
        return self.origin

    @property
    def generate_requests(self) -> list[SeenRequest]:
        """The online requests (generateContent), without the Batch API's."""
        return [seen for seen in self.requests if _GENERATE.match(seen.path)]

    def ticket_text(self, body: dict[str, Any]) -> str | None:
        return _user_text(body) if "contents" in body else None

    def refuse(self, seen: SeenRequest) -> Reply | None:
        if not any(p.match(seen.path.partition("?")[0])
                   for p in (_GENERATE, _BATCH_CREATE, _BATCH_GET)):
            return Reply(404, error_body(404))
        if seen.headers.get("x-goog-api-key") != API_KEY:
            return Reply(401, error_body(401))
        return None

    def route(self, seen: SeenRequest) -> Reply:
        path = seen.path.partition("?")[0]
        if (create := _BATCH_CREATE.match(path)) is not None:
            name = f"batches/fake-{next(self._ids)}"
            self.batches[name] = FakeBatch(
                name, create["model"], seen.body["batch"]["inputConfig"]["requests"]["requests"],
                self.batch_polls, self.batch_final_state)
            return Reply(body=self._job(self.batches[name], polled=False))
        if (get := _BATCH_GET.match(path)) is not None:
            job = self.batches.get(f"batches/{get['id']}")
            return Reply(404, error_body(404)) if job is None else Reply(body=self._job(job))
        assert seen.ticket_text is not None
        return Reply(body=self.answer_for(seen.ticket_text))

    def _job(self, job: FakeBatch, polled: bool = True) -> dict[str, Any]:
        """The job as the API shows it (an operation with the batch as metadata)."""
        done = polled and job.polls_left <= 0
        if polled and not done:
            job.polls_left -= 1
        metadata: dict[str, Any] = {
            "@type": "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch",
            "model": f"models/{job.model}", "displayName": "fake",
            "state": job.final_state if done else "BATCH_STATE_RUNNING"}
        if done and job.final_state == "BATCH_STATE_SUCCEEDED":
            metadata["output"] = {"inlinedResponses": {"inlinedResponses": [
                {"response": self.answer_for(text), "metadata": r.get("metadata", {})}
                for r, text in zip(job.requests, job.ticket_texts, strict=True)]}}
        return {"name": job.name, "metadata": metadata, "done": done}


@pytest.fixture
def fake_gemini(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGemini]:
    with running(FakeGemini(), monkeypatch) as server:
        assert isinstance(server, FakeGemini)
        yield server


@pytest.fixture
def gemini_env(fake_gemini: FakeGemini, monkeypatch: pytest.MonkeyPatch) -> FakeGemini:
    """The fake server configured as the CLI's Gemini: key and endpoint in the environment."""
    monkeypatch.setenv("GEMINI_API_KEY", API_KEY)
    monkeypatch.setenv("TICKETCLF_GEMINI_BASE_URL", fake_gemini.url)
    return fake_gemini
