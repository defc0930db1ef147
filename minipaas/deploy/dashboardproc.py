"""The dashboard's process: one per minipaas home, beside the watcher, started and found as the watcher is.

`minipaas dashboard` (minipaas/dashboard/server.py) serves the web dashboard with uvicorn on a unix socket
in the home (routing/proxy.dashboard_socket), which nginx's vhost for `dashboard-domain` proxies to; nothing
listens on a network port. `ps:restore` (at boot, after every engine restart, by install.sh) writes the vhost
and starts the process unless it runs (`ensure_running`); `report` says whether it runs (`describe`).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from minipaas.routing import proxy
from minipaas.state.settings import Settings

COMMAND = "dashboard"


def pid_file(settings: Settings) -> Path:
    return settings.nginx_dir / "run" / "dashboard.pid"


def _is_dashboard(pid: int, settings: Settings) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False
    return COMMAND.encode() in cmdline and f"MINIPAAS_HOME={settings.home}".encode() in environ


def running(settings: Settings) -> int | None:
    """The dashboard's pid when it runs for this home."""
    try:
        pid = int(pid_file(settings).read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _is_dashboard(pid, settings) else None


def ensure_running(settings: Settings) -> bool:
    """The vhost written and the process started unless it runs; True when it was started now."""
    proxy.write_dashboard_site(settings)
    if running(settings) is not None:
        return False
    settings.logs_dir.mkdir(parents=True, exist_ok=True)
    with open(settings.logs_dir / "dashboard.log", "ab") as log:
        subprocess.Popen(
            [sys.executable, "-m", "minipaas", COMMAND],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
            env={**os.environ, "MINIPAAS_HOME": str(settings.home)},
        )
    return True


def describe(settings: Settings) -> str:
    """`report`'s line."""
    pid = running(settings)
    where = f"http://{settings.dashboard_host}/ via {proxy.dashboard_socket(settings)}"
    return f"dashboard: running (pid {pid}) at {where}" if pid else \
        f"dashboard: not running (`minipaas ps:restore` starts it); it serves {where}"
