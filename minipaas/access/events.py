"""The audit log: every command that arrives over ssh, who sent it and how it ended."""

from __future__ import annotations

import getpass
import os
import sys

from minipaas.access import access, notify
from minipaas.state import events as records
from minipaas.state.host import Host

REDACTED = "<redacted>"


def redact(argv: list[str]) -> list[str]:
    """Config values never reach the log: `config:set APP KEY=secret` is kept as `KEY=<redacted>`, wherever an
    assignment stands (an app name, or an option, has no `=`: one typed in the app's place is a value too)."""
    if argv and argv[0].endswith(":backup-auth"):  # NAME, then the keys (and options, kept as they are)
        return [*argv[:2], *(a if a.startswith("--") else REDACTED for a in argv[2:])]
    if argv and argv[0] == "config:set":
        return [argv[0], *(a.split("=", 1)[0] + "=" + REDACTED if "=" in a else a for a in argv[1:])]
    return list(argv)


def record(host: Host, *, app: str, command: str, outcome: str, user: str = "", release: int | None = None) -> None:
    """An event of the host's own doing (not a command received over ssh), by whoever runs minipaas (or `user`:
    one of minipaas' own processes, such as the watcher).

    One whose command starts with a notification's event name (`deploy APP`, `crash APP`, `cron-failed APP JOB`:
    notify.EVENTS) is also queued for the notifications that want it, its outcome as the message. Only here: a
    command received over ssh (`start`/`finish`) is never taken for the host's event, whatever its name."""
    principal = access.current()
    user = user or (principal.name if principal else (os.environ.get("MINIPAAS_USER") or getpass.getuser()))
    event = start(host, user=user, fingerprint=principal.fingerprint if principal else "", app=app, command=command)
    finish(host, event, outcome)
    name = command.split(" ", 1)[0]
    if name in notify.EVENTS:
        notify.queue(host, name, app=app, release=release, message=outcome)


def start(host: Host, *, user: str, fingerprint: str, app: str, command: str) -> int:
    return records.insert(host, user=user, fingerprint=fingerprint, app=app, command=command)


def finish(host: Host, event: int, outcome: str) -> None:
    records.finish(host, event, outcome)


def listing(host: Host, app: str | None = None, limit: int = 100) -> list[dict[str, object]]:
    return records.newest(host, app, limit)


def announce(host: Host, event: str, *, app: str, command: str, outcome: str, release: int | None = None,
             user: str = "") -> None:
    """`record` for a notification's event (`command` starts with its name), where the caller's work is done and
    must not fail for its record: a database that refuses the write is said on stderr."""
    try:
        record(host, app=app, command=command, outcome=outcome, user=user, release=release)
    except Exception as exc:
        print(f"events: {event} of {app or 'the host'} not recorded: {getattr(exc, 'message', exc)}",
              file=sys.stderr, flush=True)
