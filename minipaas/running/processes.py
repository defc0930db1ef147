"""Running processes of an app: status, logs, stop and start."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from minipaas.deploy import placement
from minipaas.running import listing, logcursor
from minipaas.state.host import Host


@dataclass(frozen=True)
class Listing:
    """How a placement's processes are shown: its rows for `ps`, its output, its output stamped."""

    rows: Callable[[Host, str], list[listing.Row]]
    logs: Callable[..., Iterator[bytes]]
    stamped: Callable[..., Iterator[listing.Stamped]]


# Each placement's (deploy/placement.py, by its WHAT): the push path places processes, running/ lists them.
LISTINGS = {
    placement.Containers.WHAT: Listing(listing.container_rows, listing.container_logs,
                                       listing.stamped_container_logs),
    placement.Services.WHAT: Listing(listing.task_rows, listing.task_logs, listing.stamped_task_logs),
}


def _listing(host: Host, app: str) -> Listing:
    return LISTINGS[placement.for_host(host, app).WHAT]


def status(host: Host, app: str) -> list[listing.Row]:
    """`ps`: the app's containers, or in a cluster its services' tasks with their nodes (running/listing.py)."""
    return _listing(host, app).rows(host, app)


def logs(host: Host, app: str, *, lines: int, follow: bool) -> Iterator[bytes]:
    """The live release's output: its containers', or in a cluster its tasks' on every node."""
    return _listing(host, app).logs(host, app, lines=lines, follow=follow)


def stamped_logs(host: Host, app: str, cursor: logcursor.Cursor, *, lines: int,
                 follow: bool) -> Iterator[listing.Stamped]:
    """The same output, each line with its source and the engine's stamp, from where `cursor` says (the
    dashboard's log stream, which goes on after a reconnect: running/logcursor.py)."""
    return _listing(host, app).stamped(host, app, cursor=cursor, lines=lines, follow=follow)


def stop(host: Host, app: str, progress: Callable[[str], None]) -> None:
    """`ps:stop` (deploy/placement.py's, which stops a review app beyond review-apps-max too)."""
    placement.stop(host, app, progress)
