"""Notifications: which events there are, which notification wants which, how its URL is shown and what is sent.

Pure functions (parsing a notification's URL and filter, matching, redacting, rendering the JSON bodies) and
`queue`, which puts an event in the outbox of every notification that wants it (state/notifications.py); the
watcher sends them (running/notifywatch.py). An event is put in the outbox by the layer that knows it happened,
through the audit log (access/events.py `record`): queueing is one SQLite write, and never fails the caller.

A URL holds its receiver's secret (a Slack webhook's path, a token in the query, userinfo): it is kept in the
root-only database and shown only as `redacted` makes it, everywhere (notify:list, failures, the logs).
"""

from __future__ import annotations

import ipaddress
import json
import sys
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from minipaas.errors import InvalidInput
from minipaas.state import notifications as records
from minipaas.state.host import Host
from minipaas.state.names import _show

# The names, in the order `notify:add --help` lists them. `cron-failed` is recorded by scheduled jobs.
EVENTS = ("deploy", "deploy-failed", "crash", "cron-failed", "cert-expiring", "disk-low", "node-down",
          "backup-failed", "backup-verified")  # the last two: the monthly test restore (addons/offsite.py)
KINDS = ("webhook", "slack")
MAX_URL = 2048
LOCAL_NAMES = frozenset({"localhost"})


@dataclass(frozen=True)
class Event:
    event: str
    app: str
    release: int | None
    message: str
    at: float
    host: str


def parse_kind(kind: str) -> str:
    if kind not in KINDS:
        raise InvalidInput(f"unknown notification kind {_show(kind)}: use {' or '.join(KINDS)}")
    return kind


def parse_events(text: str | None) -> tuple[str, ...]:
    """`--events deploy,crash` → ('deploy', 'crash'), in EVENTS' order; None: every event."""
    if text is None:
        return EVENTS
    given = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [part for part in given if part not in EVENTS]
    if unknown or not given:
        shown = _show(unknown[0]) if unknown else "(none)"
        raise InvalidInput(f"unknown event {shown}: use a comma-separated list of {','.join(EVENTS)}")
    return tuple(e for e in EVENTS if e in given)


def check_url(url: str) -> str:
    """An https URL; or http to this host's loopback only (a receiver on the same host, as the tests run: plain
    http elsewhere would carry the payload and the URL's secret in clear)."""
    if len(url) > MAX_URL or any(c.isspace() or ord(c) < 32 for c in url):
        raise InvalidInput(f"invalid notification URL {_show(redacted(url))}: one line of at most {MAX_URL} characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (a port that is no number raises here)
    except ValueError:
        raise InvalidInput(f"invalid notification URL {_show(redacted(url))}") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise InvalidInput(f"unknown URL scheme in {_show(redacted(url))}: use https://HOST/... "
                           "(http:// only to this host's loopback)")
    if parts.scheme == "http" and not _loopback(parts.hostname):
        raise InvalidInput(f"{_show(redacted(url))}: plain http is allowed to this host's loopback only "
                           "(127.0.0.1, ::1, localhost); use https")
    return url


def _loopback(hostname: str) -> bool:
    if hostname in LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def redacted(url: str) -> str:
    """The URL as it may be shown: scheme, host and port; any path, query, fragment or userinfo becomes `…`
    (a Slack webhook's secret is its path; a token may stand anywhere after the host)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparsable URL>"
    if not parts.scheme or not host:
        return "<unparsable URL>"
    host = f"[{host}]" if ":" in host else host
    rest = "/…" if (parts.path not in ("", "/") or parts.query or parts.fragment) else ""
    user = "…@" if parts.username is not None or parts.password is not None else ""
    return f"{parts.scheme}://{user}{host}{port}{rest}"


def matches(notification: records.Notification, event: str, app: str) -> bool:
    """Whether the notification wants this event: its name in the filter, and its app (or a review app of it)
    the notification's app, when it names one. A host's event (no app: node-down, disk-low) goes to every
    notification that wants the event."""
    if event not in notification.events:
        return False
    if not notification.app or not app:
        return True
    return app == notification.app or app.startswith(f"{notification.app}--")


def summary(e: Event) -> str:
    """The readable one-liner (Slack's text; a webhook's body has it as `summary`)."""
    what = e.app or e.host
    if e.app and e.release is not None:
        what = f"{e.app} release {e.release}"
    return f"[{e.host}] {e.event}: {what}" + (f": {e.message}" if e.message else "")


def body(kind: str, e: Event) -> bytes:
    """What is POSTed: a webhook's JSON object, or Slack's incoming-webhook message ({"text": ...})."""
    if kind == "slack":
        return json.dumps({"text": summary(e)}).encode()
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(e.at))
    return json.dumps({"event": e.event, "app": e.app or None, "release": e.release, "message": e.message,
                       "at": at, "host": e.host, "summary": summary(e)}).encode()


def queue(host: Host, event: str, *, app: str = "", release: int | None = None, message: str = "") -> None:
    """The event into the outbox of each notification that wants it. Never raises: a notification must not fail
    what it reports on (a locked or full database is said on stderr, and the event is not sent)."""
    try:
        wanted = [n.name for n in records.listing(host) if matches(n, event, app)]
        records.enqueue(host, wanted, event=event, app=app, release=release, message=message[:1000])
    except Exception as exc:  # the caller's work is done already: only its notification is lost
        print(f"notify: {event} of {app or 'the host'} not queued: {getattr(exc, 'message', exc)}",
              file=sys.stderr, flush=True)
