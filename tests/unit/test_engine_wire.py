"""The engine's read-only HTTP client (adapters/engine/wire.py) against an HTTP server on a unix socket that
answers as the engine does: JSON, 404 with a message, a kept-alive connection it closes, no server at all."""

from __future__ import annotations

import http.server
import json
import socketserver
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from minipaas.adapters.engine import wire
from minipaas.errors import EngineError, NotFound


class _Engine(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as dockerd
    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        type(self).seen.append(self.path)
        if self.path.startswith("/containers/gone/"):
            self._answer(404, {"message": "No such container: gone"})
        elif self.path.startswith("/close"):
            self._answer(200, {"ok": True})
            self.close_connection = True  # the engine ends a kept-alive connection after this answer
        else:
            self._answer(200, {"path": self.path})

    def _answer(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


@pytest.fixture
def engine_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    path = tmp_path / "docker.sock"
    server = _Server(str(path), _Engine)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("DOCKER_HOST", f"unix://{path}")
    monkeypatch.delenv("DOCKER_TLS_VERIFY", raising=False)
    monkeypatch.setattr(wire, "_local", threading.local())  # no connection of another test
    _Engine.seen = []
    yield path
    server.shutdown()
    server.server_close()


def test_a_get_sends_filters_as_json_and_reads_the_answer(engine_socket: Path) -> None:
    answer = wire.get("/containers/json", all="1", filters={"label": ["minipaas.app=web"]})
    assert answer["path"] == "/containers/json?all=1&filters=%7B%22label%22%3A%5B%22minipaas.app%3Dweb%22%5D%7D"


def test_a_404_is_not_found_with_the_engines_words(engine_socket: Path) -> None:
    with pytest.raises(NotFound, match="No such container: gone"):
        wire.get("/containers/gone/json")


def test_a_kept_alive_connection_the_engine_closed_is_made_again(engine_socket: Path) -> None:
    assert wire.get("/close") == {"ok": True}
    assert wire.get("/after")["path"] == "/after"  # on a new connection, said to nobody
    assert _Engine.seen == ["/close", "/after"]


def test_no_engine_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path / 'none.sock'}")
    monkeypatch.setattr(wire, "_local", threading.local())
    with pytest.raises(EngineError, match=r"^cannot reach the Docker engine \(No such file or directory\); is "
                                          r"dockerd running"):
        wire.get("/containers/json")


@pytest.mark.parametrize("where", ["ssh://node", "npipe:////./pipe/docker_engine", "https://node:2376"])
def test_a_transport_it_does_not_speak_is_named(where: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", where)
    monkeypatch.setattr(wire, "_local", threading.local())
    with pytest.raises(EngineError, match="unix:// or plain tcp://"):
        wire.get("/containers/json")


def test_the_sdk_is_not_loaded_by_ps(tmp_path: Path) -> None:
    """`ps` asks the engine over the standard library: importing docker-py and requests would cost more than its
    questions (adapters/engine/__init__.py)."""
    import subprocess
    import sys

    script = ("import sys, minipaas.cli, minipaas.running.processes, minipaas.running.listing\n"
              "print(sorted(m for m in ('docker', 'requests', 'jinja2', 'dockerfile') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                            cwd=Path(__file__).resolve().parents[2])
    assert result.stdout.strip() == "[]", result.stdout
