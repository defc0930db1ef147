"""Fault injection for pushes (MINIPAAS_TEST_PAUSE_AT pauses a push at a named step) and what a test reads to
see a host repaired: releases, containers, images, networks, the route."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.helpers.host import APPS, Paas, commit, docker

PAUSE = "MINIPAAS_TEST_PAUSE_AT"


def release(checkout: Path, version: str, *, listen_after_ms: int = 0, build_seconds: float = 0) -> str:
    """Commit a release of the app that answers `version` (its checkout's name in it: no build of another test run
    is in the builder's cache)."""
    (checkout / "server.js").write_text(
        f'// {checkout.name}\nconst http = require("http");\n'
        f'setTimeout(() => http.createServer((req, res) => res.end("{version}\\n"))'
        f'.listen(process.env.PORT || 5000), {listen_after_ms});\n')
    (checkout / "Dockerfile").write_text(
        "FROM minipaas/node:26\nWORKDIR /srv\nCOPY server.js .\n"
        + (f"RUN sleep {build_seconds}\n" if build_seconds else "")
        + 'USER node\nCMD ["node", "server.js"]\n')
    return commit(checkout, version)


def first_release(paas: Paas) -> tuple[str, Path]:
    """An app serving `v1`, whose old containers retire one second after a switch."""
    app = paas.new_app("kill")
    paas.run("settings:set", app, "drain-seconds", "1")
    checkout = paas.checkout(app, APPS / "dockerfile")
    release(checkout, "v1")
    paas.push(checkout)
    return app, checkout


class Poller(threading.Thread):
    """Requests to the app through nginx, one after another, until stopped: what answered, and every failure."""

    def __init__(self, paas: Paas, app: str) -> None:
        super().__init__(daemon=True)
        self.paas, self.app = paas, app
        self.answers: Counter[str] = Counter()
        self.failures: list[str] = []
        self.failed_at: list[float] = []  # time.monotonic() of each failure
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                response = self.paas.get(self.app)
            except OSError as exc:
                self._failed(f"{type(exc).__name__}: {exc}")
            else:
                if response.status == 200:
                    self.answers[response.body.strip()] += 1
                else:
                    self._failed(f"HTTP {response.status}: {response.body[:80]!r}")
            time.sleep(0.005)

    def _failed(self, what: str) -> None:
        self.failures.append(what)
        self.failed_at.append(time.monotonic())

    @property
    def requests(self) -> int:
        return sum(self.answers.values()) + len(self.failures)

    def report(self, fault: str) -> None:
        """One line for docs/benchmarks.md' fault table (`pytest -s` shows it)."""
        window = self.failed_at[-1] - self.failed_at[0] if self.failures else 0.0
        answered = ", ".join(f"{body[:12]} {count}" for body, count in sorted(self.answers.items()))
        print(f"\nFAULT {fault}: {self.requests} requests, {len(self.failures)} failed (within {window:.2f} s); "
              f"answered: {answered}", flush=True)

    def __enter__(self) -> Poller:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.join(timeout=30)


def own_processes(paas: Paas) -> dict[int, tuple[str, bytes]]:
    """This home's processes (by their environment): pid -> (state, command line)."""
    wanted = f"MINIPAAS_HOME={paas.home}".encode()
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if wanted in (entry / "environ").read_bytes().split(b"\0"):
                    state = (entry / "stat").read_text().rpartition(")")[2].split()[0]
                    found[int(entry.name)] = (state, (entry / "cmdline").read_bytes())
            except (OSError, IndexError):
                continue
    return found


@dataclass
class Paused:
    process: subprocess.Popen[str]  # the push
    hook: int  # the pid of the hook, stopped at its step


def push_paused_at(paas: Paas, checkout: Path, step: str) -> Paused:
    """Push, and wait until the hook stopped itself at `step`."""
    push = subprocess.Popen(["git", "push", "paas", "master"], cwd=checkout, env={**paas.env, PAUSE: step},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 300
    while not (stopped := [pid for pid, (state, _) in own_processes(paas).items() if state == "T"]):
        assert push.poll() is None, f"the push ended without reaching {step}:\n{push.communicate()[0]}"
        assert time.monotonic() < deadline, f"the hook did not reach {step}"
        time.sleep(0.02)
    [hook] = stopped
    return Paused(push, hook)


def db_rows(paas: Paas, query: str, *args: object) -> list[tuple[object, ...]]:
    db = sqlite3.connect(f"file:{paas.home / 'minipaas.db'}?mode=ro", uri=True)
    try:
        return db.execute(query, args).fetchall()
    finally:
        db.close()


def releases(paas: Paas, app: str) -> dict[int, tuple[str, str, str]]:
    """Release number -> (status, message, image), from the database itself."""
    rows = db_rows(paas, "SELECT number, status, message, image FROM releases WHERE app = ? ORDER BY number", app)
    return {int(n): (str(s), str(m), str(i)) for n, s, m, i in rows}  # type: ignore[call-overload]


def app_containers(paas: Paas, app: str) -> dict[str, str]:
    """Container id -> its release, stopped ones too."""
    out = docker("ps", "-a", "--no-trunc", "--filter", f"label=minipaas={paas.home}",
                 "--filter", f"label=minipaas.app={app}", "--format", '{{.ID}} {{.Label "minipaas.release"}}')
    return dict(line.split() for line in out.splitlines())


def app_images(paas: Paas, app: str) -> set[str]:
    out = docker("images", "--filter", f"label=minipaas={paas.home}", "--filter", f"label=minipaas.app={app}",
                 "--format", "{{.Repository}}:{{.Tag}}")
    return set(out.split())


def network_exists(paas: Paas, app: str) -> bool:
    from minipaas.state.settings import load

    name = load(paas.env).app_network(app)
    return name in docker("network", "ls", "--format", "{{.Name}}").split()


def route(paas: Paas, app: str) -> tuple[set[str], set[str], set[str]]:
    """The app's route: in nginx's memory, in its file, and the containers it names (route-owners.json)."""
    from minipaas.routing import routes
    from minipaas.state.settings import load

    settings = load(paas.env)
    owners = json.loads((paas.home / "nginx" / "route-owners.json").read_text())
    return (set(routes.nginx_view(settings, app)), set(routes.addresses(settings, app)),
            {container for container, (owner, *_) in owners.items() if owner == app})


def assert_repaired(paas: Paas, app: str, live: int | None, body: str | None) -> None:
    """Release `live` serving `body`, and nothing else of a killed deploy: no pending release, no container but the
    live release's (once the retirements ran), no image that no release names (gc removes the others), a network
    only with containers, a route naming exactly the live release's containers, in nginx and in its file alike."""
    if body is not None:
        assert paas.get(app).body == body
    table = releases(paas, app)
    assert [n for n, (s, _, _) in table.items() if s == "live"] == ([live] if live else []), table
    assert not [n for n, (s, _, _) in table.items() if s == "pending"], table
    deadline = time.monotonic() + 60
    while db_rows(paas, "SELECT 1 FROM retirements WHERE app = ?", app) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not db_rows(paas, "SELECT container FROM retirements WHERE app = ?", app)
    running = app_containers(paas, app)
    assert set(running.values()) == ({str(live)} if live else set()), running
    # The gc after the deploy removes the images no release names (a build stage's image whose tag the build moved
    # is <none> until then): it runs in the background, after the retirements.
    named = {image for _, _, image in table.values() if image}
    deadline = time.monotonic() + 60
    while not (images := app_images(paas, app)) <= named and time.monotonic() < deadline:
        time.sleep(0.2)
    assert images <= named, (images, table)
    assert network_exists(paas, app) == bool(running)
    in_nginx, in_file, named = route(paas, app)
    assert in_nginx == in_file and named == set(running), (in_nginx, in_file, named, running)


def wait_for(what: Callable[[], bool], seconds: float = 30) -> bool:
    deadline = time.monotonic() + seconds
    while not what():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
