"""The ssh key tables: `ssh_keys` (each key's name, role, fingerprint and public key) and `key_grants` (the apps
a deployer's key may reach). Records only; parsing keys, the roles' rules and the authorized_keys file are
access/keys.py's."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from minipaas.errors import Conflict
from minipaas.state import store
from minipaas.state.host import Host


@dataclass(frozen=True)
class KeyRow:
    name: str
    role: str
    fingerprint: str
    key_type: str
    key_data: str


def _key(row: object) -> KeyRow:
    r = dict(row)  # type: ignore[call-overload]
    return KeyRow(r["name"], r["role"], r["fingerprint"], r["key_type"], r["key_data"])


def insert(host: Host, key: KeyRow, *, then: Callable[[], None]) -> None:
    """A new key, refused when its name or its fingerprint is taken; `then` runs inside the same transaction (what
    it raises adds no key)."""
    with store.transaction(host.db) as db:
        if db.execute("SELECT 1 FROM ssh_keys WHERE name = ?", (key.name,)).fetchone():
            raise Conflict(f"a key named {key.name} exists already")
        owner = db.execute("SELECT name FROM ssh_keys WHERE fingerprint = ?", (key.fingerprint,)).fetchone()
        if owner:
            raise Conflict(f"this key is already registered as {owner['name']}")
        db.execute("INSERT INTO ssh_keys (name, role, fingerprint, key_type, key_data, created_at) "
                   "VALUES (?, ?, ?, ?, ?, ?)",
                   (key.name, key.role, key.fingerprint, key.key_type, key.key_data, store.now()))
        then()


def delete(host: Host, name: str, *, then: Callable[[], None]) -> None:
    """The key gone, with its grants, links and sessions; `then` runs inside the same transaction."""
    with store.transaction(host.db) as db:
        db.execute("DELETE FROM ssh_keys WHERE name = ?", (name,))
        then()


def find(host: Host, name: str) -> KeyRow | None:
    row = host.db.execute("SELECT * FROM ssh_keys WHERE name = ?", (name,)).fetchone()
    return _key(row) if row else None


def every(host: Host) -> list[KeyRow]:
    """Every key, by name."""
    return [_key(row) for row in host.db.execute("SELECT * FROM ssh_keys ORDER BY name")]


def names(host: Host) -> list[str]:
    return [row["name"] for row in host.db.execute("SELECT name FROM ssh_keys ORDER BY name")]


def any_key(host: Host) -> bool:
    return host.db.execute("SELECT 1 FROM ssh_keys LIMIT 1").fetchone() is not None


def grants(host: Host, name: str) -> tuple[str, ...]:
    """The apps the key has a grant on, by name."""
    rows = host.db.execute("SELECT app FROM key_grants WHERE name = ? ORDER BY app", (name,))
    return tuple(row["app"] for row in rows)


def grant(host: Host, name: str, app: str) -> None:
    with store.transaction(host.db) as db:
        db.execute("INSERT OR IGNORE INTO key_grants (name, app) VALUES (?, ?)", (name, app))


def revoke(host: Host, name: str, app: str) -> bool:
    """The grant gone; False when there was none."""
    with store.transaction(host.db) as db:
        return bool(db.execute("DELETE FROM key_grants WHERE name = ? AND app = ?", (name, app)).rowcount)
