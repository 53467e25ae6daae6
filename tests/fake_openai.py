"""A fake OpenAI-compatible server: real HTTP on 127.0.0.1 speaking the chat-completions wire
format (POST /v1/chat/completions, GET /v1/models), so tests go through the real `openai` SDK
with no mocks, as against vLLM, llama.cpp or Ollama.

Replies are scripted per request (tests/fake_http.py); once the script runs out,
`answer_for(ticket_text)` answers. `key` is the bearer token it accepts; None accepts any
(a local server).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from .fake_http import FakeServer, Reply, SeenRequest, running

API_KEY = "sk-fake-openai-3e8d51"  # distinctive, so tests can grep for leaks
MODEL = "local-model"


def completion_body(content: str | None, finish_reason: str = "stop", prompt_tokens: int = 150,
                    completion_tokens: int = 12, cached_tokens: int = 0,
                    refusal: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake", "object": "chat.completion", "created": 1_764_000_000,
        "model": MODEL,
        "choices": [{"index": 0, "finish_reason": finish_reason, "logprobs": None,
                     "message": {"role": "assistant", "content": content, "refusal": refusal}}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens,
                  "prompt_tokens_details": {"cached_tokens": cached_tokens}},
    }


def answer_body(category: str = "BILLING", sentiment: str = "NEUTRAL", confidence: float = 0.9,
                **usage: int) -> dict[str, Any]:
    """A completion whose answer is the given JSON."""
    return completion_body(json.dumps({"category": category, "sentiment": sentiment,
                                       "confidence": confidence}), **usage)


def error_body(code: int) -> dict[str, Any]:
    kind = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
            429: "rate_limit_error"}.get(code, "server_error")
    return {"error": {"message": f"fake {code}", "type": kind, "param": None, "code": None}}


def error(code: int, headers: dict[str, str] | None = None) -> Reply:
    return Reply(code, error_body(code), headers=headers or {})


@dataclass
class FakeOpenAI(FakeServer):
    answer_for: Callable[[str], dict[str, Any]] = field(default=lambda _text: answer_body())
    key: str | None = API_KEY
    models: list[str] = field(default_factory=lambda: [MODEL])

    def __post_init__(self) -> None:
        super().__init__()

    @property
    def url(self) -> str:
        return f"{self.origin}/v1"

    def ticket_text(self, body: dict[str, Any]) -> str | None:
        if "messages" not in body:
            return None
        text = body["messages"][-1]["content"]
        return json.loads(text[text.index("{"):])["ticket"]

    def refuse(self, seen: SeenRequest) -> Reply | None:
        if (seen.method, seen.path) not in {("POST", "/v1/chat/completions"),
                                            ("GET", "/v1/models")}:
            return Reply(404, error_body(404))
        if self.key is not None and seen.headers.get("authorization") != f"Bearer {self.key}":
            return Reply(401, error_body(401))
        return None

    def route(self, seen: SeenRequest) -> Reply:
        if seen.method == "GET":
            return Reply(body={"object": "list", "data": [
                {"id": m, "object": "model", "created": 0, "owned_by": "fake"}
                for m in self.models]})
        assert seen.ticket_text is not None
        return Reply(body=self.answer_for(seen.ticket_text))


@pytest.fixture
def fake_openai(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAI]:
    with running(FakeOpenAI(), monkeypatch) as server:
        assert isinstance(server, FakeOpenAI)
        yield server


@pytest.fixture
def openai_env(fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> FakeOpenAI:
    """The fake server configured as the CLI's LLM: backend, endpoint, model and key."""
    monkeypatch.setenv("TICKETCLF_LLM_BACKEND", "openai")
    monkeypatch.setenv("TICKETCLF_LLM_BASE_URL", fake_openai.url)
    monkeypatch.setenv("TICKETCLF_LLM_MODEL", MODEL)
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    return fake_openai
