"""The domains table: which app each server name belongs to. Records only; writing an app's vhost when its
domains change is routing/domains.py's."""

from __future__ import annotations

from minipaas.state import store
from minipaas.state.host import Host


def of(host: Host, app: str) -> list[str]:
    rows = host.db.execute("SELECT domain FROM domains WHERE app = ? ORDER BY domain", (app,))
    return [row["domain"] for row in rows]


def owner(host: Host, domain: str) -> str | None:
    """The app the domain belongs to, or None."""
    row = host.db.execute("SELECT app FROM domains WHERE domain = ?", (domain,)).fetchone()
    return row["app"] if row else None


def insert(host: Host, app: str, domain: str) -> None:
    with store.transaction(host.db) as db:
        db.execute("INSERT INTO domains (domain, app) VALUES (?, ?)", (domain, app))


def delete(host: Host, domain: str) -> None:
    with store.transaction(host.db) as db:
        db.execute("DELETE FROM domains WHERE domain = ?", (domain,))

