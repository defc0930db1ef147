"""Running processes of an app: status, logs, stop and start."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from minipaas.deploy import placement
from minipaas.running import listing, logcursor
from minipaas.state import apps
from minipaas.state.host import Host
from minipaas.state.locks import app_lock


def status(host: Host, app: str) -> list[listing.Row]:
    """`ps`: the app's containers, or in a cluster its services' tasks with their nodes (running/listing.py)."""
    return placement.for_host(host, app).status()


def logs(host: Host, app: str, *, lines: int, follow: bool) -> Iterator[bytes]:
    """The live release's output: its containers', or in a cluster its tasks' on every node."""
    return placement.for_host(host, app).logs(lines=lines, follow=follow)


def stamped_logs(host: Host, app: str, cursor: logcursor.Cursor, *, lines: int,
                 follow: bool) -> Iterator[listing.Stamped]:
    """The same output, each line with its source and the engine's stamp, from where `cursor` says (the
    dashboard's log stream, which goes on after a reconnect: running/logcursor.py)."""
    return placement.for_host(host, app).stamped_logs(cursor, lines=lines, follow=follow)


def stop(host: Host, app: str, progress: Callable[[str], None]) -> None:
    with app_lock(host.settings, app, progress):
        placement.for_host(host, app).stop(progress)  # containers here, or the services' tasks in a cluster
        apps.set_stopped(host, app, True)
