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

from minipaas.routing import nginxconf, routes
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
        "    location = /echo { content_by_lua_block {\n"
        "        ngx.req.read_body() ngx.say(ngx.req.get_method(), ' ', ngx.var.request_uri, ' ',\n"
        "                                    ngx.req.get_body_data() or '') } }\n"
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


def _held(front: Front, method: str = "GET", body: str = "", path: str = f"/routes?app={APP}") -> str:
    """The app's route as nginx holds it (GET on its control socket), or PUT there as a deploy does (or another
    `path` of the control server)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(30)
        sock.connect(str(front.folder / "control" / "control.sock"))
        sock.sendall(f"{method} {path} HTTP/1.0\r\nContent-Length: {len(body)}\r\n\r\n{body}".encode())
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer.decode().partition("\r\n\r\n")[2].strip()


def _get(port: int, host: str = f"{APP}.test", method: str = "GET", path: str = "/",
         body: str | None = None) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body, headers={"Host": host})
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


def test_requests_to_a_sleeping_app_are_held_and_ask_for_one_wake_then_go_on_with_their_method_and_body(
        front: Front) -> None:
    """The route `sleep`: 8 requests at once are held (none answered), the control server's long poll hands the app
    out once however many wait, and once the route is live again and the wake said done, each goes on to the app
    as it came (a POST's method, path and body kept)."""
    _route(front, "sleep")
    got: list[tuple[int, str]] = []
    requests = [threading.Thread(target=lambda i=i: got.append(
        _get(front.port, method="POST", path=f"/echo?n={i}%2F", body=f"body {i}"))) for i in range(8)]
    for request in requests:
        request.start()
    assert _held(front, path="/wakes?wait=10") == APP  # as soon as the first request asked
    assert _held(front, path="/wakes?wait=0.5") == ""  # handed out once, whatever the others asked
    assert got == []
    _held(front, "PUT", f"7=100 127.0.0.1:{front.live}")
    _held(front, "POST", "", path=f"/wakes?app={APP}")
    for request in requests:
        request.join(timeout=30)
    assert sorted(got) == [(200, f"POST /echo?n={i}%2F body {i}\n") for i in range(8)]


def test_a_failed_wake_answers_503_saying_why_and_the_last_request_times_are_served(front: Front) -> None:
    _route(front, f"7=100 127.0.0.1:{front.live}")
    assert _get(front.port) == (200, "live\n")
    _wait(lambda: APP in _held(front, path="/idle"), "the app's last request in /idle")
    now, last = routes.parse_last_requests(_held(front, path="/idle"))
    assert 0 <= now - last[APP] < 5
    assert "a sleeping app has no release routed" in _held(front, "PUT", f"sleep 7=100 127.0.0.1:{front.live}")
    _held(front, "PUT", "sleep")
    got: list[tuple[int, str]] = []
    request = threading.Thread(target=lambda: got.append(_get(front.port)))
    request.start()
    assert _held(front, path="/wakes?wait=10") == APP
    _held(front, "POST", "the image of release 7 is gone", path=f"/wakes?app={APP}")
    request.join(timeout=30)
    assert len(got) == 1 and got[0][0] == 503 and "could not be woken: the image of release 7 is gone" in got[0][1]
    # For a while after, requests get the same answer at once, asking for no wake.
    assert _get(front.port)[0] == 503 and _held(front, path="/wakes?wait=0.3") == ""


def test_the_route_of_a_sleeping_app_takes_no_address() -> None:
    assert routes.parse("a sleep\nb 7=100 10.0.0.1:5000\n") == {"a": [], "b": [(7, 100, ["10.0.0.1:5000"])]}
    assert routes.render({"a": [], "b": [(7, 100, ["10.0.0.1:5000"])]}) == "a sleep\nb 7=100 10.0.0.1:5000\n"
