"""The audit log: every command that arrives over ssh, who sent it and how it ended."""

from __future__ import annotations

import getpass
import os

from minipaas.access import access
from minipaas.state import events as records
from minipaas.state.host import Host

REDACTED = "<redacted>"


def redact(argv: list[str]) -> list[str]:
    """Config values never reach the log: `config:set APP KEY=secret` is kept as `KEY=<redacted>`, wherever an
    assignment stands (an app name, or an option, has no `=`: one typed in the app's place is a value too)."""
    if argv and argv[0] == "config:set":
        return [argv[0], *(a.split("=", 1)[0] + "=" + REDACTED if "=" in a else a for a in argv[1:])]
    return list(argv)


def record(host: Host, *, app: str, command: str, outcome: str, user: str = "") -> None:
    """An event of the host's own doing (not a command received over ssh), by whoever runs minipaas (or `user`:
    one of minipaas' own processes, such as the watcher)."""
    principal = access.current()
    user = user or (principal.name if principal else (os.environ.get("MINIPAAS_USER") or getpass.getuser()))
    event = start(host, user=user, fingerprint=principal.fingerprint if principal else "", app=app, command=command)
    finish(host, event, outcome)


def start(host: Host, *, user: str, fingerprint: str, app: str, command: str) -> int:
    return records.insert(host, user=user, fingerprint=fingerprint, app=app, command=command)


def finish(host: Host, event: int, outcome: str) -> None:
    records.finish(host, event, outcome)


def listing(host: Host, app: str | None = None, limit: int = 100) -> list[dict[str, object]]:
    return records.newest(host, app, limit)
