"""Traffic by app and version through a real nginx: the routing table holds several releases of an app with
weights, a client stays on the release it was given (cookie, connection), a tester pins one (header, release
URL), and nginx counts each release's requests itself. The apps are small HTTP servers on loopback ports
this test starts (no container): what is tested is nginx and its Lua."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from minipaas.routing import metrics, routes
from minipaas.routing.routes import Version
from minipaas.state.settings import Settings, load
from tests.helpers.host import Paas, free_port, paas_host

# Needs nginx (not the engine's containers): the house's marker for the slower tier.
pytestmark = pytest.mark.engine
APP = "hello"


@dataclass
class Backend:
    """One release's app: answers `release N`, and 500 to every `fail_every`-th request."""

    release: int
    fail_every: int = 0
    seen: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    @property
    def address(self) -> str:
        assert self.server is not None
        return f"127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> Backend:
        backend = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # nginx keeps its connections to the app alive
            disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed ACK between

            def do_GET(self) -> None:
                if self.headers.get("Upgrade") == "websocket":
                    return self.upgraded()
                with backend.lock:
                    backend.seen += 1
                    failing = backend.fail_every and backend.seen % backend.fail_every == 0
                body = f"release {backend.release}\n".encode()
                self.send_response(500 if failing else 200)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Set-Cookie", "session=app")  # the app's own: kept beside mp_release
                self.end_headers()
                self.wfile.write(body)

            def upgraded(self) -> None:
                """A websocket's stand-in: after the 101, every line comes back with the release's number."""
                self.send_response(101)
                self.send_header("Upgrade", "websocket")
                self.send_header("Connection", "Upgrade")
                self.end_headers()
                for line in self.rfile:
                    self.wfile.write(f"release {backend.release}: ".encode() + line)
                self.close_connection = True

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory, engine_ready: None) -> Iterator[tuple[Paas, Settings]]:
    """One minipaas home with its private nginx and the app `hello` (a vhost, no container) for the module. It asks
    for the engine itself: a module's fixture is made before the function-scoped gate of `engine` tests runs."""
    with paas_host(tmp_path_factory.mktemp("versions") / "work", MINIPAAS_METRICS_PORT=str(free_port())) as paas:
        paas.run("apps:create", APP)
        yield paas, load(paas.env)


@pytest.fixture
def backends() -> Iterator[list[Backend]]:
    started: list[Backend] = []
    yield started
    for backend in started:
        backend.stop()


def route(settings: Settings, started: list[Backend], *weights: tuple[Backend, int]) -> None:
    for backend, _ in weights:
        if backend.server is None:
            started.append(backend.start())
    routes.set_versions(settings, APP, [Version(b.release, w, {b.address: f"c{b.release}"}) for b, w in weights])


@dataclass
class Answer:
    status: int
    body: str
    cookies: list[str]


def ask(conn: http.client.HTTPConnection, *, host: str = f"{APP}.paas.test",
        headers: dict[str, str] | None = None) -> Answer:
    conn.request("GET", "/", headers={"Host": host, **(headers or {})})
    response = conn.getresponse()
    body = response.read().decode()
    return Answer(response.status, body, [v for k, v in response.getheaders() if k.lower() == "set-cookie"])


def once(paas: Paas, **kwargs: object) -> Answer:
    """One request on a connection of its own: a new client."""
    conn = http.client.HTTPConnection("127.0.0.1", paas.port, timeout=10)
    try:
        return ask(conn, **kwargs)  # type: ignore[arg-type]
    finally:
        conn.close()


def test_one_version_routes_as_before_and_sets_no_cookie(host: tuple[Paas, Settings], backends: list[Backend]) -> None:
    paas, settings = host
    stable = Backend(12)
    route(settings, backends, (stable, 100))
    answer = once(paas)
    assert (answer.status, answer.body, answer.cookies) == (200, "release 12\n", ["session=app"])
    assert routes.nginx_versions(settings, APP) == [(12, 100, [stable.address])]
    assert routes.nginx_view(settings, APP) == [stable.address]


def test_new_clients_split_by_weight(host: tuple[Paas, Settings], backends: list[Backend]) -> None:
    paas, settings = host
    stable, canary = Backend(12), Backend(13)
    route(settings, backends, (stable, 90), (canary, 10))
    got: Counter[str] = Counter()
    cookies: Counter[tuple[str, ...]] = Counter()
    for _ in range(20_000):
        answer = once(paas)
        got[answer.body] += 1
        cookies[tuple(answer.cookies)] += 1
    share = got["release 13\n"] / 20_000
    assert 0.08 <= share <= 0.12, got
    assert got["release 12\n"] + got["release 13\n"] == 20_000
    # Each new client is told its release, after the app's own cookie.
    assert set(cookies) == {("session=app", f"mp_release={n}; Path=/; HttpOnly; SameSite=Lax") for n in (12, 13)}


def test_a_client_with_the_cookie_stays_on_its_release(host: tuple[Paas, Settings], backends: list[Backend]) -> None:
    paas, settings = host
    stable, canary = Backend(12), Backend(13)
    route(settings, backends, (stable, 90), (canary, 10))
    for release in (12, 13):
        answers = [once(paas, headers={"Cookie": f"theme=dark; mp_release={release}"}) for _ in range(1000)]
        assert {a.body for a in answers} == {f"release {release}\n"}
        assert {tuple(a.cookies) for a in answers} == {("session=app",)}  # already named: not set again
    # A cookie naming a release no longer routed counts for nothing: the weights choose, and the cookie is set.
    answer = once(paas, headers={"Cookie": "mp_release=11"})
    assert answer.body in ("release 12\n", "release 13\n") and len(answer.cookies) == 2


def test_a_keep_alive_connection_stays_on_one_version(host: tuple[Paas, Settings], backends: list[Backend]) -> None:
    paas, settings = host
    stable, canary = Backend(12), Backend(13)
    route(settings, backends, (stable, 50), (canary, 50))
    firsts = set()
    for _ in range(20):
        conn = http.client.HTTPConnection("127.0.0.1", paas.port, timeout=10)
        with contextlib.closing(conn):
            bodies = {ask(conn).body for _ in range(50)}  # no cookie sent back: the connection alone keeps it
        assert len(bodies) == 1, bodies
        firsts |= bodies
    assert firsts == {"release 12\n", "release 13\n"}  # and different connections do land on both


def test_the_header_and_the_release_url_reach_the_named_release(host: tuple[Paas, Settings],
                                                                 backends: list[Backend]) -> None:
    paas, settings = host
    stable, canary = Backend(12), Backend(13)
    route(settings, backends, (stable, 100), (canary, 0))
    for _ in range(50):
        assert once(paas, headers={"X-Minipaas-Release": "13"}).body == "release 13\n"
        assert once(paas, host=f"v13.{APP}.paas.test").body == "release 13\n"
        assert once(paas, host=f"v12.{APP}.paas.test").body == "release 12\n"
        assert once(paas).body == "release 12\n"  # weight 0: no new client, only pins
    # The header overrides the cookie; a header naming no routed release does nothing.
    assert once(paas, headers={"X-Minipaas-Release": "13", "Cookie": "mp_release=12"}).body == "release 13\n"
    assert once(paas, headers={"X-Minipaas-Release": "99"}).body == "release 12\n"
    missing = once(paas, host=f"v11.{APP}.paas.test")
    assert (missing.status, missing.body) == (404, f"release 11 of {APP} is not running\n")
    # With one version the release URL still answers only for it.
    route(settings, backends, (stable, 100))
    assert once(paas, host=f"v12.{APP}.paas.test").body == "release 12\n"
    assert once(paas, host=f"v13.{APP}.paas.test").status == 404


def test_nginx_refuses_a_table_whose_weights_do_not_add_up(host: tuple[Paas, Settings]) -> None:
    _, settings = host
    for body in ("12=90 127.0.0.1:1 13=20 127.0.0.1:2", "12=100", "13=50 127.0.0.1:1 12=50 127.0.0.1:2",
                 "12=100 127.0.0.1:1 x"):
        with pytest.raises(routes.ProxyError, match="HTTP 400"):
            routes.control(settings, f"/routes?app={APP}", "PUT", body)


def workers(settings: Settings) -> set[int]:
    master = int((settings.nginx_dir / "run" / "front.pid").read_text())
    return set(map(int, Path(f"/proc/{master}/task/{master}/children").read_text().split()))


def reload(settings: Settings) -> None:
    """nginx reloaded: its new workers read the table from the file (init_by_lua), the old ones leave."""
    before = workers(settings)
    os.kill(int((settings.nginx_dir / "run" / "front.pid").read_text()), signal.SIGHUP)
    deadline = time.monotonic() + 30
    while workers(settings) & before:
        assert time.monotonic() < deadline, "nginx did not reload"
        time.sleep(0.05)


def test_a_reloaded_nginx_routes_the_versions_as_before(host: tuple[Paas, Settings], backends: list[Backend]) -> None:
    paas, settings = host
    stable, canary = Backend(12), Backend(13)
    route(settings, backends, (stable, 90), (canary, 10))
    reload(settings)
    assert routes.nginx_versions(settings, APP) == [(12, 90, [stable.address]), (13, 10, [canary.address])]
    assert once(paas, headers={"Cookie": "mp_release=13"}).body == "release 13\n"


def totals(settings: Settings, *releases: int) -> dict[int, metrics.Counts]:
    raw = metrics.read(settings, APP, list(releases))
    return {r: raw.totals.get(r, metrics.Counts()) for r in releases}


def counted(settings: Settings, before: dict[int, metrics.Counts], requests: int) -> dict[int, metrics.Counts]:
    """The totals once nginx counted `requests` more than `before` (it counts in the log phase, after the client
    has its answer)."""
    deadline = time.monotonic() + 10
    while True:
        after = totals(settings, *before)
        done = sum(after[r].requests - before[r].requests for r in before)
        if done >= requests:
            return after
        assert time.monotonic() < deadline, f"nginx counted {done} of {requests} requests"
        time.sleep(0.05)


def test_nginx_counts_each_releases_requests_as_the_client_does(host: tuple[Paas, Settings],
                                                                backends: list[Backend]) -> None:
    paas, settings = host
    stable, canary = Backend(32), Backend(33, fail_every=5)  # the canary answers 500 to every 5th request
    route(settings, backends, (stable, 50), (canary, 50))
    before = totals(settings, 32, 33)
    seen: Counter[tuple[str, int]] = Counter()
    for _ in range(4000):
        answer = once(paas)
        seen[(answer.body, answer.status // 100)] += 1
    after = counted(settings, before, 4000)
    for release in (32, 33):
        for klass in (2, 5):
            got = after[release].classes.get(klass, 0) - before[release].classes.get(klass, 0)
            expected = seen[(f"release {release}\n", klass)]
            assert abs(got - expected) <= max(1, expected * 0.01), (release, klass, got, expected)
    requests = {r: after[r].requests - before[r].requests for r in (32, 33)}
    assert requests[32] + requests[33] == 4000 and requests[33] == canary.seen
    errors = (after[33].classes.get(5, 0) - before[33].classes.get(5, 0)) / requests[33]
    assert 0.19 <= errors <= 0.21 and after[32].classes.get(5, 0) == 0
    # The windows say the same: every request of this test fell within the last minute or two.
    raw = metrics.read(settings, APP, [32, 33])
    fifteen = {r: metrics.summary(raw, r)[2] for r in (32, 33)}
    assert fifteen[33].errors == pytest.approx(0.2, abs=0.01) and fifteen[32].errors == 0
    assert fifteen[32].requests == pytest.approx(requests[32], rel=0.01)
    p99 = fifteen[32].percentiles[99]
    assert p99 is not None and 0 <= p99 < 1000


def test_a_release_whose_containers_do_not_answer_counts_the_503s(host: tuple[Paas, Settings],
                                                                   backends: list[Backend]) -> None:
    paas, settings = host
    stable = Backend(42)
    route(settings, backends, (stable, 100))
    dead = free_port()  # nothing listens there: nginx's 502, answered as the vhost's 503
    routes.set_versions(settings, APP, [Version(42, 50, {stable.address: "c42"}),
                                        Version(43, 50, {f"127.0.0.1:{dead}": "c43"})])
    before = totals(settings, 43)
    answers = [once(paas, headers={"X-Minipaas-Release": "43"}) for _ in range(20)]
    assert {a.status for a in answers} == {503}
    after = counted(settings, before, 20)
    assert after[43].classes.get(5, 0) - before[43].classes.get(5, 0) == 20


def test_counts_a_worker_holds_reach_the_dict_when_no_request_follows(host: tuple[Paas, Settings],
                                                                      backends: list[Backend]) -> None:
    """A worker moves its counts into the shared dict at its first request a quarter second after its last move,
    or by its timer: two requests on one kept-alive connection (one worker), the first moving what the worker
    held, leave the second's count to the timer alone, with nothing after them."""
    paas, settings = host
    stable = Backend(82)  # a release no other test routes: Prometheus' test reads 52's totals since nginx began
    route(settings, backends, (stable, 100))
    for _ in range(3):
        before = totals(settings, 82)
        conn = http.client.HTTPConnection("127.0.0.1", paas.port, timeout=10)
        try:
            assert [ask(conn).status, ask(conn).status] == [200, 200]
        finally:
            conn.close()
        assert counted(settings, before, 2)[82].requests == before[82].requests + 2


def test_prometheus_reads_every_routed_releases_totals_on_loopback(host: tuple[Paas, Settings],
                                                                   backends: list[Backend]) -> None:
    paas, settings = host
    stable, canary = Backend(52), Backend(53)
    route(settings, backends, (stable, 50), (canary, 50))
    before = totals(settings, 52, 53)
    for _ in range(200):
        once(paas)
    counted(settings, before, 200)
    conn = http.client.HTTPConnection("127.0.0.1", settings.metrics_port, timeout=10)
    with contextlib.closing(conn):
        conn.request("GET", "/metrics")
        response = conn.getresponse()
        text = response.read().decode()
    assert response.status == 200 and response.getheader("Content-Type", "").startswith("text/plain")
    values = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
              if line and not line.startswith("#")}
    ok = [values[f'minipaas_requests_total{{app="{APP}",release="{r}",code_class="2xx"}}'] for r in (52, 53)]
    assert sum(ok) == 200 and all(n > 0 for n in ok)
    for r in (52, 53):
        labels = f'app="{APP}",release="{r}"'
        count = values[f"minipaas_request_duration_seconds_count{{{labels}}}"]
        assert values[f'minipaas_request_duration_seconds_bucket{{{labels},le="+Inf"}}'] == count
        assert values[f'minipaas_request_duration_seconds_bucket{{{labels},le="0.001"}}'] <= count
        assert values[f"minipaas_request_duration_seconds_sum{{{labels}}}"] >= 0
    assert "# TYPE minipaas_request_duration_seconds histogram" in text


def test_the_metrics_command_shows_each_routed_releases_figures(host: tuple[Paas, Settings],
                                                                backends: list[Backend]) -> None:
    paas, settings = host
    stable, canary = Backend(62), Backend(63, fail_every=4)
    route(settings, backends, (stable, 75), (canary, 25))
    before = totals(settings, 62, 63)
    for _ in range(400):
        once(paas, headers={"X-Minipaas-Release": "63"})
    for _ in range(200):
        once(paas, headers={"X-Minipaas-Release": "62"})
    counted(settings, before, 600)
    found = json.loads(paas.run("metrics", APP, "--json").stdout)
    assert [(r["release"], r["weight"]) for r in found] == [(62, 75), (63, 25)]
    assert found[1]["total"] == {"requests": 400, "1xx": 0, "2xx": 300, "3xx": 0, "4xx": 0, "5xx": 100}
    five = found[1]["windows"]["5m"]
    assert five["requests"] == 400 and five["errors"] == 0.25 and five["rate"] == pytest.approx(400 / 300, rel=0.01)
    assert 0 <= five["p50_ms"] <= five["p95_ms"] <= five["p99_ms"]
    assert found[0]["windows"]["15m"]["requests"] == 200 and found[0]["windows"]["15m"]["errors"] == 0
    text = paas.run("metrics", APP).stdout.splitlines()
    assert text[0].split() == ["RELEASE", "WEIGHT", "LAST", "REQ/S", "5XX", "P50", "P95", "P99"]
    assert [line.split()[:3] for line in text[1:]] == [["62", "75%", w] for w in ("1m", "5m", "15m")] + \
        [["63", "25%", w] for w in ("1m", "5m", "15m")]
    assert all(line.split()[4] == "25.00%" for line in text[4:])
    unknown = paas.run("metrics", "nosuchapp", check=False)
    assert unknown.returncode == 1 and len(unknown.stderr.strip().splitlines()) == 1


def test_a_table_of_an_older_minipaas_routes_as_one_version(host: tuple[Paas, Settings],
                                                             backends: list[Backend]) -> None:
    paas, settings = host
    old = Backend(0)
    route(settings, backends, (old, 100))
    routes.control(settings, f"/routes?app={APP}", "PUT", old.address)  # no `N=W` marker: what minipaas sent
    assert routes.nginx_versions(settings, APP) == [(0, 100, [old.address])]
    answer = once(paas)
    assert (answer.status, answer.body, answer.cookies) == (200, "release 0\n", ["session=app"])
    # And the file of an older minipaas, read by a reloaded nginx.
    routes.routes_file(settings).write_text(f"{APP} {old.address}\n")
    reload(settings)
    assert routes.nginx_versions(settings, APP) == [(0, 100, [old.address])]
    assert once(paas).body == "release 0\n"


def test_a_websocket_stays_on_the_version_it_started_on(host: tuple[Paas, Settings], backends: list[Backend]) -> None:
    paas, settings = host
    stable, canary = Backend(72), Backend(73)
    route(settings, backends, (stable, 50), (canary, 50))
    before = totals(settings, 72, 73)
    started: Counter[str] = Counter()
    for _ in range(20):
        with socket.create_connection(("127.0.0.1", paas.port), timeout=10) as sock:
            sock.sendall(f"GET /socket HTTP/1.1\r\nHost: {APP}.paas.test\r\nUpgrade: websocket\r\n"
                         "Connection: Upgrade\r\n\r\n".encode())
            with sock.makefile("rb") as reader:  # closed with the socket: the websocket ends
                assert reader.readline().startswith(b"HTTP/1.1 101")
                while reader.readline() not in (b"\r\n", b""):
                    pass
                answers = set()
                for n in range(5):
                    sock.sendall(f"ping {n}\n".encode())
                    answers.add(reader.readline().decode().split(":")[0])
            assert len(answers) == 1, answers
            started.update(answers)
    assert set(started) == {"release 72", "release 73"}
    after = counted(settings, before, 20)  # once each websocket closed
    assert sum(after[r].classes.get(1, 0) - before[r].classes.get(1, 0) for r in (72, 73)) == 20
    assert all(after[r].buckets == before[r].buckets for r in (72, 73))  # their lives are no latency
