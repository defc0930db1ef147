"""The formation table: how many containers of each process type an app runs, as `ps:scale` set it. Records only;
what the counts default to, and starting the containers, is deploy/formation.py's."""

from __future__ import annotations

from minipaas.state import store
from minipaas.state.host import Host


def counts(host: Host, app: str) -> dict[str, int]:
    """The counts `ps:scale` stored, by process type (a type it never scaled is absent)."""
    rows = host.db.execute("SELECT process, count FROM formation WHERE app = ?", (app,))
    return {row["process"]: row["count"] for row in rows}


def store_counts(host: Host, app: str, changes: dict[str, int]) -> None:
    """The counts given, set in one transaction (the others stay)."""
    with store.transaction(host.db) as db:
        for process, count in changes.items():
            db.execute("INSERT INTO formation (app, process, count) VALUES (?, ?, ?) "
                       "ON CONFLICT (app, process) DO UPDATE SET count = excluded.count", (app, process, count))
