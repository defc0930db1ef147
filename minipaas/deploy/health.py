"""Health checks: a new container must stay up and answer HTTP before it gets traffic.

By default it must answer the app's `healthcheck-path` with a status below 500. A dokku-style
`CHECKS` file at the repository's root replaces that with its own list: each `PATH [CONTENT]` line
must answer below 400 with CONTENT in the body; `WAIT=` delays the first request, `TIMEOUT=` bounds
each request. Comments (`#`) and other `KEY=` lines are ignored.
"""

from __future__ import annotations

import http.client
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from minipaas import faultpoints
from minipaas.adapters import engine
from minipaas.errors import DeployFailed, InvalidInput, NotFound
from minipaas.source import appjson
from minipaas.state.names import REQUEST_PATH

WEB_PORT = 5000  # $PORT of every web container, unless its image EXPOSEs a port (as dokku does)
LOG_LINES = 50
MAX_BODY = 1024 * 1024
MAX_SECONDS = 3600  # a CHECKS file's WAIT and TIMEOUT, as app.json's numbers and healthcheck-timeout


@dataclass(frozen=True)
class Check:
    path: str
    content: str | None = None  # None: any status below 500 will do (the default check)

    def passes(self, status: int, body: str) -> bool:
        if self.content is None:
            return status < 500
        return status < 400 and self.content in body

    def describe(self) -> str:
        return f"GET {self.path}" + (f" containing {self.content!r}" if self.content else "")


@dataclass(frozen=True)
class Checks:
    checks: tuple[Check, ...]
    wait: float = 0.0
    request_timeout: float = 2.0
    from_file: bool = field(default=False)


def default_checks(path: str) -> Checks:
    return Checks((Check(path),))


def parse_checks(text: str) -> Checks:
    """A CHECKS file, as dokku reads it (the host-specific `//host/path` form is not supported)."""
    checks: list[Check] = []
    wait, request_timeout = 0.0, 2.0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if sep and not line.startswith("/"):
            if key in ("WAIT", "TIMEOUT"):
                # ASCII digits only: str.isdigit() also takes `²`, which float() refuses.
                seconds = value.strip()
                if not re.fullmatch(r"[0-9]{1,4}", seconds) or int(seconds) > MAX_SECONDS:
                    raise InvalidInput(f"CHECKS line {number}: {key} must be a number of seconds from 0 to "
                                       f"{MAX_SECONDS}")
                if key == "WAIT":
                    wait = float(seconds)
                else:
                    request_timeout = max(1.0, float(seconds))
            continue
        path, _, content = line.partition(" ")
        if not path.startswith("/") or path.startswith("//"):
            raise InvalidInput(f"CHECKS line {number}: expected `/path [expected content]`, got {line[:80]!r}")
        if not REQUEST_PATH.fullmatch(path):
            raise InvalidInput(f"CHECKS line {number}: the path must be printable ASCII without spaces "
                               f"(percent-encode the rest: /caf%C3%A9), not {path[:80]!r}")
        checks.append(Check(path, content.strip()))
    if not checks:
        raise InvalidInput("CHECKS lists no path to check")
    return Checks(tuple(checks), wait=wait, request_timeout=request_timeout, from_file=True)


def probe(address: str, path: str, *, timeout: float = 2.0) -> tuple[int, str]:
    """One HTTP GET; returns (status, body), raises OSError when nothing answers."""
    host, _, port = address.rpartition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request("GET", path, headers={"User-Agent": "minipaas-healthcheck", "Connection": "close"})
        response = conn.getresponse()
        return response.status, response.read(MAX_BODY).decode("utf-8", errors="replace")
    except http.client.HTTPException as exc:
        raise OSError(f"bad HTTP answer: {exc}") from None
    finally:
        conn.close()


def exited(container: engine.Container, when: str = "") -> DeployFailed:
    """The failure of a container that stopped, or that its restart policy started again: its code, its last lines."""
    code = engine.last_exit_code(container)
    how = f"exited with code {code}" if code is not None else "exited and was started again"
    return DeployFailed(f"{container.name} {how} {when}".rstrip(), detail=log_tail(container.id))


def wait_healthy(
    container_id: str,
    *,
    network: str,
    port: int,
    checks: Checks,
    timeout: float,
    progress: Callable[[str], None],
) -> tuple[str, float]:
    """Poll until the container passes every check in turn; returns (address, seconds taken)."""
    started = time.monotonic()
    deadline = started + timeout
    next_note = started + 5
    last = "no answer yet"
    pending = list(checks.checks)
    if checks.wait:
        progress(f"       waiting {checks.wait:.0f}s before the first check (CHECKS: WAIT)")
        time.sleep(min(checks.wait, timeout))
    while True:
        container = engine.inspect(container_id, network=network)
        if container.status in ("exited", "dead") or container.restarts > 0:
            raise exited(container, "before answering the health check")
        address = f"{container.ip}:{port}"
        if container.ip:
            last = _advance(address, pending, checks, progress) or last
        if not pending:
            return address, time.monotonic() - started
        faultpoints.reached("health")
        now = time.monotonic()
        if now > deadline:
            raise DeployFailed(
                f"{container.name} did not pass {pending[0].describe()} within {timeout:.0f}s (last: {last}; "
                f"the app must listen on $PORT, {port} here)",
                detail=log_tail(container_id))
        if now > next_note:
            progress(f"       still waiting for {container.name} ({now - started:.0f}s, last: {last})")
            next_note = now + 5
        # Poll briskly while a healthy app would be booting: the push waits on this.
        time.sleep(0.02 if now - started < 10 else 0.25)


def _advance(address: str, pending: list[Check], checks: Checks, progress: Callable[[str], None]) -> str | None:
    """Run `pending`'s checks in turn against `address`, dropping each that passes; returns why the first one
    left did not pass (None when none is left)."""
    while pending:
        check = pending[0]
        try:
            status, body = probe(address, check.path, timeout=checks.request_timeout)
        except OSError as exc:
            return str(exc) or type(exc).__name__
        if not check.passes(status, body):
            return f"HTTP {status} for {check.describe()}"
        pending.pop(0)
        if checks.from_file:
            progress(f"       passed: {check.describe()}")
    return None


def wait_address(address: str, *, name: str, checks: Checks, deadline: float, gone: Callable[[], str | None],
                 progress: Callable[[str], None]) -> float:
    """Poll a plain `host:port` (a Swarm task at its node's port) until it passes every check in turn, until
    `deadline` (a time.monotonic() value); `gone()` says why the process behind it stopped (None: it runs), asked
    after a failed try. Returns the seconds taken."""
    started = time.monotonic()
    next_note = started + 5
    pending = list(checks.checks)
    if checks.wait:
        time.sleep(min(checks.wait, max(0.0, deadline - started)))
    while True:
        last = _advance(address, pending, checks, progress)
        if last is None:
            return time.monotonic() - started
        why = gone()
        if why is not None:
            raise DeployFailed(f"{name} at {address} stopped before answering the health check: {why}")
        now = time.monotonic()
        if now > deadline:
            raise DeployFailed(f"{name} at {address} did not pass {pending[0].describe()} in time (last: {last})")
        if now > next_note:
            progress(f"       still waiting for {name} at {address} ({now - started:.0f}s, last: {last})")
            next_note = now + 5
        time.sleep(0.05 if now - started < 10 else 0.25)


def wait_app_json(
    container_id: str,
    *,
    network: str,
    port: int,
    healthchecks: appjson.Healthchecks,
    timeout: float,
    progress: Callable[[str], None],
) -> tuple[str, float]:
    """app.json's startup checks, as dokku runs them: each after its initialDelay, up to `attempts`
    tries `wait` s apart, each try bounded by its `timeout`; all within the app's healthcheck-timeout."""
    started = time.monotonic()
    deadline = started + timeout
    for name in healthchecks.skipped:
        progress(f"       not run: {name} (a liveness or readiness check; a deploy runs startup checks)")
    address = ""
    for check in healthchecks.run:
        if check.initial_delay:
            time.sleep(min(check.initial_delay, max(0.0, deadline - time.monotonic())))
        for attempt in range(1, check.attempts + 1):
            container = engine.inspect(container_id, network=network)
            if container.status in ("exited", "dead") or container.restarts > 0:
                raise exited(container, f"before passing {check.name}")
            address = f"{container.ip}:{check.port or port}"
            passed, why = _attempt(check, container, address, started)
            if passed:
                progress(f"       passed: {check.name} ({check.describe()})")
                break
            if attempt == check.attempts or time.monotonic() + check.wait > deadline:
                raise DeployFailed(
                    f"{container.name} did not pass {check.name} ({check.describe()}) in {attempt} attempts "
                    f"(last: {why})", detail=log_tail(container_id))
            progress(f"       {check.name}: attempt {attempt} of {check.attempts} failed ({why}); "
                     f"again in {check.wait:g}s")
            time.sleep(check.wait)
    container = engine.inspect(container_id, network=network)
    return f"{container.ip}:{port}", time.monotonic() - started


def wait_app_json_address(address: str, *, name: str, healthchecks: appjson.Healthchecks, deadline: float,
                          gone: Callable[[], str | None], progress: Callable[[str], None]) -> float:
    """app.json's startup checks against a Swarm task at its node's `host:port`, as `wait_app_json` runs them
    against a container; `gone()` says why the task stopped (None: it runs). Only the published web port is
    reachable from here and a command would run on another node: such checks are said and not run."""
    started = time.monotonic()
    for check in healthchecks.run:
        if check.command or check.port:
            progress(f"       not run in a cluster: {check.name} ({check.describe()}; "
                     f"{'a command runs in the container, on its node' if check.command else 'another port'})")
            continue
        if check.initial_delay:
            time.sleep(min(check.initial_delay, max(0.0, deadline - time.monotonic())))
        for attempt in range(1, check.attempts + 1):
            why = gone()
            if why is not None:
                raise DeployFailed(f"{name} at {address} stopped before passing {check.name}: {why}")
            passed, why = _attempt_address(check, address, gone)
            if passed:
                progress(f"       passed: {check.name} ({check.describe()}) at {address}")
                break
            if attempt == check.attempts or time.monotonic() + check.wait > deadline:
                raise DeployFailed(f"{name} at {address} did not pass {check.name} ({check.describe()}) in "
                                   f"{attempt} attempts (last: {why})")
            progress(f"       {check.name} at {address}: attempt {attempt} of {check.attempts} failed ({why}); "
                     f"again in {check.wait:g}s")
            time.sleep(check.wait)
    return time.monotonic() - started


def _attempt_address(check: appjson.Healthcheck, address: str, gone: Callable[[], str | None]) -> tuple[bool, str]:
    if check.uptime:
        time.sleep(check.uptime)
        why = gone()
        return why is None, why or "running"
    return _attempt_http(check, address)


def _attempt(check: appjson.Healthcheck, container: engine.Container, address: str,
             started: float) -> tuple[bool, str]:
    if check.uptime:
        waited = check.uptime - (time.monotonic() - started)
        if waited > 0:
            time.sleep(waited)
        now = engine.inspect(container.id)
        return (now.status == "running" and now.restarts == 0), f"{now.status}, {now.restarts} restarts"
    if check.command:
        code, _ = engine.exec_capture(container.id, list(check.command), timeout=check.timeout)
        return code == 0, f"exit code {code}"
    if not container.ip:
        return False, "no address yet"
    return _attempt_http(check, address)


def _attempt_http(check: appjson.Healthcheck, address: str) -> tuple[bool, str]:
    """One GET of the check's path: a 2xx or 3xx answer holding the check's content (if it names one)."""
    try:
        status, body = probe(address, check.path, timeout=check.timeout)
    except OSError as exc:
        return False, str(exc) or type(exc).__name__
    if not 200 <= status < 400:
        return False, f"HTTP {status}"
    if check.content and check.content not in body:
        return False, f"HTTP {status} without {check.content!r}"
    return True, f"HTTP {status}"


def log_tail(container_id: str, lines: int = LOG_LINES) -> str:
    try:
        data = b"".join(engine.logs(container_id, tail=lines))
    except NotFound:
        return ""
    text = data.decode("utf-8", errors="replace").rstrip()
    return f"last {lines} lines of its log:\n{text}" if text else "its log is empty"
