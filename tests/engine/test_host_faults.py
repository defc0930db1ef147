"""Faults around a deploy rather than in it: the home's disk filling up, nginx's master killed, the watcher killed,
the state database locked by another process. Each is repaired by the watcher (nginx), by the next deploy or
`ps:restore`, or refused in one line, and nothing is lost: the old release serves, the database opens, every app is
routed as before."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.faults import (
    Poller,
    app_containers,
    assert_repaired,
    db_rows,
    first_release,
    push_paused_at,
    release,
    releases,
    wait_for,
)
from tests.helpers.host import APPS, Paas, docker, paas_host


@contextlib.contextmanager
def small_disk(megabytes: int) -> Iterator[Path]:
    """A filesystem of its own (a size-limited tmpfs), mounted for the test and gone after it."""
    top = Path(tempfile.mkdtemp(prefix="minipaas-disk-", dir="/var/tmp"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={megabytes}m,mode=0711", "tmpfs", str(top)], check=True)
    try:
        yield top
    finally:
        subprocess.run(["umount", "-l", str(top)], check=False)
        top.rmdir()


def fill(disk: Path) -> Path:
    """Fill the disk up to its last block; returns the file that holds the space."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for size in (1 << 20, 4096, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * size)
    finally:
        os.close(fd)
    return filler


@pytest.fixture
def paas_on_small_disk(tmp_path: Path, engine_ready: None) -> Iterator[Paas]:
    with small_disk(48) as disk, paas_host(tmp_path / "work", top=disk) as instance:
        yield instance


def rejected_with(output: str, line: str) -> None:
    """The push's own lines (`remote: !`): `line`'s start, then that the old release serves; nothing else."""
    said = [text.split("!", 1)[1].strip() for text in output.splitlines() if text.startswith("remote: !")]
    assert len(said) == 2 and said[0].startswith(line), output
    assert said[1] == "push rejected; the previous release keeps serving", output
    assert "Traceback" not in output and "internal error" not in output, output


def test_the_home_disk_filling_up_during_a_push_rejects_it_in_one_line_and_corrupts_nothing(
        paas_on_small_disk: Paas) -> None:
    """The home on a 48 MB filesystem of its own. Filled up while the build's context is written, and filled up while
    the builder runs (the hook paused there, then let go on): each push is rejected in one line, the old release
    serves throughout, the database opens and `releases` and `ps` work on the full disk, and once there is room the
    next push goes live with nothing of the rejected ones left."""
    paas = paas_on_small_disk
    app, checkout = first_release(paas)
    with Poller(paas, app) as poller:
        (checkout / "big.bin").write_bytes(os.urandom(4 << 20))
        release(checkout, "v2")  # room for what git receives (4 MB), not for the build's context beside it
        filler = fill(paas.home.parent)
        os.truncate(filler, os.path.getsize(filler) - (6 << 20))
        rejected_with(paas.push(checkout, expect_ok=False).stderr, "no space left on the disk")
        filler.unlink()

        release(checkout, "v3")
        paused = push_paused_at(paas, checkout, "build")
        filler = fill(paas.home.parent)
        os.kill(paused.hook, signal.SIGCONT)
        output, _ = paused.process.communicate(timeout=300)
        assert paused.process.returncode != 0
        rejected_with(output, "no space left on the disk of minipaas' database")
        assert paas.get(app).body == "v1\n"
        assert db_rows(paas, "PRAGMA integrity_check") == [("ok",)]
        assert releases(paas, app)[1][0] == "live"
        assert " live " in paas.run("releases", app).stdout and paas.run("ps", app).stdout.count("serving") == 1
        filler.unlink()

        release(checkout, "v4")
        paas.push(checkout)
        assert_repaired(paas, app, max(releases(paas, app)), "v4\n")
    poller.report("disk full")
    assert not poller.failures, poller.failures[:5]
    assert set(poller.answers) == {"v1", "v4"}, poller.answers


@contextlib.contextmanager
def locked(paas: Paas) -> Iterator[None]:
    """Another process' write transaction on the state database (an sqlite3 shell left open), held meanwhile."""
    db = sqlite3.connect(paas.home / "minipaas.db", isolation_level=None)
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        db.execute("ROLLBACK")
        db.close()


def test_a_database_locked_longer_than_a_deploy_waits_refuses_in_one_line_and_loses_nothing(paas: Paas) -> None:
    """Writes wait MINIPAAS_DB_WAIT seconds (1 here, 30 by default) for another process' transaction. Locked before a
    push: refused before anything started. Locked once nginx sends requests to the new release and its record waits:
    the route goes back to the old release before the new one's container goes. Either way one line, the old release
    serves throughout, and ps:restore then the next push leave nothing behind."""
    paas.env["MINIPAAS_DB_WAIT"] = "1"
    app, checkout = first_release(paas)
    line = "minipaas' database stayed locked by another process for 1 s"
    with Poller(paas, app) as poller:
        release(checkout, "v2")
        with locked(paas):
            rejected_with(paas.push(checkout, expect_ok=False).stderr, line)
            refused = paas.run("config:set", app, "GREETING=hi", check=False)
            assert refused.returncode == 1 and len(refused.stderr.splitlines()) == 1, refused.stderr
            assert refused.stderr.startswith(f"error: {line}"), refused.stderr
            assert " live " in paas.run("releases", app).stdout  # reading waits for nobody

        paused = push_paused_at(paas, checkout, "switch")
        with locked(paas):
            os.kill(paused.hook, signal.SIGCONT)
            output, _ = paused.process.communicate(timeout=120)
        rejected_with(output, line)
        assert paas.get(app).body == "v1\n"
        assert paas.run("config:get", app, "GREETING", check=False).returncode != 0  # the refused change: not made
        paas.run("ps:restore")
        assert_repaired(paas, app, 1, "v1\n")
        release(checkout, "v3")
        paas.push(checkout)
        assert_repaired(paas, app, 3, "v3\n")
    poller.report("database locked")
    assert not poller.failures, poller.failures[:5]
    assert set(poller.answers) <= {"v1", "v2", "v3"} and poller.answers["v3"], poller.answers
    assert [status for status, _, _ in releases(paas, app).values()] == ["superseded", "failed", "live"]


def gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z"
    except OSError:
        return True


def running_master(pid_file: Path) -> int | None:
    """The pid of the nginx master the pid file names, when one runs under it."""
    with contextlib.suppress(OSError, ValueError):
        pid = int(pid_file.read_text())
        if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"nginx: master process"):
            return pid
    return None


def test_nginx_killed_is_started_again_by_the_watcher_with_every_route_and_nothing_refused(paas: Paas) -> None:
    """nginx's master SIGKILLed between deploys: its workers serve on, orphaned, but nothing could reload them or
    replace one. With no command run, the watcher sees the master end and starts it again on the orphans' own
    listening sockets (then they finish and go): no request is refused, the new master reads every app's route from
    its file (the deployed app and a static site beside it both serve), the watcher's log and `events` say so. The
    next deploy finds that master running and switches through it."""
    app, checkout = first_release(paas)
    site, _ = paas.deploy(APPS / "static-site")
    pid_file = paas.home / "nginx" / "run" / "front.pid"
    master = int(pid_file.read_text())
    workers = [int(p) for p in Path(f"/proc/{master}/task/{master}/children").read_text().split()]
    with Poller(paas, app) as poller:
        os.kill(master, signal.SIGKILL)
        killed = time.monotonic()
        assert wait_for(lambda: running_master(pid_file) not in (None, master), 30), "no new master"
        started = time.monotonic() - killed
        restarted = running_master(pid_file)
        assert wait_for(lambda: all(gone(worker) for worker in workers), 30), "the orphaned workers stayed"
        assert wait_for(lambda: paas.get(app).status == 200, 30)
        assert paas.get(app).body == "v1\n" and "Static home" in paas.get(site).body
        release(checkout, "v2")
        paas.push(checkout)
        assert paas.get(app).body == "v2\n"
    assert running_master(pid_file) == restarted  # the deploy found it running
    said = (paas.home / "logs" / "watch.log").read_text()
    assert f"nginx's master (pid {master}) ended without stopping" in said and f"(pid {restarted})" in said, said
    assert "watch: nginx started again" in paas.run("events").stdout
    print(f"\nnginx killed: a new master {started:.2f} s after the kill (polled every 50 ms); watcher: "
          f"{said.rsplit('running again in ', 1)[1].split(' s ')[0]} s from the master's end", flush=True)
    poller.report(f"nginx killed {set(poller.failures)}")
    assert set(poller.answers) == {"v1", "v2"}, poller.answers
    assert not poller.failures, poller.failures[:5]


def test_a_killed_watcher_is_started_again_by_the_next_deploy_and_catches_up(paas: Paas) -> None:
    """The watcher SIGKILLed, then one of an app's two web containers removed behind minipaas' back: nobody takes it
    out of the route. The next deploy (of another app) starts a watcher again, which first catches up with what it
    did not hear: the route names the running container alone, every request is answered; and it follows the engine
    from then on (the other container removed: the app answers 503 at once, not a timeout)."""
    from minipaas.routing import routes
    from minipaas.running import watcher
    from minipaas.state.settings import load

    settings = load(paas.env)
    app, _ = first_release(paas)
    paas.run("ps:scale", app, "web=2")
    first = watcher.running(settings)
    assert first is not None
    os.kill(first, signal.SIGKILL)
    assert wait_for(lambda: gone(first), 10)
    names = sorted(app_containers(paas, app))
    assert len(names) == 2
    with Poller(paas, app) as poller:
        docker("rm", "-f", names[0])
        assert len(routes.addresses(settings, app)) == 2  # nobody heard it go
        paas.deploy(APPS / "dockerfile", prefix="other")
        second = watcher.running(settings)
        assert second is not None and second != first
        assert wait_for(lambda: len(routes.addresses(settings, app)) == 1, 30), routes.addresses(settings, app)
    poller.report(f"watcher killed, a container removed meanwhile {set(poller.failures)}")
    assert routes.nginx_view(settings, app) == routes.addresses(settings, app)
    assert all(paas.get(app).body == "v1\n" for _ in range(20))
    docker("rm", "-f", names[1])
    assert wait_for(lambda: paas.get(app).status == 503, 30)
    paas.run("ps:restore")
    assert paas.get(app).body == "v1\n"


def test_a_watcher_and_a_dashboard_of_older_code_are_replaced_by_ps_restore_and_kept_after(paas: Paas) -> None:
    """An upgrade under running daemons: a watcher started from other code (another stamp) and a dashboard from
    before stamps existed. `ps:restore` (what install.sh and the boot unit run; every deploy for the watcher)
    stops both and starts them on the code on disk; a second `ps:restore` keeps those (no restart per call)."""
    from minipaas.running import dashboardproc, watcher
    from minipaas.state import daemons
    from minipaas.state.settings import load

    settings = load(paas.env)
    paas.run("ps:restore")  # nginx and the home's folders, as a host has them before its upgrade
    for daemon in (watcher.WATCHER, dashboardproc.DASHBOARD):
        pid = daemon.running(settings)
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            assert wait_for(lambda pid=pid: gone(pid), 10)
    daemons.spawn(settings, "watch", log="watch", stamp="older")
    daemons.spawn(settings, "dashboard", log="dashboard")  # no stamp: started by a minipaas without them
    assert wait_for(lambda: watcher.running(settings) and dashboardproc.running(settings), 30)
    old = (watcher.running(settings), dashboardproc.running(settings))

    paas.run("ps:restore")
    assert wait_for(lambda: watcher.running(settings) and dashboardproc.running(settings), 30)  # they start apart
    new = (watcher.running(settings), dashboardproc.running(settings))
    assert not set(new) & set(old), (old, new)
    assert all(gone(pid) for pid in old if pid is not None)
    stamp = f"{daemons.STAMP_VARIABLE}={daemons.code_stamp()}".encode()
    assert all(stamp in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0") for pid in new)

    paas.run("ps:restore")
    assert (watcher.running(settings), dashboardproc.running(settings)) == new
