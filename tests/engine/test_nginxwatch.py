"""The watcher keeps the home's own nginx running, end to end on a real host with no app (a real private nginx and a
real `minipaas watch`, no container): its master SIGKILLed, with no command run, a new master answers on the same
port, nothing was refused meanwhile, and the watcher's log says what it did; a master stopped on purpose stays
stopped. (With apps and routes: tests/engine/test_host_faults.py.)"""

from __future__ import annotations

import http.client
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from minipaas.running import watcher
from minipaas.state.settings import load
from tests.helpers.faults import wait_for
from tests.helpers.host import paas_host

pytestmark = pytest.mark.engine  # a real nginx (the fast tier has none); no container is made


def status(port: int) -> int:
    """What nginx answers a host it serves no app for (its default server: 404)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/", headers={"Host": "nothing.paas.test"})
        return conn.getresponse().status
    finally:
        conn.close()


def master_of(pid_file: Path) -> int | None:
    try:
        pid = int(pid_file.read_text())
        return pid if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"nginx: master process") else None
    except (OSError, ValueError):
        return None


def test_a_killed_master_is_started_again_by_the_watcher_and_a_stopped_one_is_left_stopped(tmp_path: Path) -> None:
    with paas_host(tmp_path / "work") as paas:
        settings = load(paas.env)
        pid_file = paas.home / "nginx" / "run" / "front.pid"
        first = master_of(pid_file)
        assert first is not None and status(paas.port) == 404
        watcher.ensure_running(settings)
        assert wait_for(lambda: watcher.running(settings) is not None, 30)
        answered: list[int] = []
        refused: list[str] = []
        done = threading.Event()

        def poll() -> None:
            while not done.is_set():
                try:
                    answered.append(status(paas.port))
                except OSError as exc:
                    refused.append(f"{type(exc).__name__}: {exc}")
                time.sleep(0.005)

        poller = threading.Thread(target=poll)
        poller.start()
        try:
            os.kill(first, signal.SIGKILL)
            killed = time.monotonic()
            assert wait_for(lambda: master_of(pid_file) not in (None, first), 30), "no new master"
            took = time.monotonic() - killed
            second = master_of(pid_file)
            after = len(answered)
            assert wait_for(lambda: len(answered) > after + 20, 30)  # the new master alone answers a while
        finally:
            done.set()
            poller.join()
        log = (paas.home / "logs" / "watch.log").read_text()
        assert f"nginx's master (pid {first}) ended without stopping" in log and f"(pid {second})" in log, log
        print(f"\nnginx killed, no app: {len(answered) + len(refused)} requests, {len(refused)} refused; a new master "
              f"{took:.2f} s after the kill", flush=True)
        assert not refused, refused[:5]
        assert set(answered) == {404}

        assert second is not None
        os.kill(second, signal.SIGQUIT)  # a stop: nginx removes its pid file
        assert wait_for(lambda: not pid_file.exists() and master_of(pid_file) is None, 30)
        assert wait_for(lambda: "stopped (its pid file is gone): left stopped" in
                        (paas.home / "logs" / "watch.log").read_text(), 30)
        assert master_of(pid_file) is None and not pid_file.exists()
