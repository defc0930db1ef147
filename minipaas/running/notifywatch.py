"""Sending notifications: the watcher's thread that empties the outbox, and `notify:test`'s one send.

Each event waits in the outbox (state/notifications.py) until it is sent: a POST of its body (access/notify.py)
with a timeout, tried again after RETRIES' delays when the receiver fails (no answer, or not a 2xx), then dropped.
Every failure is kept as the notification's last one (when, and why: the status or the error, never the URL), for
`notify:list`. A deploy only writes the outbox: a receiver that is slow or down delays nothing but its own events
(each notification is sent to by a thread of its own).
Sent with the standard library's urllib (one POST, no session to keep): no client library is needed for it.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field

from minipaas.access import notify
from minipaas.errors import MinipaasError
from minipaas.state import notifications as records
from minipaas.state import store
from minipaas.state.host import Host
from minipaas.state.settings import Settings

TIMEOUT = 5.0  # seconds a receiver has to answer
RETRIES = (5.0, 30.0)  # seconds before the 2nd and 3rd tries: three tries within about 40 s, then dropped
POLL_SECONDS = 1.0


def _say(line: str) -> None:
    print(f"watch: notify: {line}", file=sys.stderr, flush=True)


def host_name(settings: Settings) -> str:
    """The host as notifications name it: its apps' domain, or its hostname when that is the default."""
    return settings.domain if settings.domain != "localhost" else socket.gethostname()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is the receiver's failure (`HTTP 302 Found`), not followed: the URL checked is the one sent to."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def send(kind: str, url: str, event: notify.Event) -> str | None:
    """POST the event; None when the receiver took it (2xx), else why not (one line, without the URL)."""
    request = urllib.request.Request(url, data=notify.body(kind, event), method="POST",  # noqa: S310  (checked)
                                     headers={"Content-Type": "application/json", "User-Agent": "minipaas-notify"})
    try:
        with _OPENER.open(request, timeout=TIMEOUT) as answer:
            answer.read(64 * 1024)
            return None
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code} {exc.reason}".strip()
    except urllib.error.URLError as exc:  # `connection refused`, `Name or service not known`...
        reason = exc.reason
        if isinstance(reason, TimeoutError):
            return f"no answer within {TIMEOUT:g} s"
        return _clean(reason.strerror if isinstance(reason, OSError) and reason.strerror else str(reason), url)
    except TimeoutError:
        return f"no answer within {TIMEOUT:g} s"
    except (OSError, ValueError) as exc:
        return _clean(f"{type(exc).__name__}: {exc}", url)


def _clean(why: str, url: str) -> str:
    """An error's text with the URL (should it hold it) shown redacted, on one line."""
    return " ".join(why.replace(url, notify.redacted(url)).split())[:200]


def test(host: Host, name: str) -> str | None:
    """`notify:test NAME`: a test event sent now, once; None when delivered, else why not (kept as its failure)."""
    n = records.get(host, name)
    event = notify.Event(event="test", app=n.app, release=None, at=store.now(), host=host_name(host.settings),
                         message=f"a test of notification {name} (notify:test)")
    why = send(n.kind, n.url, event)
    if why is None:
        records.delivered(host, None, name)
    else:
        records.failed(host, None, name, why, retry_at=None)
    return why


def send_due(host: Host, n: records.Notification, pending: list[records.Pending]) -> int:
    """Send one notification's due events, in order; returns how many were delivered."""
    sent = 0
    for p in pending:
        event = notify.Event(event=p.event, app=p.app, release=p.release, at=p.at, message=p.message,
                             host=host_name(host.settings))
        why = send(n.kind, n.url, event)
        if why is None:
            records.delivered(host, p, n.name)
            sent += 1
            continue
        retry_at = store.now() + RETRIES[p.tries] if p.tries < len(RETRIES) else None
        records.failed(host, p, n.name, why, retry_at=retry_at)
        _say(f"{p.event} of {p.app or 'the host'} to {n.name} ({notify.redacted(n.url)}): {why}; "
             + (f"again in {RETRIES[p.tries]:g} s" if retry_at else "dropped"))
    return sent


@dataclass
class _Busy:
    """The notifications being sent to now, each by a thread of its own: a receiver that takes its 5 s holds up
    its own events only."""

    names: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)


def one_round(host: Host, busy: _Busy) -> None:
    """Each notification with events due, and no thread sending to it yet, gets one for them."""
    found = {n.name: n for n in records.listing(host)}
    groups: dict[str, list[records.Pending]] = {}
    for p in records.due(host):
        if p.notification in found:  # else removed since: its outbox went with it
            groups.setdefault(p.notification, []).append(p)
    for name, pending in groups.items():
        with busy.lock:
            if name in busy.names:
                continue
            busy.names.add(name)
        threading.Thread(target=_send_group, args=(host.settings, found[name], pending, busy), daemon=True).start()


def _send_group(settings: Settings, n: records.Notification, pending: list[records.Pending], busy: _Busy) -> None:
    try:
        send_due(Host(settings), n, pending)  # a connection of its own: SQLite's are not shared between threads
    except MinipaasError as exc:
        _say(exc.message)
    except Exception as exc:  # a database locked past its wait: the next round tries again
        _say(f"{type(exc).__name__}: {exc}")
    finally:
        with busy.lock:
            busy.names.discard(n.name)


def follow(settings: Settings) -> None:
    """Send the outbox's events as they come (the watcher's thread), until the process ends."""
    host, busy = Host(settings), _Busy()
    while True:
        try:
            one_round(host, busy)
        except MinipaasError as exc:
            _say(exc.message)
        except Exception as exc:  # a database locked past its wait: the next round tries again
            _say(f"{type(exc).__name__}: {exc}")
        time.sleep(POLL_SECONDS)
