"""The watcher's keeping of nginx (running/nginxwatch.py), without nginx: a master that ends without stopping is
started again once, one that stopped is left stopped, a start that fails is tried again later and later (never in a
tight loop), and the host's nginx is never started. Also the pieces it stands on, with real processes: a pidfd's wait
and a pid file told dead from stopped. Fast tier."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from minipaas.adapters import nginx, proc
from minipaas.errors import ProxyError
from minipaas.routing import proxy
from minipaas.running import nginxwatch


class Stop(BaseException):
    """Ends `follow`'s endless loop in a test (an Exception would be caught and retried)."""


class World:
    """A fake front on a fake clock: the master that runs (None: none), what its pid file names, what happens to
    it, and everything the keeper said, recorded and slept."""

    def __init__(self) -> None:
        self.now = 0.0
        self.master: int | None = 100
        self.pid_file: int | None = 100
        self.ends: dict[int, tuple[float, str]] = {}  # pid -> (when, "kill" | "stop")
        self.failing_starts = 0
        self.starts = 0
        self.next_pid = 101
        self.lines: list[str] = []
        self.events: list[tuple[str, str]] = []
        self.sleeps: list[float] = []
        self.rounds_left = 200

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.sleeps.append(seconds)
        self._advance(seconds)

    def _advance(self, seconds: float) -> None:
        self.now += seconds
        self.rounds_left -= 1
        if self.rounds_left <= 0:
            raise Stop
        for pid, (when, how) in list(self.ends.items()):
            if pid == self.master and when <= self.now:
                self.master = None
                if how == "stop":
                    self.pid_file = None

    def wait_exit(self, pid: int, timeout: float) -> bool:
        when = self.ends.get(pid, (float("inf"), ""))[0]
        self._advance(min(timeout, max(when - self.now, 0.0)))
        return self.master != pid

    def start(self, _settings: object) -> None:
        self.starts += 1
        if self.failing_starts:
            self.failing_starts -= 1
            raise ProxyError("nginx did not start: bind() to 127.0.0.1:8080 failed (98: Address already in use)")
        self.master = self.pid_file = self.next_pid
        self.next_pid += 1

    def died(self, _settings: object) -> int | None:
        return self.pid_file if self.master is None else None


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> World:
    w = World()
    monkeypatch.setattr(proxy, "front_master", lambda _s: w.master)
    monkeypatch.setattr(proxy, "front_died", w.died)
    monkeypatch.setattr(proxy, "ensure_running", w.start)
    monkeypatch.setattr(proc, "wait_exit", w.wait_exit)
    monkeypatch.setattr(time, "sleep", w.sleep)
    monkeypatch.setattr(time, "monotonic", lambda: w.now)
    monkeypatch.setattr(nginxwatch, "_say", w.lines.append)
    monkeypatch.setattr(nginxwatch, "_record", lambda _s, command, outcome: w.events.append((command, outcome)))
    return w


def keep(world: World, seconds: float, mode: str = "private") -> None:
    """The keeper's thread, for `seconds` of the fake clock."""
    world.rounds_left = 10_000
    end = world.now + seconds
    settings: Any = SimpleNamespace(nginx=mode)
    keeper = nginxwatch._Keeper(settings)
    while world.now < end:
        keeper.round()


def test_a_killed_master_is_started_again_once_and_said(world: World) -> None:
    world.ends[100] = (5.0, "kill")
    keep(world, 120)
    assert world.starts == 1 and world.master == 101
    [line] = world.lines
    assert line.startswith("nginx's master (pid 100) ended without stopping") and "(pid 101)" in line, line
    assert world.events == [("watch: nginx started again", "ok: pid 100 ended without stopping; pid 101 runs, 0.00 s")]


def test_a_master_stopped_on_purpose_is_left_stopped(world: World) -> None:
    world.ends[100] = (5.0, "stop")
    keep(world, 120)
    assert world.starts == 0 and world.master is None
    assert world.lines == ["nginx's master (pid 100) stopped (its pid file is gone): left stopped, the next deploy "
                           "or ps:restore starts it"]
    assert world.events == [] and max(world.sleeps) <= nginxwatch.IDLE_SECONDS


def test_a_master_started_by_someone_else_meanwhile_is_not_started_twice(world: World,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A deploy started it (under nginx's lock) before the keeper's turn: ensure_running finds it running."""
    world.ends[100] = (5.0, "kill")

    def deploy_started_it(_settings: object) -> None:
        if world.master is None:
            world.master = world.pid_file = 555
    monkeypatch.setattr(proxy, "ensure_running", deploy_started_it)
    keep(world, 60)
    assert world.master == 555 and world.starts == 0
    assert len(world.lines) == 1 and "running again" in world.lines[0] and "(pid 555)" in world.lines[0]


def test_a_start_that_fails_is_tried_again_later_and_later_then_holds(world: World) -> None:
    world.ends[100] = (1.0, "kill")
    world.failing_starts = 4
    keep(world, 300)
    assert world.starts == 5 and world.master == 101
    delays = [line.rsplit("again in ", 1)[1] for line in world.lines[:-1]]
    assert delays == ["1 s", "2 s", "4 s", "8 s"], world.lines
    assert all("did not start again: nginx did not start: bind()" in line for line in world.lines[:-1])
    assert "running again" in world.lines[-1]
    # One failure event per outage, then the start that held; never a sleep of nothing.
    assert [outcome.split(":")[0] for _, outcome in world.events] == ["failed", "ok"]
    assert min(world.sleeps) > 0


def test_backing_off_stops_at_a_minute(world: World) -> None:
    world.ends[100] = (1.0, "kill")
    world.failing_starts = 1_000
    keep(world, 3600)
    delays = [float(line.rsplit("again in ", 1)[1].split()[0]) for line in world.lines]
    assert max(delays) == nginxwatch.LAST_RETRY and delays.count(nginxwatch.LAST_RETRY) > 40
    assert world.starts < 3600 / nginxwatch.LAST_RETRY + 10  # about one a minute, not one a second
    assert len(world.events) == 1


def test_a_master_that_dies_again_soon_after_its_start_is_backed_off(world: World,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Started, and dead again 2 s later, every time: the starts space out instead of looping."""
    world.ends[100] = (1.0, "kill")
    original = world.start

    def start_dies_soon(settings: object) -> None:
        original(settings)
        world.ends[world.master or 0] = (world.now + 2.0, "kill")
    monkeypatch.setattr(proxy, "ensure_running", start_dies_soon)
    keep(world, 120)
    soon = [line for line in world.lines if "ended 2.0 s after its start" in line]
    assert soon and soon[0].endswith("again in 1 s") and soon[2].endswith("again in 4 s"), world.lines
    assert world.starts < 10


def test_the_hosts_nginx_is_never_started_and_its_end_is_said(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    world.ends[100] = (5.0, "kill")
    monkeypatch.setattr(nginx, "system_master", lambda: world.master)
    monkeypatch.setattr(nginx, "system_died_pid", lambda: world.died(None))
    settings: Any = SimpleNamespace(nginx="system")
    world.rounds_left = 100
    with pytest.raises(Stop):
        nginxwatch.follow(settings)
    assert world.starts == 0
    assert world.lines[0] == nginxwatch.SYSTEM_LINE and world.lines[0].startswith("nginx is the host's")
    assert world.lines[1:] == ["the host's nginx (pid 100) ended without stopping: not restarted by the watcher "
                               "(the host's service; systemctl restart nginx)"]
    assert [command for command, _ in world.events] == ["watch: the host's nginx ended"]


def test_a_round_that_fails_unexpectedly_is_said_and_tried_again_a_second_later(world: World,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(_settings: object) -> int | None:
        raise OSError("Permission denied: nginx/run/front.pid")
    monkeypatch.setattr(proxy, "front_master", broken)
    world.rounds_left = 3
    with pytest.raises(Stop):
        nginxwatch.follow(SimpleNamespace(nginx="private"))  # type: ignore[arg-type]
    assert world.lines[0] == "keeping nginx: OSError: Permission denied: nginx/run/front.pid; again in 1 s"
    assert len(world.lines) == 3 and world.sleeps == [1, 1, 1]


# -- with real processes -------------------------------------------------------------------------------------------

def fake_master(conf: Path) -> subprocess.Popen[bytes]:
    """A process titled as nginx's master of `conf` is (`sleep`, named so), once it runs under that title."""
    fake = subprocess.Popen([f"nginx: master process nginx -c {conf} -p /nowhere", "30"], executable="/bin/sleep")
    deadline = time.monotonic() + 10
    while not proc.title(fake.pid).startswith("nginx: master process"):  # Popen returns before the exec
        assert time.monotonic() < deadline, "the fake master did not start"
        time.sleep(0.01)
    return fake


def test_waiting_on_a_pidfd_ends_when_the_process_does(tmp_path: Path) -> None:
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        assert not proc.wait_exit(sleeper.pid, 0.05)
        sleeper.kill()  # not reaped yet: a zombie, which has ended
        assert proc.wait_exit(sleeper.pid, 10)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert proc.wait_exit(sleeper.pid, 10)  # reaped: no such process


def test_a_pid_file_left_by_a_killed_master_is_told_from_a_stopped_one(tmp_path: Path) -> None:
    conf, pid_file = tmp_path / "front.conf", tmp_path / "front.pid"
    master = nginx.Master(conf, tmp_path, pid_file)
    assert nginx.died_pid(master) is None  # never started, or stopped: nginx removed its file
    fake = fake_master(conf)
    try:
        pid_file.write_text(f"{fake.pid}\n")
        assert nginx.running_pid(master) == fake.pid and nginx.died_pid(master) is None
        other = nginx.Master(tmp_path / "other.conf", tmp_path, pid_file)  # another instance's master: not ours
        assert nginx.running_pid(other) is None and nginx.died_pid(other) == fake.pid
        fake.kill()
        fake.wait()
        assert nginx.running_pid(master) is None and nginx.died_pid(master) == fake.pid
    finally:
        fake.kill()
    pid_file.write_text("")  # being written by a starting master
    assert nginx.died_pid(master) is None
