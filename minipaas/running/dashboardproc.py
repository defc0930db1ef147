"""The dashboard's process: one per minipaas home, beside the watcher, started and found as the watcher is.

`minipaas dashboard` (minipaas/dashboard/server.py) serves the web dashboard with uvicorn on a unix socket
in the home (Settings.dashboard_socket), which nginx's vhost for `dashboard-domain` proxies to; nothing
listens on a network port. `ps:restore` (at boot, after every engine restart, by install.sh) writes the vhost
and starts the process unless it runs (`ensure_running`); `report` says whether it runs (`describe`).
"""

from __future__ import annotations

from pathlib import Path

from minipaas.state import daemons
from minipaas.state.settings import Settings

COMMAND = "dashboard"


DASHBOARD = daemons.Daemon(COMMAND, "dashboard")


def pid_file(settings: Settings) -> Path:
    return DASHBOARD.pid_file(settings)


def running(settings: Settings) -> int | None:
    """The dashboard's pid when it runs for this home."""
    return DASHBOARD.running(settings)


def ensure_running(settings: Settings) -> bool:
    """The vhost written and the process started unless it runs on the code now on disk (daemons.Daemon.ensure);
    True when it was started now."""
    from minipaas.routing import proxy  # here: `report` loads this module for `describe` alone

    proxy.write_dashboard_site(settings)
    return DASHBOARD.ensure(settings)


def describe(settings: Settings) -> str:
    """`report`'s line."""
    pid = running(settings)
    where = f"http://{settings.dashboard_host}/ via {settings.dashboard_socket}"
    return f"dashboard: running (pid {pid}) at {where}" if pid else \
        f"dashboard: not running (`minipaas ps:restore` starts it); it serves {where}"
