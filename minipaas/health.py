"""Health checks: a new container must stay up and answer HTTP below 500 before it gets traffic."""

from __future__ import annotations

import http.client
import time
from collections.abc import Callable

from minipaas import engine
from minipaas.errors import DeployFailed, NotFound

WEB_PORT = 5000  # $PORT of every web container, unless its image EXPOSEs a port (as dokku does)
LOG_LINES = 50


def probe(address: str, path: str, *, timeout: float = 2.0) -> int:
    """One HTTP GET; returns the status, raises OSError when nothing answers."""
    host, _, port = address.rpartition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request("GET", path, headers={"User-Agent": "minipaas-healthcheck", "Connection": "close"})
        return conn.getresponse().status
    except http.client.HTTPException as exc:
        raise OSError(f"bad HTTP answer: {exc}") from None
    finally:
        conn.close()


def wait_healthy(
    container_id: str,
    *,
    network: str,
    port: int,
    path: str,
    timeout: float,
    progress: Callable[[str], None],
) -> tuple[str, float]:
    """Poll until the container answers `path` below 500; returns (address, seconds taken)."""
    started = time.monotonic()
    deadline = started + timeout
    next_note = started + 5
    last = "no answer yet"
    while True:
        container = engine.inspect(container_id, network=network)
        if container.status in ("exited", "dead") or container.restarts > 0:
            raise DeployFailed(
                f"{container.name} exited with code {container.exit_code} before answering the health check",
                detail=log_tail(container_id))
        if container.ip:
            address = f"{container.ip}:{port}"
            try:
                status = probe(address, path)
                if status < 500:
                    return address, time.monotonic() - started
                last = f"HTTP {status}"
            except OSError as exc:
                last = str(exc) or type(exc).__name__
        now = time.monotonic()
        if now > deadline:
            raise DeployFailed(
                f"{container.name} did not answer GET {path} below 500 within {timeout:.0f}s (last: {last}; "
                f"the app must listen on $PORT, {port} here)",
                detail=log_tail(container_id))
        if now > next_note:
            progress(f"       still waiting for {container.name} ({now - started:.0f}s, last: {last})")
            next_note = now + 5
        # Poll briskly while a healthy app would be booting: the push waits on this.
        time.sleep(0.02 if now - started < 10 else 0.25)


def log_tail(container_id: str, lines: int = LOG_LINES) -> str:
    try:
        data = b"".join(engine.logs(container_id, tail=lines))
    except NotFound:
        return ""
    text = data.decode("utf-8", errors="replace").rstrip()
    return f"last {lines} lines of its log:\n{text}" if text else "its log is empty"
