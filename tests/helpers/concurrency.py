"""Pushes and commands at once on one host: start them in the background, read the errors minipaas printed,
wait for retirements, and list what a run left over (containers, images, networks, rows) once it settled."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.helpers.host import Paas, commit, docker, own_processes

# Answers TEXT and $GREETING; exits at once on SIGTERM (node as PID 1 would ignore it: a retirement would take the
# engine's 10 s to SIGKILL it).
SERVER = """const http = require("http");
http.createServer((req, res) => res.end("TEXT " + (process.env.GREETING || "") + "\\n"))
  .listen(process.env.PORT || 5000);
process.on("SIGTERM", () => process.exit(0));
"""


MOVED = re.compile(r"!     master moved to [0-9a-f]{7} while this push waited for another; nothing was deployed: "
                   r"fetch, then push again")


def write_server(checkout: Path, text: str) -> str:
    """The checkout's server answers `text`; committed. Returns the commit."""
    (checkout / "server.js").write_text(SERVER.replace("TEXT", text))
    return commit(checkout, text)


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f}s: {what}")
        time.sleep(0.25)


@dataclass
class Running:
    """A command started in the background (a push, `gc`, `ps:restore`)."""

    name: str
    process: subprocess.Popen[str]

    def finish(self, timeout: float = 600) -> tuple[int, str]:
        out, _ = self.process.communicate(timeout=timeout)
        return self.process.returncode, out


def start_push(paas: Paas, checkout: Path) -> Running:
    return Running(checkout.name, subprocess.Popen(["git", "push", "paas", "master"], cwd=checkout, env=paas.env,
                                                   text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))


def start_cli(paas: Paas, *args: str) -> Running:
    return Running(" ".join(args), subprocess.Popen([sys.executable, "-m", "minipaas", *args], env=paas.env,
                                                    text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))


def minipaas_errors(output: str) -> list[str]:
    """The `!` lines minipaas sent the pusher (git's own ` ! [remote rejected]` line is not one)."""
    return [line.removeprefix("remote:").strip() for line in output.splitlines()
            if line.startswith("remote:") and line.removeprefix("remote:").strip().startswith("!")]


def db(paas: Paas) -> sqlite3.Connection:
    conn = sqlite3.connect(paas.home / "minipaas.db")
    conn.row_factory = sqlite3.Row
    return conn


def retirements_done(paas: Paas) -> bool:
    with db(paas) as conn:
        return conn.execute("SELECT COUNT(*) FROM retirements").fetchone()[0] == 0


def retirers_done(paas: Paas) -> bool:
    """No background `retire` (and its gc) of this home runs any more."""
    return not own_processes(paas.home, b"retire")


def leftovers(paas: Paas) -> list[str]:
    """What this home holds on the engine, on disk, in nginx's routing and in the database that no app's live
    release accounts for, one line each: empty when nothing is orphaned. Call it once the retirements are done
    and a gc ran (the images of releases that never went live are gone then)."""
    from minipaas.routing import proxy, routes
    from minipaas.state.settings import load

    settings = load(paas.env)
    home = str(paas.home)
    found: list[str] = []
    with db(paas) as conn:
        apps = {row["name"] for row in conn.execute("SELECT name FROM apps")}
        rows = conn.execute("SELECT app, number, status, image, serving FROM releases").fetchall()
        found += [f"release {r['app']}/{r['number']} still pending" for r in rows if r["status"] == "pending"]
        found += [f"release {r['app']}/{r['number']} of no app" for r in rows if r["app"] not in apps]
        found += [f"retirement of {r['container'][:12]} ({r['app']}) still recorded"
                  for r in conn.execute("SELECT container, app FROM retirements")]
    live = {r["app"]: str(r["number"]) for r in rows if r["status"] == "live"}
    went_live = {r["image"] for r in rows if r["status"] in ("live", "superseded") and r["image"]}
    found += [f"{app} has no live release" for app in sorted(apps - set(live))]

    containers = [json.loads(line) for line in docker(
        "ps", "-a", "--filter", f"label=minipaas={home}", "--format", "{{json .}}").splitlines()]
    web: dict[str, dict[str, str]] = {}  # container id -> app, address on its app's network
    for c in containers:
        inspect = json.loads(docker("inspect", c["ID"]))[0]
        labels = inspect["Config"]["Labels"]
        app, release = labels.get("minipaas.app"), labels.get("minipaas.release")
        if app not in apps or release != live.get(app) or inspect["State"]["Status"] != "running":
            found.append(f"container {c['Names']} ({app} release {release}, {inspect['State']['Status']}) is not "
                         "one of a live release")
        elif labels.get("minipaas.process") == "web":
            network = inspect["NetworkSettings"]["Networks"].get(settings.app_network(app), {})
            web[inspect["Id"]] = {"app": app, "ip": network.get("IPAddress", "")}

    for image in docker("images", "--filter", f"label=minipaas={home}", "--format",
                        "{{.Repository}}:{{.Tag}}").split():
        if "<none>" in image or image not in went_live:
            found.append(f"image {image} is no release that went live")
    apps_with_containers = {labels["app"] for labels in web.values()}
    found += [f"{r['app']} runs no web container of its live release {r['number']}" for r in rows
              if r["status"] == "live" and r["serving"] == "container" and r["app"] not in apps_with_containers]
    networks = set(docker("network", "ls", "--filter", f"label=minipaas={home}", "--format", "{{.Name}}").split())
    found += [f"network {n} of no app with containers" for n in sorted(
        networks - {settings.app_network(a) for a in apps_with_containers})]

    table = {app: routes.addresses(settings, app) for app in routes.read(settings)}
    owners = json.loads((paas.home / "nginx" / "route-owners.json").read_text() or "{}")
    for container, (app, address, *_) in owners.items():
        if container not in web or web[container]["app"] != app or address.rsplit(":", 1)[0] != web[container]["ip"]:
            found.append(f"route owner {container[:12]} ({app} at {address}) is no live web container of {app}")
    for app in sorted(set(table) | apps_with_containers):
        expected = sorted(a for c, (o, a, *_) in owners.items() if o == app)
        if sorted(table.get(app, [])) != expected or len(expected) != sum(w["app"] == app for w in web.values()):
            found.append(f"{app} is routed to {table.get(app)}, its live web containers are {expected}")
        if sorted(routes.nginx_view(settings, app)) != sorted(table.get(app, [])):
            found.append(f"nginx routes {app} to {routes.nginx_view(settings, app)}, the table says {table.get(app)}")

    for folder, suffix in (("repos", ".git"), ("build", ""), ("static", ""), ("certs", "")):
        for path in sorted((paas.home / folder).glob("*")):
            if path.is_dir() and path.name.removesuffix(suffix) not in apps | {proxy.DASHBOARD_SITE}:
                found.append(f"{folder}/{path.name} of no app")
    found += [f"{p.relative_to(paas.home)} of no app" for p in (paas.home / "nginx" / "sites").glob("*.conf")
              if p.stem not in apps | {proxy.DASHBOARD_SITE}]  # the dashboard's vhost is the home's own
    found += [f"{p.relative_to(paas.home)} left half-written" for p in paas.home.rglob("*.tmp")]
    found += [f"a push's turn keeper (pid {pid}) outlived its push" for pid in own_processes(paas.home, b"pidfd_open")]
    return found


def settled(paas: Paas) -> None:
    """Retirements and the gcs after them done, then one more gc: the state `leftovers` judges."""
    wait_for(lambda: retirements_done(paas) and retirers_done(paas), "the retirements and their gcs", 90)
    paas.run("gc")
