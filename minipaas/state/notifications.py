"""The notifications' tables: where events are sent (`notify:*`) and the outbox of those waiting to be sent.

Records only: which events match which notification, how a URL is shown and how a body is made are
access/notify.py's; sending is running/notifywatch.py's. A URL is kept whole here (it holds the receiver's
secret), in the root-only database, and leaves it only to be sent to.
"""

from __future__ import annotations

from dataclasses import dataclass

from minipaas.errors import Conflict, NotFound
from minipaas.state import store
from minipaas.state.host import Host


@dataclass(frozen=True)
class Notification:
    name: str
    kind: str
    url: str
    app: str  # '' every app's
    events: tuple[str, ...]
    sent_at: float | None = None
    failed_at: float | None = None
    failure: str = ""


@dataclass(frozen=True)
class Pending:
    """An event in the outbox, for one notification."""

    id: int
    notification: str
    event: str
    app: str
    release: int | None
    message: str
    at: float
    tries: int


def _notification(row: dict[str, object]) -> Notification:
    return Notification(name=str(row["name"]), kind=str(row["kind"]), url=str(row["url"]), app=str(row["app"]),
                        events=tuple(e for e in str(row["events"]).split(",") if e),
                        sent_at=row["sent_at"], failed_at=row["failed_at"],  # type: ignore[arg-type]
                        failure=str(row["failure"]))


def add(host: Host, n: Notification) -> None:
    with store.transaction(host.db) as db:
        if db.execute("SELECT 1 FROM notifications WHERE name = ?", (n.name,)).fetchone():
            raise Conflict(f"notification {n.name} exists (notify:remove {n.name} first)")
        db.execute("INSERT INTO notifications (name, kind, url, app, events, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                   (n.name, n.kind, n.url, n.app, ",".join(n.events), store.now()))


def remove(host: Host, name: str) -> None:
    """The notification and what its outbox still held."""
    with store.transaction(host.db) as db:
        if db.execute("DELETE FROM notifications WHERE name = ?", (name,)).rowcount == 0:
            raise NotFound(f"no notification named {name}")


def get(host: Host, name: str) -> Notification:
    row = host.db.execute("SELECT * FROM notifications WHERE name = ?", (name,)).fetchone()
    if row is None:
        raise NotFound(f"no notification named {name}")
    return _notification(dict(row))


def listing(host: Host) -> list[Notification]:
    return [_notification(dict(row)) for row in host.db.execute("SELECT * FROM notifications ORDER BY name")]


def enqueue(host: Host, names: list[str], *, event: str, app: str, release: int | None, message: str) -> None:
    """The event, once for each notification named (those whose filter it matched)."""
    if not names:
        return
    now = store.now()
    with store.transaction(host.db) as db:
        db.executemany("INSERT INTO notify_outbox (notification, event, app, release, message, at, next_at) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?)",
                       [(name, event, app, release, message, now, now) for name in names])


def due(host: Host, limit: int = 50) -> list[Pending]:
    """The outbox's events whose time to be sent (again) has come, oldest first."""
    rows = host.db.execute("SELECT id, notification, event, app, release, message, at, tries FROM notify_outbox "
                           "WHERE next_at <= ? ORDER BY id LIMIT ?", (store.now(), limit))
    return [Pending(**dict(row)) for row in rows]


def waiting(host: Host, name: str) -> int:
    """How many events wait in the outbox for the notification."""
    return int(host.db.execute("SELECT count(*) FROM notify_outbox WHERE notification = ?", (name,)).fetchone()[0])


def delivered(host: Host, pending: Pending | None, name: str) -> None:
    """Sent: out of the outbox (None: a test event, never queued)."""
    with store.transaction(host.db) as db:
        if pending is not None:
            db.execute("DELETE FROM notify_outbox WHERE id = ?", (pending.id,))
        db.execute("UPDATE notifications SET sent_at = ? WHERE name = ?", (store.now(), name))


def failed(host: Host, pending: Pending | None, name: str, why: str, *, retry_at: float | None) -> None:
    """Not sent: the notification's last failure is this one; the event tried again at `retry_at`, or dropped
    (None: out of tries, or a test event)."""
    with store.transaction(host.db) as db:
        if pending is not None and retry_at is None:
            db.execute("DELETE FROM notify_outbox WHERE id = ?", (pending.id,))
        elif pending is not None:
            db.execute("UPDATE notify_outbox SET tries = tries + 1, next_at = ? WHERE id = ?", (retry_at, pending.id))
        db.execute("UPDATE notifications SET failed_at = ?, failure = ? WHERE name = ?", (store.now(), why, name))
