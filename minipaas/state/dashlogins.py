"""The dashboard's login tables: one-time links (`dashboard_links`) and browser sessions (`dashboard_sessions`),
each of one ssh key, kept by the SHA-256 of their token or id. Records only; minting, checking and the rules
(how long each lasts, what a used link means) are access/sessions.py's."""

from __future__ import annotations

from dataclasses import dataclass

from minipaas.state import store
from minipaas.state.host import Host


@dataclass(frozen=True)
class Link:
    token_hash: str
    key_name: str
    fingerprint: str
    expires_at: float
    used_at: float | None  # as it was before `spend_link`


@dataclass(frozen=True)
class SessionRow:
    id_hash: str
    key_name: str
    fingerprint: str
    csrf: str
    expires_at: float
    last_seen: float


def add_link(host: Host, *, token_hash: str, key_name: str, fingerprint: str, at: float, expires_at: float,
             forget_before: float) -> None:
    """A new link; the links that expired before `forget_before` go in the same transaction (a small table)."""
    with store.transaction(host.db) as db:
        db.execute("DELETE FROM dashboard_links WHERE expires_at < ?", (forget_before,))
        db.execute("INSERT INTO dashboard_links (token_hash, key_name, fingerprint, created_at, expires_at) "
                   "VALUES (?, ?, ?, ?, ?)", (token_hash, key_name, fingerprint, at, expires_at))


def spend_link(host: Host, token_hash: str, at: float) -> Link | None:
    """The link as it was, marked used at `at` in the same transaction that reads it when it was unused and not
    expired (so it opens one session at most); None for no such link."""
    with store.transaction(host.db) as db:
        row = db.execute("SELECT * FROM dashboard_links WHERE token_hash = ?", (token_hash,)).fetchone()
        if row is None:
            return None
        if row["used_at"] is None and row["expires_at"] >= at:
            db.execute("UPDATE dashboard_links SET used_at = ? WHERE token_hash = ?", (at, token_hash))
    return Link(row["token_hash"], row["key_name"], row["fingerprint"], row["expires_at"], row["used_at"])


def add_session(host: Host, *, id_hash: str, key_name: str, fingerprint: str, csrf: str, at: float,
                expires_at: float) -> None:
    """A new session; the sessions expired at `at` go in the same transaction."""
    with store.transaction(host.db) as db:
        db.execute("DELETE FROM dashboard_sessions WHERE expires_at < ?", (at,))
        db.execute("INSERT INTO dashboard_sessions (id_hash, key_name, fingerprint, csrf, created_at, expires_at, "
                   "last_seen) VALUES (?, ?, ?, ?, ?, ?, ?)",
                   (id_hash, key_name, fingerprint, csrf, at, expires_at, at))


def session(host: Host, id_hash: str) -> SessionRow | None:
    row = host.db.execute("SELECT * FROM dashboard_sessions WHERE id_hash = ?", (id_hash,)).fetchone()
    if row is None:
        return None
    return SessionRow(row["id_hash"], row["key_name"], row["fingerprint"], row["csrf"], row["expires_at"],
                      row["last_seen"])


def seen(host: Host, id_hash: str, at: float) -> None:
    with store.transaction(host.db) as db:
        db.execute("UPDATE dashboard_sessions SET last_seen = ? WHERE id_hash = ?", (at, id_hash))


def open_sessions(host: Host, at: float, key_name: str | None = None) -> list[dict[str, object]]:
    """Sessions not expired at `at` (of one key, or every key's), newest first; no id, only when and whose."""
    query = "SELECT key_name, created_at, expires_at, last_seen FROM dashboard_sessions WHERE expires_at >= ?"
    params: tuple[object, ...] = (at,)
    if key_name is not None:
        query += " AND key_name = ?"
        params += (key_name,)
    return [dict(row) for row in host.db.execute(query + " ORDER BY created_at DESC", params)]


def end_all(host: Host, key_name: str) -> int:
    """Every session and link of the key gone (one transaction); how many sessions."""
    with store.transaction(host.db) as db:
        db.execute("DELETE FROM dashboard_links WHERE key_name = ?", (key_name,))
        return int(db.execute("DELETE FROM dashboard_sessions WHERE key_name = ?", (key_name,)).rowcount)


def end(host: Host, id_hash: str) -> None:
    with store.transaction(host.db) as db:
        db.execute("DELETE FROM dashboard_sessions WHERE id_hash = ?", (id_hash,))
