"""The dashboard's process (`minipaas dashboard`, started by ps:restore: running/dashboardproc.py): uvicorn on
the home's dashboard socket, until killed."""

from __future__ import annotations

import os

from minipaas.running import dashboardproc
from minipaas.state.settings import Settings


def run(settings: Settings) -> None:
    import uvicorn

    from minipaas.dashboard import web

    socket_path = settings.dashboard_socket
    socket_path.parent.mkdir(parents=True, exist_ok=True)
    socket_path.unlink(missing_ok=True)  # a socket a killed process left: uvicorn binds a fresh one
    dashboardproc.pid_file(settings).write_text(f"{os.getpid()}\n")
    # uvicorn makes the socket 0666; its folder (root:<workers' group> 0710, state/perms.py) lets nginx's
    # workers alone reach it. No access log: the audit log (`events`) records the actions.
    uvicorn.run(web.create_app(settings), uds=str(socket_path), log_level="warning", access_log=False,
                proxy_headers=False, server_header=False, date_header=True, timeout_graceful_shutdown=2)
