"""A local HTTP receiver a test runs (http.server in a thread on 127.0.0.1): what notifications POST to it is
kept, per path, and each path answers the statuses a test lines up for it (200 once they are used up)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.helpers.faults import wait_for


@dataclass
class Received:
    path: str
    status: int  # what the receiver answered
    body: dict[str, object]


@dataclass
class Receiver:
    port: int
    received: list[Received] = field(default_factory=list)
    answers: dict[str, list[int]] = field(default_factory=dict)  # path -> statuses to answer, in order
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def at(self, path: str, *, ok: bool = True) -> list[dict[str, object]]:
        """The bodies POSTed to the path (with its query), those answered 2xx only unless `ok` is False."""
        with self.lock:
            return [r.body for r in self.received if r.path == path and (r.status < 300 or not ok)]

    def wait(self, path: str, check: object = None, seconds: float = 60) -> dict[str, object]:
        """The first body delivered to the path for which `check(body)` holds (any, without one)."""
        def found() -> dict[str, object] | None:
            return next((b for b in self.at(path) if check is None or check(b)), None)  # type: ignore[operator]

        assert wait_for(lambda: found() is not None, seconds), f"nothing delivered to {path}: {self.received}"
        body = found()
        assert body is not None
        return body


@contextmanager
def receiver() -> Iterator[Receiver]:
    state = Receiver(port=0)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            with state.lock:
                queued = state.answers.get(self.path, [])
                status = queued.pop(0) if queued else 200
                state.received.append(Received(self.path, status, body))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
