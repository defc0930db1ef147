"""A deploy killed with SIGKILL at each of its steps: the old release or the new one serves, never neither, and the
next deploy or `ps:restore` repairs the rest (no pending release; no container, image, network or route that no
release accounts for).

The deploying process (the pre-receive hook) stops itself at the step a test names (minipaas/faultpoints.py,
MINIPAAS_TEST_PAUSE_AT); the test sees it stopped, checks what serves, and kills it with SIGKILL: what a crash at
that step leaves, every time. A poller sends requests through the private nginx all along: each must be answered,
by one release or the other.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

from tests.helpers.faults import (
    Poller,
    app_containers,
    app_images,
    assert_repaired,
    db_rows,
    first_release,
    network_exists,
    own_processes,
    push_paused_at,
    release,
    releases,
    route,
    wait_for,
)
from tests.helpers.host import APPS, Paas, commit

# -- the app: a version string per release; a build or a start that takes a while on demand -------------------------


# -- killing at a step ----------------------------------------------------------------------------------------------


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
