"""The sleeps table: when an app last went to sleep (idle), when it last woke, and why its last wake failed.
Whether an app sleeps now is its route's (routing/routes.py `sleeping`): a deploy that routes it wakes it too."""

from __future__ import annotations

from dataclasses import dataclass

from minipaas.state import store
from minipaas.state.host import Host


@dataclass(frozen=True)
class Sleep:
    slept_at: float
    woke_at: float | None
    wake_error: str


def slept(host: Host, app: str) -> None:
    with store.transaction(host.db) as db:
        db.execute("INSERT INTO sleeps (app, slept_at) VALUES (?, ?) ON CONFLICT (app) DO UPDATE SET "
                   "slept_at = excluded.slept_at, woke_at = NULL, wake_error = ''", (app, store.now()))


def woke(host: Host, app: str) -> None:
    with store.transaction(host.db) as db:
        db.execute("UPDATE sleeps SET woke_at = ?, wake_error = '' WHERE app = ?", (store.now(), app))


def wake_failed(host: Host, app: str, why: str) -> None:
    with store.transaction(host.db) as db:
        db.execute("UPDATE sleeps SET wake_error = ? WHERE app = ?", (why, app))


def of(host: Host, app: str) -> Sleep | None:
    row = host.db.execute("SELECT slept_at, woke_at, wake_error FROM sleeps WHERE app = ?", (app,)).fetchone()
    return Sleep(row["slept_at"], row["woke_at"], row["wake_error"]) if row else None


def woke_at(host: Host) -> dict[str, float]:
    """When each app that slept last woke (those woken since they last slept)."""
    return {row["app"]: row["woke_at"] for row in
            host.db.execute("SELECT app, woke_at FROM sleeps WHERE woke_at IS NOT NULL")}
