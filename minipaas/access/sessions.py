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
from minipaas.state import dashlogins as logins
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
    logins.add_link(host, token_hash=_digest(token), key_name=principal.name, fingerprint=principal.fingerprint,
                    at=at, expires_at=at + LINK_SECONDS, forget_before=at - LINK_SECONDS)  # keep the table small
    return token


def redeem(host: Host, token: str, *, now: float | None = None) -> Session:
    """The link's token spent (once: marked used in the same transaction that reads it) for a new session."""
    at = store.now() if now is None else now
    if not TOKEN.fullmatch(token):
        raise Refused("this is not a login link of this dashboard")
    link = logins.spend_link(host, _digest(token), at)
    if link is None:
        raise Refused("this is not a login link of this dashboard")
    if link.used_at is not None:
        raise Refused("this login link was used already: ask for a new one with `dashboard:login`")
    if link.expires_at < at:
        raise Refused("this login link expired: ask for a new one with `dashboard:login`")
    principal = _principal(host, link.key_name, link.fingerprint)
    session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), principal.name, at + SESSION_SECONDS)
    logins.add_session(host, id_hash=_digest(session.id), key_name=principal.name, fingerprint=principal.fingerprint,
                       csrf=session.csrf, at=at, expires_at=session.expires_at)
    return session


def principal_of(host: Host, session_id: str, *, now: float | None = None) -> tuple[Principal, str]:
    """The key a session belongs to, with its role and grants as they are now, and the session's CSRF token."""
    at = store.now() if now is None else now
    if not TOKEN.fullmatch(session_id):
        raise Refused("no session")
    row = logins.session(host, _digest(session_id))
    if row is None:
        raise Refused("no session (it ended, or the key logged out everywhere)")
    if row.expires_at < at:
        raise Refused("the session expired after 12 hours: log in again")
    principal = _principal(host, row.key_name, row.fingerprint)
    if at - row.last_seen > 60:  # a write a minute at most, for `dashboard:sessions`
        logins.seen(host, row.id_hash, at)
    return principal, row.csrf


def listing(host: Host, key_name: str | None = None) -> list[dict[str, object]]:
    """Open sessions (of one key, or every key's), newest first; no id, only when and whose."""
    return logins.open_sessions(host, store.now(), key_name)


def logout_all(host: Host, key_name: str) -> int:
    """End every session and unused link of a key; how many sessions ended."""
    return logins.end_all(host, key_name)


def logout(host: Host, session_id: str) -> None:
    logins.end(host, _digest(session_id))
