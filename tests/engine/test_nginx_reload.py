"""The host's nginx (system mode), reloaded: `reload_system` returns once the new configuration serves,
as the private masters' `reload` does, so a static site's push that says live is served at once."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import threading
import time
from pathlib import Path

import pytest

from minipaas.adapters import nginx
from tests.helpers.host import free_port

pytestmark = pytest.mark.engine  # a real nginx (the fast tier has none)


def conf(prefix: Path, port: int, text: str, unix: Path | None = None) -> str:
    also = f"server {{ listen unix:{unix}; return 200 \"{text}\"; }}" if unix else ""
    return f"""pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
worker_processes 2;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/tmp;
    proxy_temp_path {prefix}/tmp;
    fastcgi_temp_path {prefix}/tmp;
    uwsgi_temp_path {prefix}/tmp;
    scgi_temp_path {prefix}/tmp;
    server {{ listen 127.0.0.1:{port}; return 200 "{text}"; }}
    {also}
}}
"""


def get(port: int) -> str:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", "/", headers={"Connection": "close"})
        return connection.getresponse().read().decode()
    finally:
        connection.close()


def test_reloading_the_host_nginx_returns_once_the_new_configuration_serves(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "tmp").mkdir()
    main = tmp_path / "nginx.conf"
    port = free_port()
    main.write_text(conf(tmp_path, port, "v0"))
    # The host's nginx, as `nginx -s reload` finds it: here one of the test's own, with its own config.
    wrapper = tmp_path / "nginx"
    wrapper.write_text(f'#!/bin/sh\nexec nginx -c {main} -p {tmp_path} "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setattr(nginx, "NGINX", str(wrapper))
    monkeypatch.setattr(nginx, "SYSTEM_PID", tmp_path / "nginx.pid")
    nginx.reload_system()  # not running: started, and it returns once the master runs with its workers
    assert nginx.system_running()
    try:
        assert get(port) == "v0"
        for version in range(1, 6):
            main.write_text(conf(tmp_path, port, f"v{version}"))
            nginx.reload_system()
            # A new connection right after the call meets the new configuration, never an old worker.
            assert get(port) == f"v{version}"
    finally:
        pid = int((tmp_path / "nginx.pid").read_text())
        os.kill(pid, signal.SIGQUIT)
        deadline = time.monotonic() + 10
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)


def stop(pid: int, sig: int = signal.SIGQUIT) -> None:
    os.kill(pid, sig)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)


def test_a_host_nginx_that_died_is_started_again_past_its_leftovers(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A reboot without systemd (or a killed master) leaves nginx's pid file and its unix socket's
    file: `system_running` says no, and `reload_system` starts a new master that binds the socket."""
    (tmp_path / "tmp").mkdir()
    main, control = tmp_path / "nginx.conf", tmp_path / "control.sock"
    port = free_port()
    main.write_text(conf(tmp_path, port, "up", unix=control))
    wrapper = tmp_path / "nginx"
    wrapper.write_text(f'#!/bin/sh\nexec nginx -c {main} -p {tmp_path} "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setattr(nginx, "NGINX", str(wrapper))
    monkeypatch.setattr(nginx, "SYSTEM_PID", tmp_path / "nginx.pid")
    assert not nginx.system_running()
    nginx.reload_system((control,))
    first = int((tmp_path / "nginx.pid").read_text())
    assert nginx.system_running()
    # Dies at once, workers and all, as in a power cut: the pid file and the socket file stay.
    workers = [int(p) for p in Path(f"/proc/{first}/task/{first}/children").read_text().split()]
    for pid in [first, *workers]:
        stop(pid, signal.SIGKILL)
    assert control.is_socket() and (tmp_path / "nginx.pid").exists()
    assert not nginx.system_running()
    nginx.reload_system((control,))
    second = int((tmp_path / "nginx.pid").read_text())
    try:
        assert second != first and nginx.system_running()
        assert get(port) == "up"
    finally:
        stop(second)


def unix_get(path: Path) -> str:
    connection = http.client.HTTPConnection("localhost", timeout=5)
    connection.sock = socket.socket(socket.AF_UNIX)
    connection.sock.connect(str(path))
    try:
        connection.request("GET", "/", headers={"Connection": "close"})
        return connection.getresponse().read().decode()
    finally:
        connection.close()


def test_a_master_killed_alone_is_started_again_on_its_orphans_sockets_and_nothing_is_refused(tmp_path: Path) -> None:
    """A private master (as minipaas runs its own) SIGKILLed: its workers serve on, orphaned. Started again, the new
    master takes their listening sockets over (TCP and unix) before they go: while requests are sent one after
    another, none is refused, and the orphans are gone once `start` returns."""
    (tmp_path / "tmp").mkdir()
    main, control = tmp_path / "nginx.conf", tmp_path / "control.sock"
    port = free_port()
    main.write_text(conf(tmp_path, port, "up", unix=control))
    master = nginx.Master(main, tmp_path, tmp_path / "nginx.pid", unix_sockets=(control,),
                          tcp=(("127.0.0.1", port),))
    nginx.start(master)
    first = nginx.running_pid(master)
    assert first is not None
    orphans = [int(p) for p in Path(f"/proc/{first}/task/{first}/children").read_text().split()]
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while not zombie(first):  # its parent, not us, reaps it (or not)
        assert time.monotonic() < deadline, "nginx's master outlived SIGKILL"
        time.sleep(0.01)
    assert get(port) == "up" and nginx.running_pid(master) is None and nginx.died_pid(master) == first
    answered, refused = [], []
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            try:
                answered.append(get(port))
            except OSError as exc:
                refused.append(exc)
            time.sleep(0.002)

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        nginx.start(master)
        second = nginx.running_pid(master)
        after, deadline = len(answered), time.monotonic() + 10
        while len(answered) < after + 20 and time.monotonic() < deadline:  # the new master's alone, a while
            time.sleep(0.01)
    finally:
        done.set()
        poller.join()
    try:
        assert second is not None and second != first
        assert not refused, refused[:3]
        assert answered and set(answered) == {"up"}
        assert all(not Path(f"/proc/{pid}").exists() or zombie(pid) for pid in orphans)
        assert get(port) == "up" and unix_get(control) == "up"
    finally:
        stop(second or 0)


def zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z"
    except OSError:
        return True
