"""The balancer (nginx/lua/minipaas/routes.lua) through a real nginx, with no engine: the front, http and vhost
files rendered as minipaas renders them, the routing table read from its file, containers played by ports of the
same nginx (one that answers) and ports nothing listens on (a container gone, a node lost).

Fast tier: skipped where nginx or its Lua module is not installed.
"""

from __future__ import annotations

import http.client
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from minipaas.routing import nginxconf
from minipaas.routing.proxy import LUA_MODULES
from minipaas.state.settings import SHARE_DIR
from tests.helpers.host import free_port

APP = "hello"
pytestmark = pytest.mark.skipif(shutil.which("nginx") is None or not all(m.is_file() for m in LUA_MODULES),
                                reason="needs nginx and its Lua module")


@dataclass
class Front:
    port: int  # the vhosts'
    live: int  # a port of the same nginx that answers `live`, as a container would
    closing: int  # one that closes each connection a second after the request came, unanswered
    folder: Path


def _wait(condition: object, what: str, limit: float = 15.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _answers(port: int) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", "/")
        conn.getresponse().read()
        return True
    except OSError:
        return False
    finally:
        conn.close()


@pytest.fixture
def front(tmp_path: Path) -> Iterator[Front]:
    """A private nginx as minipaas writes it (one worker, so that its round robin is the only one), its routing
    table empty until a test writes it and reloads."""
    lay = nginxconf.Layout(tmp_path / "nginx")
    for folder in (lay.sites, lay.run, lay.tmp, lay.control, tmp_path / "logs"):
        folder.mkdir(parents=True)
    spec = nginxconf.Front(templates=SHARE_DIR / "nginx", layout=lay, private=True, http_port=free_port(),
                           https_port=free_port(), ipv6=False, log_dir=tmp_path / "logs",
                           routes_file=lay.root / "routes", control_socket=lay.control / "control.sock",
                           acme_root=tmp_path / "acme", user="root", group="root", lua_modules=LUA_MODULES)
    live, closing = free_port(), free_port()
    lay.front_conf.write_text(nginxconf.front_conf(spec).replace("worker_processes auto;", "worker_processes 1;"))
    lay.http_conf.write_text(nginxconf.http_conf(spec, serves_https=False))
    (lay.sites / f"{APP}.conf").write_text(nginxconf.site_conf(spec, nginxconf.Site(app=APP, domains=(f"{APP}.test",))))
    # The container that answers, and a way to say a peer failed lately (as a refused or reset connection would).
    (lay.sites / "zz-container.conf").write_text(
        "lua_shared_dict minipaas_test 64k;\n"
        f"server {{\n    listen 127.0.0.1:{live};\n"
        "    location = /reached { content_by_lua_block { ngx.say(ngx.shared.minipaas_test:get('closing') or 0) } }\n"
        "    location = /mark { content_by_lua_block { ngx.shared.minipaas_failed:set(ngx.var.arg_peer, true, 60) } }\n"
        "    location / { return 200 \"live\\n\"; }\n}\n"
        # A container on its way out: it takes the request and closes the connection a second later, unanswered.
        f"server {{\n    listen 127.0.0.1:{closing};\n"
        "    location / { content_by_lua_block {\n"
        "        ngx.shared.minipaas_test:incr('closing', 1, 0) ngx.sleep(1) ngx.exit(444) } }\n}\n")
    (lay.root / "routes").write_text("")
    started = subprocess.run(["nginx", "-c", str(lay.front_conf), "-p", str(lay.root)], capture_output=True, text=True)
    assert started.returncode == 0, started.stderr
    try:
        _wait(lambda: _answers(live), "nginx to answer")
        yield Front(port=spec.http_port, live=live, closing=closing, folder=lay.root)
    finally:
        pid = int((lay.run / "front.pid").read_text())
        subprocess.run(["kill", f"-{signal.SIGQUIT.value}", str(pid)], check=False)


def _route(front: Front, line: str) -> None:
    """The app's route as the file has it, read by nginx's reload (routes.lua's `load`); returns once nginx's
    control socket says it holds it."""
    (front.folder / "routes").write_text(f"{APP} {line}\n")
    pid = int((front.folder / "run" / "front.pid").read_text())
    subprocess.run(["kill", "-HUP", str(pid)], check=True)
    _wait(lambda: _held(front) == line, "nginx to hold the route")


def _held(front: Front, method: str = "GET", body: str = "") -> str:
    """The app's route as nginx holds it (GET on its control socket), or PUT there as a deploy does."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(front.folder / "control" / "control.sock"))
        sock.sendall(f"{method} /routes?app={APP} HTTP/1.0\r\nContent-Length: {len(body)}\r\n\r\n{body}".encode())
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer.decode().partition("\r\n\r\n")[2].strip()


def _get(port: int, host: str = f"{APP}.test") -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", "/", headers={"Host": host})
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def _reached(front: Front) -> int:
    """How many requests release 6's closing container has taken."""
    conn = http.client.HTTPConnection("127.0.0.1", front.live, timeout=10)
    try:
        conn.request("GET", "/reached")
        return int(conn.getresponse().read())
    finally:
        conn.close()


def _mark(front: Front, peer: str) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", front.live, timeout=10)
    try:
        conn.request("GET", f"/mark?peer={peer}")
        assert conn.getresponse().status == 200
    finally:
        conn.close()


def test_every_peer_failed_lately_a_request_still_reaches_the_one_that_answers(front: Front) -> None:
    """Two containers gone (nothing listens) and one that answers, all three marked failed in the last seconds (a
    node lost, then a kept-alive connection closed under the live one): each request tries every one in turn, so
    every request reaches the live one. Before, when every peer had failed lately, each retry went back to the
    same peer, and a request that started on a gone one got the vhost's 503 after its tries, 2 in 3 of them."""
    dead = [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]
    live = f"127.0.0.1:{front.live}"
    _route(front, f"7=100 {dead[0]} {live} {dead[1]}")
    answers: Counter[tuple[int, str]] = Counter()
    for _ in range(12):
        for peer in (*dead, live):
            _mark(front, peer)
        answers[_get(front.port)] += 1
    assert answers == {(200, "live\n"): 12}, answers


def test_a_request_tries_each_peer_once_and_then_the_vhost_says_503(front: Front) -> None:
    """No peer answers: every one is tried (one try more than peers, the last again in turn), then the vhost's
    503; nginx's error log names each gone peer once per request."""
    dead = [f"127.0.0.1:{free_port()}" for _ in range(3)]
    _route(front, f"7=100 {' '.join(dead)}")
    log = front.folder.parent / "logs" / "front.error.log"
    before = log.read_text().count("Connection refused")
    assert _get(front.port) == (503, "this app is not running\n")
    refused = [line for line in log.read_text().splitlines() if "Connection refused" in line][before:]
    tried = Counter(line.split('upstream: "http://')[1].split("/")[0] for line in refused)
    assert set(tried) == set(dead) and sum(tried.values()) == len(dead) + 1, tried


def test_a_request_whose_containers_go_away_under_it_follows_the_route_changed_meanwhile(front: Front) -> None:
    """A request reaches release 6's one container, which closes the connection unanswered a second later (its
    service removed); meanwhile a deploy switched the route to release 7. The retry goes to release 7's container,
    not again to release 6's: the client gets `live`, not the vhost's 503."""
    _route(front, f"6=100 127.0.0.1:{front.closing}")
    got: list[tuple[int, str]] = []
    request = threading.Thread(target=lambda: got.append(_get(front.port)))
    request.start()
    _wait(lambda: _reached(front) == 1, "the request at release 6's container")
    _held(front, "PUT", f"7=100 127.0.0.1:{front.live}")
    request.join(timeout=30)
    assert got == [(200, "live\n")] and _reached(front) == 1
