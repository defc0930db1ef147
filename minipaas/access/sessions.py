"""The dashboard's logins: one-time links and the browser sessions they open, each of one ssh key.

`dashboard:login` (over ssh, any role) mints a link for the key that asked: a random token, valid
LINK_SECONDS, usable once. Opening it gives the browser a session of SESSION_SECONDS. Only a SHA-256 of a
token or a session id is stored: the database (or a backup of it) opens no session. A session holds no
role and no grants: every request finds the key again by name and fingerprint (`principal_of`) and takes
its role and grants from the keys table as the ssh entry does, so a removed key, or one replaced under the
same name, ends its sessions at once; a revoked grant hides the app on the next request.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

from minipaas.access import keys
from minipaas.access.access import PermissionDenied, Principal
from minipaas.errors import NotFound
from minipaas.state import store
from minipaas.state.host import Host

LINK_SECONDS = 5 * 60
SESSION_SECONDS = 12 * 3600
# secrets.token_urlsafe(32): 43 characters of base64url; anything else is no token of ours.
TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")


class Refused(PermissionDenied):
    """A login link or session that opens nothing: unknown (forged), used, expired, or its key gone."""


@dataclass(frozen=True)
class Session:
    id: str  # the cookie's value (only its hash is stored)
    csrf: str  # the token every POST of this session carries
    key_name: str
    expires_at: float


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _principal(host: Host, name: str, fingerprint: str) -> Principal:
    """The key as it is now, if it is still the key of that name (the same check as the ssh entry's)."""
    try:
        record = keys.get(host, name)
    except NotFound:
        raise Refused(f"the key {name} is no longer registered") from None
    if record.fingerprint != fingerprint:
        raise Refused(f"the key named {name} was replaced by another key")
    return Principal(record.name, record.role, record.fingerprint, frozenset(record.apps))


def mint_link(host: Host, principal: Principal, *, now: float | None = None) -> str:
    """A one-time login token for the key that asked (its name and fingerprint)."""
    _principal(host, principal.name, principal.fingerprint)
    token = secrets.token_urlsafe(32)
    at = store.now() if now is None else now
    with store.transaction(host.db) as db:
        db.execute("DELETE FROM dashboard_links WHERE expires_at < ?", (at - LINK_SECONDS,))  # keep the table small
        db.execute("INSERT INTO dashboard_links (token_hash, key_name, fingerprint, created_at, expires_at) "
                   "VALUES (?, ?, ?, ?, ?)", (_digest(token), principal.name, principal.fingerprint, at,
                                               at + LINK_SECONDS))
    return token


def redeem(host: Host, token: str, *, now: float | None = None) -> Session:
    """The link's token spent (once: marked used in the same transaction that reads it) for a new session."""
    at = store.now() if now is None else now
    if not TOKEN.fullmatch(token):
        raise Refused("this is not a login link of this dashboard")
    with store.transaction(host.db) as db:
        row = db.execute("SELECT * FROM dashboard_links WHERE token_hash = ?", (_digest(token),)).fetchone()
        if row is None:
            raise Refused("this is not a login link of this dashboard")
        if row["used_at"] is not None:
            raise Refused("this login link was used already: ask for a new one with `dashboard:login`")
        if row["expires_at"] < at:
            raise Refused("this login link expired: ask for a new one with `dashboard:login`")
        db.execute("UPDATE dashboard_links SET used_at = ? WHERE token_hash = ?", (at, row["token_hash"]))
    principal = _principal(host, row["key_name"], row["fingerprint"])
    session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), principal.name, at + SESSION_SECONDS)
    with store.transaction(host.db) as db:
        db.execute("DELETE FROM dashboard_sessions WHERE expires_at < ?", (at,))
        db.execute("INSERT INTO dashboard_sessions (id_hash, key_name, fingerprint, csrf, created_at, expires_at, "
                   "last_seen) VALUES (?, ?, ?, ?, ?, ?, ?)",
                   (_digest(session.id), principal.name, principal.fingerprint, session.csrf, at,
                    session.expires_at, at))
    return session


def principal_of(host: Host, session_id: str, *, now: float | None = None) -> tuple[Principal, str]:
    """The key a session belongs to, with its role and grants as they are now, and the session's CSRF token."""
    at = store.now() if now is None else now
    if not TOKEN.fullmatch(session_id):
        raise Refused("no session")
    row = host.db.execute("SELECT * FROM dashboard_sessions WHERE id_hash = ?", (_digest(session_id),)).fetchone()
    if row is None:
        raise Refused("no session (it ended, or the key logged out everywhere)")
    if row["expires_at"] < at:
        raise Refused("the session expired after 12 hours: log in again")
    principal = _principal(host, row["key_name"], row["fingerprint"])
    if at - row["last_seen"] > 60:  # a write a minute at most, for `dashboard:sessions`
        with store.transaction(host.db) as db:
            db.execute("UPDATE dashboard_sessions SET last_seen = ? WHERE id_hash = ?", (at, row["id_hash"]))
    return principal, row["csrf"]


def listing(host: Host, key_name: str | None = None) -> list[dict[str, object]]:
    """Open sessions (of one key, or every key's), newest first; no id, only when and whose."""
    query = "SELECT key_name, created_at, expires_at, last_seen FROM dashboard_sessions WHERE expires_at >= ?"
    params: tuple[object, ...] = (store.now(),)
    if key_name is not None:
        query += " AND key_name = ?"
        params += (key_name,)
    return [dict(row) for row in host.db.execute(query + " ORDER BY created_at DESC", params)]


def logout_all(host: Host, key_name: str) -> int:
    """End every session and unused link of a key; how many sessions ended."""
    with store.transaction(host.db) as db:
        db.execute("DELETE FROM dashboard_links WHERE key_name = ?", (key_name,))
        return int(db.execute("DELETE FROM dashboard_sessions WHERE key_name = ?", (key_name,)).rowcount)


def logout(host: Host, session_id: str) -> None:
    with store.transaction(host.db) as db:
        db.execute("DELETE FROM dashboard_sessions WHERE id_hash = ?", (_digest(session_id),))
