"""A Postgres service's off-host backups as records: the S3 keys (`backup-auth`), the target
(`backup-target s3://BUCKET/PREFIX`) and the last test restore. Kept in `service_settings` under keys of their
own (not in services.SETTINGS, which `info` prints whole), in the database that is root's alone like every app's
config; they go with the service. The secret key is read here and by addons/offsite.py only, never shown.
"""

from __future__ import annotations

from dataclasses import dataclass

from minipaas.state import store
from minipaas.state.host import Host

_AUTH = ("s3-access-key", "s3-secret-key", "s3-region", "s3-endpoint")
_TARGET = "s3-target"
_CHECKED = ("verify-at", "verify-outcome")


@dataclass(frozen=True)
class Auth:
    access_key: str
    secret_key: str
    region: str
    endpoint: str


def _get(host: Host, kind: str, name: str, key: str) -> str:
    row = host.db.execute("SELECT value FROM service_settings WHERE kind = ? AND name = ? AND key = ?",
                          (kind, name, key)).fetchone()
    return row["value"] if row else ""


def _put(host: Host, kind: str, name: str, values: dict[str, str]) -> None:
    with store.transaction(host.db) as db:
        for key, value in values.items():
            if value:
                db.execute("INSERT INTO service_settings (kind, name, key, value) VALUES (?, ?, ?, ?) "
                           "ON CONFLICT (kind, name, key) DO UPDATE SET value = excluded.value",
                           (kind, name, key, value))
            else:
                db.execute("DELETE FROM service_settings WHERE kind = ? AND name = ? AND key = ?", (kind, name, key))


def auth(host: Host, kind: str, name: str) -> Auth | None:
    values = [_get(host, kind, name, key) for key in _AUTH]
    return Auth(*values) if values[0] and values[1] else None


def set_auth(host: Host, kind: str, name: str, given: Auth | None) -> None:
    """The keys (None: gone)."""
    values = (given.access_key, given.secret_key, given.region, given.endpoint) if given else ("", "", "", "")
    _put(host, kind, name, dict(zip(_AUTH, values, strict=True)))


def target(host: Host, kind: str, name: str) -> str:
    """`s3://BUCKET/PREFIX`, or "" when none is set."""
    return _get(host, kind, name, _TARGET)


def set_target(host: Host, kind: str, name: str, url: str) -> None:
    _put(host, kind, name, {_TARGET: url})


def last_check(host: Host, kind: str, name: str) -> tuple[float, str]:
    """When the last test restore ran (0: never) and how it ended."""
    at = _get(host, kind, name, _CHECKED[0])
    return (float(at) if at else 0.0), _get(host, kind, name, _CHECKED[1])


def set_check(host: Host, kind: str, name: str, at: float, outcome: str) -> None:
    _put(host, kind, name, {_CHECKED[0]: repr(at), _CHECKED[1]: outcome})
