"""A deploy killed with SIGKILL at each of its steps: the old release or the new one serves, never neither, and the
next deploy or `ps:restore` repairs the rest (no pending release; no container, image, network or route that no
release accounts for).

The deploying process (the pre-receive hook) stops itself at the step a test names (minipaas/faultpoints.py,
MINIPAAS_TEST_PAUSE_AT); the test sees it stopped, checks what serves, and kills it with SIGKILL: what a crash at
that step leaves, every time. A poller sends requests through the private nginx all along: each must be answered,
by one release or the other.
"""

from __future__ import annotations

import json
import os
import signal
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


# -- the app: a version string per release; a build or a start that takes a while on demand -------------------------

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


# -- killing at a step ----------------------------------------------------------------------------------------------

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


def push_killed_at(paas: Paas, checkout: Path, step: str, during: Callable[[], None] = lambda: None) -> str:
    """Push; once the hook stopped itself at `step`, run `during`, then SIGKILL the hook. Returns the push's output
    (git's: the hook died, the push is rejected)."""
    paused = push_paused_at(paas, checkout, step)
    try:
        during()
    finally:
        os.kill(paused.hook, signal.SIGKILL)
        output, _ = paused.process.communicate(timeout=120)
    assert paused.process.returncode != 0 and "pre-receive hook declined" in output, output
    return output


# -- what is left ---------------------------------------------------------------------------------------------------

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


def running_with(argument: str) -> list[int]:
    """The processes with `argument` on their command line (a builder building an image, a build's step)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and argument.encode() in (entry / "cmdline").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def wait_for(what: Callable[[], bool], seconds: float = 30) -> bool:
    deadline = time.monotonic() + seconds
    while not what():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


# -- the steps ------------------------------------------------------------------------------------------------------

def test_killed_before_the_switch_the_old_release_serves_and_the_next_deploy_or_restore_repairs(paas: Paas) -> None:
    """Killed while its builder runs, once its container started, during its health check: the old release serves
    throughout; the builder dies with the deploy (no image appears later); ps:restore repairs the first two, the next
    push the third. An app's first deploy killed leaves no network behind either."""
    app, checkout = first_release(paas)
    with Poller(paas, app) as poller:
        release(checkout, "v2", build_seconds=6.5)

        def building() -> None:
            assert running_with(paas.image(app, 2)), "no builder runs"
            # Its step that prints nothing for a while: a builder that only died writing its next line would live on.
            assert wait_for(lambda: bool(running_with("6.5"))), "the build's step did not start"
            assert paas.get(app).body == "v1\n"

        push_killed_at(paas, checkout, "build", building)
        assert wait_for(lambda: not running_with(paas.image(app, 2)), 3), "the builder outlived its deploy"
        assert wait_for(lambda: not running_with("6.5"), 10), "the build went on without its builder"
        paas.run("ps:restore")
        assert_repaired(paas, app, 1, "v1\n")

        release(checkout, "v3")

        def started() -> None:
            assert "3" in app_containers(paas, app).values() and paas.get(app).body == "v1\n"

        push_killed_at(paas, checkout, "started", started)
        assert releases(paas, app)[3][0] == "pending"
        paas.run("ps:restore")
        assert_repaired(paas, app, 1, "v1\n")

        release(checkout, "v4", listen_after_ms=3000)
        push_killed_at(paas, checkout, "health", lambda: None)
        assert paas.get(app).body == "v1\n"
        release(checkout, "v5")
        paas.push(checkout)
        assert_repaired(paas, app, 5, "v5\n")
    poller.report("killed at build, started, health")
    assert not poller.failures, poller.failures[:5]
    assert set(poller.answers) == {"v1", "v5"}, poller.answers
    assert paas.image(app, 2) not in app_images(paas, app)  # its build did not go on after its deploy died
    assert [releases(paas, app)[n][:2] for n in (2, 3, 4)] == [("failed", "interrupted")] * 3

    first = paas.new_app("first")
    checkout = paas.checkout(first, APPS / "dockerfile")
    release(checkout, "first")
    push_killed_at(paas, checkout, "started", lambda: None)
    assert network_exists(paas, first)
    paas.run("ps:restore")
    assert_repaired(paas, first, None, None)
    paas.push(checkout)
    assert_repaired(paas, first, 2, "first\n")


def test_killed_at_the_switch_or_its_record_one_release_serves_and_the_next_deploy_or_restore_repairs(
        paas: Paas) -> None:
    """Killed with the routing table's file written and nginx not told: the old release serves, ps:restore repairs.
    Killed inside the transaction that records the release live: nginx sends every request to the new release, the
    database says the old one is live; the next push sends the route back to the old release before it removes the
    new one's container, which drains first, and goes live itself: no request fails at any moment."""
    app, checkout = first_release(paas)
    with Poller(paas, app) as poller:
        release(checkout, "v2")

        def switching() -> None:
            in_nginx, in_file, _ = route(paas, app)
            assert in_nginx != in_file and paas.get(app).body == "v1\n"

        push_killed_at(paas, checkout, "switch", switching)
        assert paas.get(app).body == "v1\n"
        paas.run("ps:restore")
        assert_repaired(paas, app, 1, "v1\n")

        release(checkout, "v3")

        def recording() -> None:
            assert paas.get(app).body == "v3\n"

        push_killed_at(paas, checkout, "record", recording)
        assert paas.get(app).body == "v3\n"
        assert [s for s, _, _ in releases(paas, app).values()] == ["live", "failed", "pending"]  # rolled back
        release(checkout, "v4")
        paas.push(checkout)
        assert_repaired(paas, app, 4, "v4\n")
    poller.report("killed at switch, record")
    assert not poller.failures, poller.failures[:5]
    assert set(poller.answers) <= {"v1", "v3", "v4"} and poller.answers["v4"], poller.answers
    assert db_rows(paas, "PRAGMA integrity_check") == [("ok",)]


def test_killed_at_its_retirement_the_new_release_serves_and_the_old_containers_still_go(paas: Paas) -> None:
    """Killed once the release is recorded live, before it handed the old containers to a retirer: the new release
    serves and the next push retires them. A retirer itself killed during the drain delay: ps:restore starts another
    (a retirer holds a lock while it runs; none held, none runs)."""
    app, checkout = first_release(paas)
    with Poller(paas, app) as poller:
        release(checkout, "v2")
        push_killed_at(paas, checkout, "retire", lambda: None)
        assert paas.get(app).body == "v2\n"
        assert set(app_containers(paas, app).values()) == {"1", "2"}
        release(checkout, "v3")
        paas.push(checkout)
        assert_repaired(paas, app, 3, "v3\n")

        paas.run("settings:set", app, "drain-seconds", "3")
        release(checkout, "v4")
        paas.push(checkout)
        retirers = [pid for pid, (_, cmdline) in own_processes(paas).items() if b"retire" in cmdline.split(b"\0")]
        assert retirers, "no retirer runs"
        for pid in retirers:
            os.kill(pid, signal.SIGKILL)
        assert set(app_containers(paas, app).values()) == {"3", "4"}
        paas.run("ps:restore")
        assert_repaired(paas, app, 4, "v4\n")
    poller.report("killed at retire, retirer killed")
    assert not poller.failures, poller.failures[:5]
    assert set(poller.answers) == {"v1", "v2", "v3", "v4"}, poller.answers


def test_a_static_site_killed_at_its_record_serves_and_restore_puts_the_live_release_back(paas: Paas) -> None:
    """A site's deploy killed inside the transaction that records it live: nginx serves its files already (the site's
    link names it), the database says the old release is live. ps:restore points the site back at the live release;
    the next push goes live. Every request is answered throughout."""
    site = paas.new_app("site")
    checkout = paas.checkout(site, APPS / "static-site")

    def page(version: str) -> None:
        (checkout / "index.html").write_text(f"{version}\n")
        commit(checkout, version)

    page("one")
    paas.push(checkout)
    with Poller(paas, site) as poller:
        page("two")
        push_killed_at(paas, checkout, "record", lambda: None)
        assert paas.get(site).body == "two\n"
        paas.run("ps:restore")
        assert paas.get(site).body == "one\n"
        assert [(s, m) for s, m, _ in releases(paas, site).values()] == [("live", ""), ("failed", "interrupted")]
        page("three")
        paas.push(checkout)
        assert paas.get(site).body == "three\n"
    poller.report("static site killed at record")
    assert not poller.failures, poller.failures[:5]
    assert set(poller.answers) <= {"one", "two", "three"} and poller.answers["three"], poller.answers
