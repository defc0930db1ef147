"""The host's nginx (system mode), reloaded: `reload_system` returns once the new configuration serves,
as the private masters' `reload` does, so a static site's push that says live is served at once."""

from __future__ import annotations

import http.client
import os
import signal
import time
from pathlib import Path

import pytest

from conftest import free_port
from minipaas.adapters import nginx

pytestmark = pytest.mark.engine  # a real nginx (the fast tier has none)


def conf(prefix: Path, port: int, text: str) -> str:
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
    nginx.reload_system()  # not running: started
    deadline = time.monotonic() + 10
    while not (tmp_path / "nginx.pid").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
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
