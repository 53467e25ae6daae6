"""What the fake LLM servers share: real HTTP on 127.0.0.1, replies scripted per request
(status, body, delay, headers) in the order requests arrive, and every request recorded
(method, path, headers, JSON body) with the most requests it ever had in flight at once.

A subclass speaks one service's wire format: `refuse` turns away a wrong path or key,
`route` answers what the script leaves open, `ticket_text` unwraps the ticket from a body.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclass
class Reply:
    status: int = 200
    body: dict[str, Any] | str | None = None  # None: the server's own answer (`route`)
    delay: float = 0.0  # seconds before answering (a hanging server: longer than the timeout)
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class SeenRequest:
    method: str
    path: str
    headers: dict[str, str]  # names in lower case
    body: dict[str, Any]
    raw: bytes
    ticket_text: str | None = None  # the (redacted) ticket, unwrapped; None: no ticket


class FakeServer:
    """Subclasses override `refuse`, `route` and `ticket_text`."""

    def __init__(self) -> None:
        self.requests: list[SeenRequest] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._script: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        daemon=True)

    @property
    def origin(self) -> str:
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
        """Forget the scripted replies not used yet: `route` answers from now on."""
        with self._lock:
            self._script.clear()

    def start(self) -> FakeServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes delayed replies
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def refuse(self, seen: SeenRequest) -> Reply | None:
        """The error for a request no real server would answer (path, key), or None."""
        raise NotImplementedError

    def route(self, seen: SeenRequest) -> Reply:
        """The reply to a request the script leaves open (no reply, or one without a body)."""
        raise NotImplementedError

    def ticket_text(self, body: dict[str, Any]) -> str | None:
        raise NotImplementedError

    def _serve(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        length = int(handler.headers.get("Content-Length", 0))
        raw = handler.rfile.read(length)
        if len(raw) < length:  # the client died mid-request (a kill -9): no server sees this one
            return
        body = json.loads(raw) if raw else {}
        seen = SeenRequest(method, handler.path, {k.lower(): v for k, v in handler.headers.items()},
                           body, raw,
                           self.ticket_text(body))
        with self._lock:
            self.requests.append(seen)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            scripted = self._script.popleft() if self._script else None
        try:
            if scripted is not None and scripted.delay and self._stopping.wait(scripted.delay):
                return
            reply = self.refuse(seen)  # a wrong path or key wins over the script
            if reply is None and scripted is not None and scripted.body is not None:
                reply = scripted
            elif reply is None:
                own = self.route(seen)
                reply = own if scripted is None else Reply(scripted.status, own.body,
                                                           headers=scripted.headers)
            body_out = reply.body if reply.body is not None else {}
            data = body_out.encode() if isinstance(body_out, str) else json.dumps(body_out).encode()
            handler.send_response(reply.status)
            handler.send_header("Content-Type", "application/json; charset=UTF-8")
            for name, value in reply.headers.items():
                handler.send_header(name, value)
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)
        finally:
            with self._lock:
                self.in_flight -= 1


def _handler(server: FakeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _handle(self, method: str) -> None:
            # the client may give up first (its timeout): then there is nothing to answer
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                server._serve(self, method)

        def do_POST(self) -> None:  # noqa: N802 - the http.server naming
            self._handle("POST")

        def do_GET(self) -> None:  # noqa: N802
            self._handle("GET")

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    return Handler


@contextlib.contextmanager
def running(server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeServer]:
    """The server started, with no proxy between the SDK and it, and stopped after."""
    for name in ("NO_PROXY", "no_proxy"):  # a CI proxy must not stand between SDK and fake
        monkeypatch.setenv(name, ",".join(filter(None, [os.environ.get(name), "127.0.0.1"])))
    server.start()
    try:
        yield server
    finally:
        server.stop()
