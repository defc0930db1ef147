"""The pure parts of the fault handling (no engine): the fault points, a database locked or full as one line, a full
disk as one line, a builder that dies with its deploy, a retirer told alive from dead by its lock."""

from __future__ import annotations

import errno
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from minipaas import faultpoints
from minipaas.adapters import proc
from minipaas.errors import Conflict, DiskFull, InvalidInput, disk_full
from minipaas.state import locks, store
from minipaas.state.settings import load


def test_unset_fault_points_change_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(faultpoints, "_AT", "")
    stops: list[int] = []
    monkeypatch.setattr(os, "kill", lambda pid, sig: stops.append(sig))
    feed = print
    assert faultpoints.on_first_call("build", feed) is feed
    for step in faultpoints.STEPS:
        faultpoints.reached(step)
    assert stops == []


def test_a_fault_point_stops_its_process_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(faultpoints, "_AT", "build")
    stops: list[int] = []
    monkeypatch.setattr(os, "kill", lambda pid, sig: stops.append(sig))
    lines: list[str] = []
    feed = faultpoints.on_first_call("build", lines.append)
    faultpoints.reached("switch")
    assert stops == []
    feed("#1 first")
    feed("#2 second")
    faultpoints.reached("build")  # let go on (SIGCONT): it does not stop again
    assert stops == [signal.SIGSTOP] and lines == ["#1 first", "#2 second"]


def test_the_pause_variable_is_not_passed_on() -> None:
    """A process started by one that loaded faultpoints (the watcher, a retirer) never pauses."""
    code = ("import os, subprocess, sys; from minipaas import faultpoints; "
            "print(faultpoints._AT, subprocess.run([sys.executable, '-c', "
            "'import os; print(os.environ.get(\"MINIPAAS_TEST_PAUSE_AT\"))'], capture_output=True, "
            "text=True).stdout.strip())")
    result = subprocess.run([sys.executable, "-c", code], env={**os.environ, faultpoints.VARIABLE: "record"},
                            capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["record", "None"]


def test_a_full_disk_is_one_line_wherever_the_write_was() -> None:
    full = disk_full(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/var/lib/minipaas/build/hello/Dockerfile"))
    assert isinstance(full, DiskFull) and "\n" not in full.message
    assert full.message.startswith("no space left on the disk of /var/lib/minipaas/build/hello/Dockerfile: ")
    assert disk_full(OSError(errno.EACCES, "Permission denied")) is None
    assert disk_full(ValueError("no")) is None
    with pytest.raises(DiskFull, match=r"^no space left on the disk \(sh said: fatal: write error: No space left"):
        proc.run(["sh", "-c", "echo 'fatal: write error: No space left on device' >&2; exit 128"])
    with pytest.raises(Exception, match="sh -c exit 3 failed") as other:
        proc.run(["sh", "-c", "exit 3"])
    assert not isinstance(other.value, DiskFull)


def test_the_engine_gone_under_a_call_is_one_line() -> None:
    import requests

    from minipaas.adapters import engine

    gone = engine.dropped(requests.exceptions.ConnectionError("('Connection aborted.', FileNotFoundError(2))"))
    assert gone is not None and gone.message.startswith("the Docker engine stopped answering")
    assert "\n" not in gone.message
    assert engine.dropped(ValueError("a bug")) is None


def test_a_database_locked_beyond_the_wait_is_one_line_and_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "minipaas.db"
    db = store.connect(path, wait=0.2)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    started = time.monotonic()
    with pytest.raises(Conflict) as refused, store.transaction(db):
        db.execute("INSERT INTO apps (name, created_at) VALUES ('hello', 0)")
    assert 0.2 <= time.monotonic() - started < 5
    assert refused.value.message.startswith("minipaas' database stayed locked by another process for 0.2 s")
    holder.execute("ROLLBACK")
    assert db.execute("SELECT COUNT(*) FROM apps").fetchone()[0] == 0
    with store.transaction(db):  # free again: the same write goes through
        db.execute("INSERT INTO apps (name, created_at) VALUES ('hello', 0)")
    assert db.execute("SELECT COUNT(*) FROM apps").fetchone()[0] == 1


def test_a_database_with_no_room_is_one_line_and_keeps_what_it_had(tmp_path: Path) -> None:
    path = tmp_path / "minipaas.db"
    db = store.connect(path)
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.execute(f"PRAGMA max_page_count = {pages}")  # as a full disk: SQLite can grow the file no more
    full = r"^no space left on the disk of minipaas' database \(.*minipaas.db\)"
    with pytest.raises(DiskFull, match=full), store.transaction(db):
        db.executemany("INSERT INTO apps (name, created_at) VALUES (?, 0)", ((f"a{n}" * 50,) for n in range(500)))
    assert not db.in_transaction
    assert db.execute("SELECT COUNT(*) FROM apps").fetchone()[0] == 0
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_the_database_wait_is_a_setting(tmp_path: Path) -> None:
    base = {"MINIPAAS_HOME": str(tmp_path)}
    assert load(base).db_wait == 30
    assert load({**base, "MINIPAAS_DB_WAIT": "5"}).db_wait == 5
    for bad in ("0", "-1", "1.5", "soon", "3601"):
        with pytest.raises(InvalidInput, match="MINIPAAS_DB_WAIT must be a number of seconds"):
            load({**base, "MINIPAAS_DB_WAIT": bad})


def test_a_child_that_dies_with_its_caller(tmp_path: Path) -> None:
    """A builder started so dies when the process that started it is SIGKILLed (a killed deploy): it would build on."""
    code = ("import subprocess, sys; from minipaas.adapters import proc; "
            "child = subprocess.Popen(['sleep', '600'], preexec_fn=proc.dies_with_caller()); "
            "print(child.pid, flush=True); child.wait()")
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 5
    while Path(f"/proc/{child}").exists() and (Path(f"/proc/{child}/stat").read_text().split()[2] != "Z"):
        assert time.monotonic() < deadline, "the child outlived its caller"
        time.sleep(0.02)


def test_a_retirer_is_told_alive_by_its_lock(tmp_path: Path) -> None:
    settings = load({"MINIPAAS_HOME": str(tmp_path)})
    assert not locks.retirer_runs(settings, "hello")
    with locks.retiring(settings, "hello"), locks.retiring(settings, "hello"):  # two retirers at once
        assert locks.retirer_runs(settings, "hello") and not locks.retirer_runs(settings, "other")
    assert not locks.retirer_runs(settings, "hello")
    code = ("import time; from minipaas.state import locks; from minipaas.state.settings import load; "
            f"cm = locks.retiring(load({{'MINIPAAS_HOME': {str(tmp_path)!r}}}), 'hello'); cm.__enter__(); "
            "print('held', flush=True); time.sleep(600)")
    retirer = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert retirer.stdout is not None and retirer.stdout.readline().strip() == "held"
    assert locks.retirer_runs(settings, "hello")
    retirer.send_signal(signal.SIGKILL)  # died however it died: the kernel lets go of its lock
    retirer.wait()
    assert not locks.retirer_runs(settings, "hello")
