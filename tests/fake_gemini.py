"""A fake Gemini server: real HTTP on 127.0.0.1, speaking the generateContent REST shape, so
tests go through the real google-genai SDK (HttpOptions(base_url=...)) with no mocks.

Replies are scripted per request (status, body, delay) in the order requests arrive; once the
script runs out, `answer_for(ticket_text)` answers. The server records every request's path,
headers and JSON body and the most requests it ever had in flight at once.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

API_KEY = "fake-gemini-key-7f3a9c"  # distinctive, so tests can grep for leaks
_PATH = re.compile(r"^/v1(?:beta)?/models/(?P<model>[^/:]+):generateContent$")


def answer_body(category: str = "BILLING", sentiment: str = "NEUTRAL", confidence: float = 0.9,
                input_tokens: int = 120, output_tokens: int = 15) -> dict[str, Any]:
    """A successful response whose answer is the given JSON."""
    return text_body(json.dumps({"category": category, "sentiment": sentiment,
                                 "confidence": confidence}), input_tokens, output_tokens)


def text_body(text: str, input_tokens: int = 120, output_tokens: int = 15) -> dict[str, Any]:
    return {
        "candidates": [{"content": {"parts": [{"text": text}], "role": "model"},
                        "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": input_tokens,
                          "candidatesTokenCount": output_tokens,
                          "totalTokenCount": input_tokens + output_tokens},
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


def error_body(code: int) -> dict[str, Any]:
    status = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
              404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL",
              503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}.get(code, "UNKNOWN")
    return {"error": {"code": code, "message": f"fake {status}", "status": status}}


@dataclass
class Reply:
    status: int = 200
    body: dict[str, Any] | str | None = None  # None: answer_for(ticket text)
    delay: float = 0.0  # seconds before answering (a hanging server: longer than the timeout)


def error(code: int) -> Reply:
    return Reply(code, error_body(code))


@dataclass
class SeenRequest:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    raw: bytes

    @property
    def ticket_text(self) -> str:
        """The (redacted) ticket the client sent, unwrapped from the user message."""
        text = self.body["contents"][0]["parts"][0]["text"]
        return json.loads(text[text.index("{"):])["ticket"]


@dataclass
class FakeGemini:
    answer_for: Callable[[str], dict[str, Any]] = field(default=lambda _text: answer_body())
    requests: list[SeenRequest] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0

    def __post_init__(self) -> None:
        self._script: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def count(self) -> int:
        return len(self.requests)

    def script(self, *replies: Reply) -> None:
        """Replies for the next requests, in order of arrival."""
        with self._lock:
            self._script.extend(replies)

    def clear_script(self) -> None:
        """Forget the scripted replies not used yet: answer_for answers from now on."""
        with self._lock:
            self._script.clear()

    def start(self) -> FakeGemini:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes delayed replies
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        raw = handler.rfile.read(int(handler.headers.get("Content-Length", 0)))
        seen = SeenRequest(handler.path, dict(handler.headers.items()), json.loads(raw), raw)
        with self._lock:
            self.requests.append(seen)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            reply = self._script.popleft() if self._script else Reply()
        try:
            if reply.delay and self._stopping.wait(reply.delay):
                return
            if not _PATH.match(handler.path):
                reply = Reply(404, error_body(404))
            elif handler.headers.get("x-goog-api-key") != API_KEY:
                reply = Reply(401, error_body(401))
            body = reply.body if reply.body is not None else self.answer_for(seen.ticket_text)
            data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            handler.send_response(reply.status)
            handler.send_header("Content-Type", "application/json; charset=UTF-8")
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)
        finally:
            with self._lock:
                self.in_flight -= 1


def _handler(server: FakeGemini) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802 - the http.server naming
            # the client may give up first (its timeout): then there is nothing to answer
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                server._serve(self)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    return Handler


@pytest.fixture
def fake_gemini(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGemini]:
    for name in ("NO_PROXY", "no_proxy"):  # a CI proxy must not stand between SDK and fake
        monkeypatch.setenv(name, ",".join(filter(None, [os.environ.get(name), "127.0.0.1"])))
    server = FakeGemini().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def gemini_env(fake_gemini: FakeGemini, monkeypatch: pytest.MonkeyPatch) -> FakeGemini:
    """The fake server configured as the CLI's Gemini: key and endpoint in the environment."""
    monkeypatch.setenv("GEMINI_API_KEY", API_KEY)
    monkeypatch.setenv("TICKETCLF_GEMINI_BASE_URL", fake_gemini.url)
    return fake_gemini
