"""One nginx, routing by a table in its shared memory: deploys switch without a reload, a container that
goes away leaves the route at once, and no app's request or container ever reaches another app's."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import time
from pathlib import Path

from minipaas.routing import routes
from minipaas.running import watcher
from minipaas.state.settings import load
from tests.helpers.host import APPS, EXAMPLE, Paas, commit, docker


def wait_for(condition, timeout: float = 30, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def web(paas: Paas, app: str) -> dict[str, object]:
    [row] = [r for r in json.loads(paas.run("ps", app, "--json").stdout) if r["health"] == "serving"]
    return row


def nginx_pids(paas: Paas) -> set[int]:
    """The front's master and workers: a reload replaces the workers."""
    master = int((paas.home / "nginx" / "run" / "front.pid").read_text())
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return {master, *map(int, children)}


def test_a_deploy_switches_without_reloading_nginx_and_live_means_live(paas: Paas) -> None:
    app, checkout = paas.deploy(EXAMPLE)
    settings = load(paas.env)
    before = nginx_pids(paas)
    server = checkout / "server.js"
    server.write_text(server.read_text().replace("from minipaas", "from the new release"))
    commit(checkout, "new release")
    paas.push(checkout)
    # As soon as the push says live, nginx itself holds the new container, and every request gets it.
    new = web(paas, app)["address"]
    assert routes.nginx_view(settings, app) == [new] == routes.addresses(settings, app)
    assert all("from the new release" in paas.get(app).body for _ in range(20))
    assert nginx_pids(paas) == before  # not even a reload


def test_a_container_removed_behind_minipaas_back_never_serves_another_apps_page(paas: Paas) -> None:
    first, _ = paas.deploy(EXAMPLE, prefix="first")
    stale = str(web(paas, first)["address"])
    docker("rm", "-f", str(web(paas, first)["name"]))
    # The engine reports it gone: the watcher takes it out of the route at once.
    settings = load(paas.env)
    wait_for(lambda: routes.nginx_view(settings, first) == [], what="the route to drop the removed container")
    second, _ = paas.deploy(APPS / "dockerfile", prefix="second")
    taken = str(web(paas, second)["address"])
    # The second app lives on a network of its own: it cannot be given an address of the first one's.
    subnet = docker("network", "inspect", "--format", "{{(index .IPAM.Config 0).Subnet}}",
                    settings.app_network(first)).strip()
    assert ipaddress.ip_address(stale.split(":")[0]) in ipaddress.ip_network(subnet)
    assert ipaddress.ip_address(taken.split(":")[0]) not in ipaddress.ip_network(subnet)
    for _ in range(20):
        response = paas.get(first)
        assert response.status == 503 and "from my own Dockerfile" not in response.body, response


def test_a_crashed_container_leaves_the_route_and_comes_back_when_restarted(paas: Paas) -> None:
    app, _ = paas.deploy(APPS / "crash-later")
    settings = load(paas.env)
    row = web(paas, app)
    # The deploy started the watcher; on a busy machine it may still be loading: a crash before it follows the
    # engine's events, and restarted before it catches up, is one it never hears of (nothing to unroute by then).
    log_file = paas.home / "logs" / "watch.log"
    wait_for(lambda: log_file.exists() and "following the engine's events" in log_file.read_text(),
             what="the watcher to follow the engine")
    paas.get(app, "/crash")  # exits 3; its restart policy (on-failure) starts it again
    wait_for(lambda: int(docker("inspect", "--format", "{{.RestartCount}}", str(row["name"])).strip()) >= 1,
             what="the engine to restart the crashed container")
    wait_for(lambda: paas.get(app).body == "up\n" and routes.nginx_view(settings, app) == [row["address"]],
             timeout=60, what="the restarted container to be routed again")
    log = log_file.read_text()
    assert "unrouted" in log and "routed" in log.split("unrouted", 1)[1]


def test_a_watcher_that_lags_behind_a_stop_and_start_leaves_the_new_route_alone(paas: Paas) -> None:
    app, _ = paas.deploy(EXAMPLE)
    settings = load(paas.env)
    paas.run("ps:stop", app)
    paas.run("ps:start", app)
    row = web(paas, app)
    # The engine's news of the stop (kill, die, stop), as a watcher busy elsewhere gets them: after the start.
    container = docker("inspect", "--format", "{{.Id}}", str(row["name"])).strip()
    news = [json.loads(line) for line in docker("events", "--since", "5m", "--until", "0s", "--filter",
                                                f"container={container}", "--format", "{{json .}}").splitlines()]
    gone = [e for e in news if e["Action"] in ("kill", "die", "stop")]
    assert gone, news
    forgotten: dict[str, str] = {}
    for event in gone:
        watcher.handle(settings, event, forgotten)
    assert forgotten == {} and routes.nginx_view(settings, app) == [row["address"]]
    assert paas.get(app).status == 200
    # News of now still counts: the container removed behind minipaas' back leaves the route.
    docker("rm", "-f", container)
    wait_for(lambda: routes.nginx_view(settings, app) == [], what="the route to drop the removed container")


CONNECT = """
const [host, port] = process.argv[1].split(":");
const socket = require("net").connect({host, port: Number(port), timeout: 3000});
socket.on("connect", () => { console.log("connected"); process.exit(0); });
socket.on("timeout", () => { console.log("timeout"); process.exit(2); });
socket.on("error", (e) => { console.log(e.code); process.exit(3); });
"""


def test_an_apps_containers_reach_their_own_app_and_no_other(paas: Paas) -> None:
    mine, _ = paas.deploy(EXAMPLE, prefix="mine")
    paas.run("ps:scale", mine, "web=2")
    other, _ = paas.deploy(APPS / "dockerfile", prefix="other")
    [one, two] = [r for r in json.loads(paas.run("ps", mine, "--json").stdout) if r["health"] == "serving"]
    theirs = web(paas, other)

    def connect(container: object, address: object) -> str:
        result = subprocess.run(["docker", "exec", str(container), "node", "-e", CONNECT, str(address)],
                                capture_output=True, text=True, timeout=60)
        return result.stdout.strip()

    assert connect(one["name"], two["address"]) == "connected"
    assert connect(one["name"], theirs["address"]) in ("timeout", "EHOSTUNREACH", "ECONNREFUSED")
    assert connect(theirs["name"], one["address"]) in ("timeout", "EHOSTUNREACH", "ECONNREFUSED")
    networks = json.loads(docker("inspect", "--format", "{{json .NetworkSettings.Networks}}", str(one["name"])))
    assert list(networks) == [load(paas.env).app_network(mine)]


def test_init_rewrites_the_vhosts_of_an_older_install(paas: Paas) -> None:
    app, _ = paas.deploy(EXAMPLE)
    site = paas.home / "nginx" / "sites" / f"{app}.conf"
    # A vhost as an install from before the routing table wrote it: to a router nginx that is gone.
    router = paas.home / "nginx" / "run" / "router.sock"
    site.write_text(site.read_text().replace("proxy_pass http://minipaas_apps;",
                                             f"proxy_pass http://unix:{router}:;"))
    paas.run("init")  # the upgrade: vhosts from today's template, applied
    assert "router.sock" not in site.read_text()
    assert paas.get(app).status == 200
