"""Issue 20, concurrency: pushes to several apps at once and to one app at once, with `gc` and `ps:restore` beside
them. Every push deploys, or is told to wait and then deploys or is refused in one line; the final state is the
last push that deployed (its commit is the branch, the live release and what answers); nothing is left over on
the engine, on disk, in nginx's routing table or in the database (`leftovers`). And gc: `gc --dry-run` names what
the gcs then remove, also while the pushes' retirements run; a rejected push's image goes after the next deploy,
also a first success; `deploy APP` rolls out a config stored with `--no-restart`; `apps:destroy` leaves nothing
of the app's files in BuildKit's cache.

Real things only: pushes through the real hook, the real engine, nginx and its routing table, the SQLite store.
The 20-app version is bench/concurrent_pushes.py (docs/benchmarks.md)."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers.host import APPS, Paas, commit, docker, own_processes

pytestmark = pytest.mark.engine

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


def test_pushes_at_once_each_deploy_or_wait_and_nothing_is_left_over(paas: Paas) -> None:
    apps = [paas.new_app("c") for _ in range(5)]
    checkouts = []
    for app in apps:
        paas.run("settings:set", app, "drain-seconds", "1")
        checkout = paas.checkout(app, APPS / "env-echo")
        write_server(checkout, f"{app}-first")
        checkouts.append(checkout)

    # Five first pushes to five apps at once, a gc and a ps:restore beside them.
    started = [start_push(paas, c) for c in checkouts] + [start_cli(paas, "gc"), start_cli(paas, "ps:restore")]
    done = {run.name: run.finish() for run in started}
    for checkout, app in zip(checkouts, apps, strict=True):
        code, out = done[checkout.name]
        assert code == 0 and f"{app} release 1 is live" in out, out
    assert done["gc"][0] == 0, done["gc"][1]
    assert done["ps:restore"][0] == 0, done["ps:restore"][1]
    for app in apps:
        assert paas.get(app).body == f"{app}-first \n"

    # Three pushes to one app at once, each from its own clone of the same commit: one deploys; the others wait
    # for it, then are refused in one line (git would refuse their ref update after their deploy: the live
    # release would be a commit that the branch never names). A gc and a ps:restore beside them again.
    app, base = apps[0], checkouts[0]
    clones = []
    for n in range(3):
        clone = paas.work / f"{app}-clone{n}"
        shutil.copytree(base, clone)
        clones.append((clone, write_server(clone, f"take-{n}")))
    started = [start_push(paas, c) for c, _ in clones] + [start_cli(paas, "gc"), start_cli(paas, "ps:restore")]
    done = {run.name: run.finish() for run in started}
    deployed = [(clone, sha) for clone, sha in clones if done[clone.name][0] == 0]
    assert len(deployed) == 1, {c.name: done[c.name] for c, _ in clones}
    for clone, _sha in clones:
        code, out = done[clone.name]
        if code == 0:
            assert "release 2 is live" in out and minipaas_errors(out) == [], out
        else:
            assert "Waiting for another push to" in out, out
            errors = minipaas_errors(out)
            assert len(errors) == 1 and MOVED.fullmatch(errors[0]), out
            assert "Building" not in out and "is live" not in out, out
    assert done["gc"][0] == 0 and done["ps:restore"][0] == 0, (done["gc"], done["ps:restore"])

    # The final state is the push that deployed: the branch, the live release and what answers.
    _winner, sha = deployed[0]
    assert paas.repo_ref(app) == sha
    live = [r for r in json.loads(paas.run("releases", app, "--json").stdout) if r["status"] == "live"]
    assert [(r["number"], r["sha"]) for r in live] == [(2, sha)]
    assert paas.get(app).body == f"take-{clones.index(deployed[0])} \n"

    settled(paas)
    assert leftovers(paas) == []
    for other in apps[1:]:
        assert paas.get(other).body == f"{other}-first \n"


def release_images(paas: Paas, app: str) -> set[str]:
    return set(docker("images", "--format", "{{.Repository}}:{{.Tag}}", paas.repository(app)).split())


def gc_items(output: str) -> set[str]:
    """What a gc's lines name (`would remove X`, `removed X`, `will remove X when ...`), whichever verb."""
    items = set()
    for line in output.splitlines():
        match = re.match(r"\s+(?:would remove|removed|will remove) (.+?)(?: \(when its container retires\)| when "
                         r"its container retires)?$", line)
        if match:
            items.add(match.group(1))
    return items


def context_copies(name: str) -> list[Path]:
    """The copies of a file at the root of a build context that BuildKit keeps in the engine's storage (its
    `local source` snapshots hold the folder as it synced it; an image layer holds it where a COPY put it)."""
    root, driver = docker("info", "--format", "{{.DockerRootDir}} {{.Driver}}").split()
    assert driver == "overlay2", driver
    return list(Path(root, driver).glob(f"*/diff/{name}"))


def test_gc_dry_run_names_what_the_gcs_remove_while_retirements_run(paas: Paas) -> None:
    app = paas.new_app("g")
    paas.run("settings:set", app, "drain-seconds", "20")
    checkout = paas.checkout(app, APPS / "env-echo")
    # The whole commit goes into the image (BuildKit syncs only what a COPY takes): a file of it with a name of its
    # own shows where the engine keeps the app's files.
    (checkout / "Dockerfile").write_text('FROM minipaas/node:26\nCOPY . /srv/\nUSER node\n'
                                         'CMD ["node", "/srv/server.js"]\n')
    marker = f"source-{uuid.uuid4().hex[:8]}.txt"
    (checkout / marker).write_text("the app's source\n")

    # A rejected push leaves its image; the next deploy, the app's first success, has nothing to retire, and its
    # background gc collects that image all the same.
    (checkout / "server.js").write_text('console.error("boom"); process.exit(3);\n')
    commit(checkout, "crashes")
    paas.push(checkout, expect_ok=False)
    assert release_images(paas, app) == {paas.image(app, 1)}
    write_server(checkout, "v2")
    paas.push(checkout)
    wait_for(lambda: release_images(paas, app) == {paas.image(app, 2)}, "the rejected push's image collected", 30)

    # Three more pushes with keep-releases 2: releases 2 and 3 are dropped while their containers drain.
    paas.run("settings:set", app, "keep-releases", "2")
    for text in ("v3", "v4", "v5"):
        write_server(checkout, text)
        paas.push(checkout)
    dry = paas.run("gc", "--dry-run").stdout
    dry_app = paas.run("gc", app, "--dry-run").stdout
    real = paas.run("gc").stdout
    assert not retirements_done(paas), "the retirements ran before the gcs: raise drain-seconds"
    dropped = {f"image {paas.image(app, n)}" for n in (2, 3)}
    assert gc_items(dry) == gc_items(dry_app) == gc_items(real) == dropped, (dry, dry_app, real)
    assert release_images(paas, app) == {paas.image(app, n) for n in (2, 3, 4, 5)}  # draining: not yet
    # The background gc after the retirements removes exactly those.
    wait_for(lambda: retirements_done(paas) and retirers_done(paas), "the retirements and their gcs", 60)
    assert release_images(paas, app) == {paas.image(app, n) for n in (4, 5)}
    assert gc_items(paas.run("gc", "--dry-run").stdout) == set()
    assert paas.get(app).body == "v5 \n"

    # `deploy APP` rolls out the config stored with --no-restart (what `run` already sees).
    paas.run("config:set", app, "--no-restart", "GREETING=stored")
    assert paas.get(app).body == "v5 \n"
    assert paas.run("run", app, "--", "printenv", "GREETING").stdout.strip() == "stored"
    out = paas.run("deploy", app).stdout
    assert "with an older config; releasing it with the stored config" in out and "Building" not in out, out
    assert paas.get(app).body == "v5 stored\n"
    latest = json.loads(paas.run("releases", app, "--json").stdout)[0]
    assert (latest["kind"], latest["status"]) == ("config", "live")
    assert "already live as release" in paas.run("deploy", app).stdout  # now it is: nothing to do

    # apps:destroy leaves no copy of the app's context in BuildKit's cache (its layer cache is keyed by content,
    # shared by apps with the same steps: BuildKit's own gc drops it, see build/cacheclear.py).
    assert len(context_copies(marker)) == 1, "BuildKit keeps the context it synced last"
    out = paas.run("apps:destroy", app, "--force").stdout
    assert "emptied BuildKit's copy of" in out, out
    assert context_copies(marker) == []
    assert docker("images", "-q", paas.repository(app)) == ""
