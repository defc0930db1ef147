"""App config: the environment variables every container of the app receives, each marked secret or not.

A value is secret when an admin set it with `config:set --secret` (a service link's URL always is; so is every
value stored before secrets were marked, migration 11). A deployer's `config` shows the others' values and
`<hidden>` for the secret ones. A review app receives its parent's values with its own overrides winning, except
once a deployer pushed its branch: from then on it receives no secret value at all (neither its parent's nor its
own), so that the code a deployer wrote reads exactly what that deployer's key may read (docs/security.md); but the
URLs of its own databases (addons/reviewdbs.py: its own role, nothing of the parent's).
"""

from __future__ import annotations

from dataclasses import dataclass

from minipaas.errors import InvalidInput
from minipaas.state import store
from minipaas.state.host import Host
from minipaas.state.names import check_env_key


@dataclass(frozen=True)
class Value:
    value: str
    secret: bool


def entries(host: Host, app: str) -> dict[str, Value]:
    """What the app's containers get, with each value's mark (sorted by key)."""
    own = own_entries(host, app)
    merged = {**_parent_entries(host, app), **own}
    if not receives_secrets(host, app):
        kept = _own_role_keys(host, app) & set(own)  # its own databases' URLs (addons/reviewdbs.py): its own role
        merged = {key: entry for key, entry in merged.items() if not entry.secret or key in kept}
    return dict(sorted(merged.items()))


def get_all(host: Host, app: str) -> dict[str, str]:
    """What the app's containers (its build, its release command) get: `entries` without the marks."""
    return {key: entry.value for key, entry in entries(host, app).items()}


def withheld(host: Host, app: str) -> list[str]:
    """The secret keys a review app a deployer pushed does not get (its parent's and its own)."""
    if receives_secrets(host, app):
        return []
    own = own_entries(host, app)
    every = {**_parent_entries(host, app), **own}
    kept = _own_role_keys(host, app) & set(own)
    return sorted(key for key, entry in every.items() if entry.secret and key not in kept)


def receives_secrets(host: Host, app: str) -> bool:
    """False for a review app that a deployer pushed to (sticky until its branch is deleted)."""
    row = host.db.execute("SELECT parent, deployer_pushed FROM apps WHERE name = ?", (app,)).fetchone()
    return row is None or row["parent"] is None or not row["deployer_pushed"]


def own(host: Host, app: str) -> dict[str, str]:
    """The values set on the app itself (a review app's overrides)."""
    return {key: entry.value for key, entry in own_entries(host, app).items()}


def own_entries(host: Host, app: str) -> dict[str, Value]:
    rows = host.db.execute("SELECT key, value, secret FROM config WHERE app = ? ORDER BY key", (app,))
    return {row["key"]: Value(row["value"], bool(row["secret"])) for row in rows}


def _parent_entries(host: Host, app: str) -> dict[str, Value]:
    rows = host.db.execute("SELECT c.key, c.value, c.secret FROM config c, apps a "
                           "WHERE a.name = ? AND c.app = a.parent", (app,))
    return {row["key"]: Value(row["value"], bool(row["secret"])) for row in rows}


def set_many(host: Host, app: str, values: dict[str, str], *, secret: bool | None = None) -> bool:
    """Store the values (already validated); True when anything changed. `secret`: True marks them secret,
    False unmarks them; None keeps the mark of a key the app has (a rotated secret stays one), a new key's
    is not secret."""
    linked = _link_keys(host, app)
    if secret is False and linked & set(values):
        raise InvalidInput(f"{', '.join(sorted(linked & set(values)))} is set by a service link, whose URL is always "
                           "secret")
    before = own_entries(host, app)
    with store.transaction(host.db) as db:
        for key, value in values.items():
            kept = before[key].secret if secret is None and key in before else bool(secret)
            mark = key in linked or kept
            db.execute("INSERT INTO config (app, key, value, secret) VALUES (?, ?, ?, ?) "
                       "ON CONFLICT (app, key) DO UPDATE SET value = excluded.value, secret = excluded.secret",
                       (app, key, value, int(mark)))
    after = own_entries(host, app)
    return any(before.get(key) != after.get(key) for key in values)


def _link_keys(host: Host, app: str) -> set[str]:
    """The keys the app's service links set (their values hold the service's password)."""
    return {row["env_key"] for row in host.db.execute("SELECT env_key FROM service_links WHERE app = ?", (app,))}


def _own_role_keys(host: Host, app: str) -> set[str]:
    """The keys of the app's links that log in with a credential of its own (a Postgres role's password), which
    holds nothing of another app's: a Redis link's URL holds the service's one password."""
    return {row["env_key"] for row in host.db.execute("SELECT env_key FROM service_links WHERE app = ? "
                                                       "AND password <> ''", (app,))}


def unset_many(host: Host, app: str, keys: list[str]) -> bool:
    for key in keys:
        check_env_key(key)
    before = own(host, app)
    with store.transaction(host.db) as db:
        for key in keys:
            db.execute("DELETE FROM config WHERE app = ? AND key = ?", (app, key))
    return any(key in before for key in keys)


def snapshot(host: Host, app: str) -> dict[str, Value]:
    """The app's own values with their marks, for `restore` (a failed config release is undone this way)."""
    return own_entries(host, app)


def restore(host: Host, app: str, saved: dict[str, Value]) -> None:
    """Put back a `snapshot` exactly, marks included."""
    with store.transaction(host.db) as db:
        db.execute("DELETE FROM config WHERE app = ?", (app,))
        for key, entry in saved.items():
            db.execute("INSERT INTO config (app, key, value, secret) VALUES (?, ?, ?, ?)",
                       (app, key, entry.value, int(entry.secret)))


def replace_all(host: Host, app: str, values: dict[str, str]) -> None:
    """Put back a whole earlier config as its containers got it (a rollback's). A review app keeps as its own
    only what differs from its parent's values. A key the app has keeps its mark, a key it no longer has comes
    back secret (its mark is not recorded with the release); the secret values a review app a deployer pushed
    does not get (so no release of it records them) stay as they are."""
    before = own_entries(host, app)
    inherited = _parent_entries(host, app)
    kept = {key: entry for key, entry in before.items() if entry.secret and not receives_secrets(host, app)}
    wanted = {key: value for key, value in values.items()
              if (inherited[key].value if key in inherited else None) != value and key not in kept}
    marks = {key: (before[key].secret if key in before else inherited[key].secret if key in inherited else True)
             for key in wanted}
    restore(host, app, {**kept, **{key: Value(value, marks[key]) for key, value in wanted.items()}})
