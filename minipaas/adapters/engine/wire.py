"""The engine's HTTP API read with the standard library: `http.client` over the engine's unix socket (or
DOCKER_HOST's plain tcp:// address, as a cluster's tests use), for the read-only questions of the command path.

`ps`, `apps:list` or the dashboard ask the engine one or two questions; importing docker-py and requests to
ask them costs about 65 ms, more than the questions themselves. Everything that changes the engine, streams or
needs the SDK's auth goes through the SDK (client.py). The paths carry no API version: the engine answers
unversioned paths with its own, and the fields read here have not changed since API 1.25."""

from __future__ import annotations

import http.client
import json
import os
import re
import threading
import urllib.parse
from typing import Any

from minipaas.adapters.unixhttp import UnixHTTPConnection
from minipaas.errors import EngineError, NotFound

DEFAULT_HOST = "unix:///var/run/docker.sock"
TIMEOUT = 120  # seconds, as the SDK's client (a busy engine can take long to list)


def local() -> bool:
    """Whether the engine is this machine's (reached over a unix socket)."""
    return (os.environ.get("DOCKER_HOST") or DEFAULT_HOST).startswith("unix://")


def _connect() -> http.client.HTTPConnection:
    where = os.environ.get("DOCKER_HOST") or DEFAULT_HOST
    scheme, _, rest = where.partition("://")
    if os.environ.get("DOCKER_TLS_VERIFY") or scheme not in ("unix", "tcp"):
        raise EngineError(f"DOCKER_HOST={where}: minipaas talks to its engine over unix:// or plain tcp://")
    if scheme == "unix":
        return UnixHTTPConnection(rest, timeout=TIMEOUT)
    parsed = urllib.parse.urlsplit(f"//{rest}")
    return http.client.HTTPConnection(parsed.hostname or "localhost", parsed.port or 2375, timeout=TIMEOUT)


_local = threading.local()  # a kept-alive connection per thread: http.client's connections are not thread-safe


def get(path: str, **query: object) -> Any:
    """The engine's JSON answer to GET `path` (query values that are not strings are sent as JSON, as the
    engine's `filters` wants). NotFound for a 404; EngineError for anything else that is not a 200."""
    params = {k: v if isinstance(v, str) else json.dumps(v, separators=(",", ":")) for k, v in query.items()}
    target = path + ("?" + urllib.parse.urlencode(params) if params else "")
    for attempt in (1, 2):
        conn: http.client.HTTPConnection | None = getattr(_local, "conn", None)
        fresh = conn is None
        if conn is None:
            conn = _local.conn = _connect()
        try:
            conn.request("GET", target)
            response = conn.getresponse()
            body = response.read()
            break
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as exc:
            conn.close()
            _local.conn = None
            if fresh or attempt == 2:  # a kept-alive connection the engine closed is retried once, new
                raise not_answering(exc) from None
        except OSError as exc:
            conn.close()
            _local.conn = None
            if fresh:
                raise EngineError(f"cannot reach the Docker engine ({_words(exc)}); is dockerd running? "
                                  "(`docker info` tells)") from None
            raise not_answering(exc) from None
    if response.status == 404:
        raise NotFound(_message(body) or f"{path}: not found")
    if response.status != 200:
        raise EngineError(f"the Docker engine answered {response.status} to GET {path}: {_message(body)}")
    return json.loads(body)


def not_answering(exc: BaseException) -> EngineError:
    """The one line for an engine that does not answer, with the system's own words for why."""
    errno = re.search(r"\[Errno -?\d+\] ([^'\")]+)", str(exc))
    why = errno.group(1).strip() if errno else "the connection broke"
    return EngineError(f"the Docker engine does not answer ({why}); it may be restarting (`docker info` tells)")


def _words(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


def _message(body: bytes) -> str:
    try:
        return str(json.loads(body).get("message", "")).strip()
    except (ValueError, AttributeError):
        return body.decode("utf-8", "replace").strip()[:200]
