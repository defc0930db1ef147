"""The events table: the audit log's rows (who sent which command, and how it ended). Records only; what is
recorded, and its redaction, is access/events.py's."""

from __future__ import annotations

from minipaas.state import store
from minipaas.state.host import Host


def insert(host: Host, *, user: str, fingerprint: str, app: str, command: str) -> int:
    """A started event; returns its id."""
    with store.transaction(host.db) as db:
        cursor = db.execute("INSERT INTO events (at, user, fingerprint, app, command) VALUES (?, ?, ?, ?, ?)",
                            (store.now(), user, fingerprint, app, command))
    return int(cursor.lastrowid or 0)


def finish(host: Host, event: int, outcome: str) -> None:
    with store.transaction(host.db) as db:
        db.execute("UPDATE events SET outcome = ? WHERE id = ?", (outcome, event))


def newest(host: Host, app: str | None, limit: int) -> list[dict[str, object]]:
    """The newest events (of one app, or all), newest first, as their columns."""
    if app:
        rows = host.db.execute("SELECT * FROM events WHERE app = ? ORDER BY id DESC LIMIT ?", (app, limit))
    else:
        rows = host.db.execute("SELECT * FROM events ORDER BY id DESC LIMIT ?", (limit,))
    return [dict(row) for row in rows]
