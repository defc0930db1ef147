"""App config: the environment variables every container of the app receives."""

from __future__ import annotations

from minipaas.state import store
from minipaas.state.host import Host
from minipaas.state.names import check_env_key


def get_all(host: Host, app: str) -> dict[str, str]:
    """What the app's containers get: a review app's parent's values, with its own overrides winning."""
    inherited = _parent_values(host, app)
    return dict(sorted({**inherited, **own(host, app)}.items()))


def own(host: Host, app: str) -> dict[str, str]:
    """The values set on the app itself (a review app's overrides)."""
    rows = host.db.execute("SELECT key, value FROM config WHERE app = ? ORDER BY key", (app,))
    return {row["key"]: row["value"] for row in rows}


def _parent_values(host: Host, app: str) -> dict[str, str]:
    rows = host.db.execute("SELECT c.key, c.value FROM config c, apps a WHERE a.name = ? AND c.app = a.parent",
                           (app,))
    return {row["key"]: row["value"] for row in rows}


def set_many(host: Host, app: str, values: dict[str, str]) -> bool:
    """Store the values (already validated); True when anything changed."""
    before = own(host, app)
    with store.transaction(host.db) as db:
        for key, value in values.items():
            db.execute("INSERT INTO config (app, key, value) VALUES (?, ?, ?) "
                       "ON CONFLICT (app, key) DO UPDATE SET value = excluded.value", (app, key, value))
    return any(before.get(key) != value for key, value in values.items())


def unset_many(host: Host, app: str, keys: list[str]) -> bool:
    for key in keys:
        check_env_key(key)
    before = own(host, app)
    with store.transaction(host.db) as db:
        for key in keys:
            db.execute("DELETE FROM config WHERE app = ? AND key = ?", (app, key))
    return any(key in before for key in keys)


def replace_all(host: Host, app: str, values: dict[str, str]) -> None:
    """Put back a whole earlier config (a failed config release is undone this way, a rollback too).
    A review app keeps as its own only what differs from its parent's values."""
    inherited = _parent_values(host, app)
    values = {key: value for key, value in values.items() if inherited.get(key) != value}
    with store.transaction(host.db) as db:
        db.execute("DELETE FROM config WHERE app = ?", (app,))
        for key, value in values.items():
            db.execute("INSERT INTO config (app, key, value) VALUES (?, ?, ?)", (app, key, value))
