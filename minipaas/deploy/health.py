"""Health checks: a new web process must stay up and answer before it gets traffic.

What it must pass is one `Plan`, made in one place (deploy/containers.py `health_plan`) from the commit as read
once (source/commit.py) and the app's settings: app.json's startup checks (source/appjson.py) when it names any,
else a CHECKS file's (source/checksfile.py), else any status below 500 at the app's `healthcheck-path`. `run` runs
a plan against a target: a container on this host (`Container`), or a Swarm task at its node's address and port
(`Task`, deploy/taskcheck.py); the two differ only in how they are reached, how they are found gone, and how their
failures read.
"""

from __future__ import annotations

import http.client
import time
from collections.abc import Callable
from dataclasses import dataclass

from minipaas import faultpoints
from minipaas.adapters import engine
from minipaas.errors import DeployFailed, NotFound
from minipaas.source import appjson
from minipaas.source.checksfile import MAX_SECONDS, Check, Checks, default_checks, parse_checks
from minipaas.source.commit import Commit

__all__ = ["MAX_SECONDS", "Check", "Checks", "Container", "Plan", "Task", "default_checks", "parse_checks", "plan",
           "run"]

WEB_PORT = 5000  # $PORT of every web container, unless its image EXPOSEs a port (as dokku does)
LOG_LINES = 50
MAX_BODY = 1024 * 1024


@dataclass(frozen=True)
class Plan:
    """What a new web process must pass, within `timeout` seconds: app.json's startup checks (`app_json`, when it
    names any), else `checks` (a CHECKS file's, or the app's healthcheck-path)."""

    timeout: int
    checks: Checks
    app_json: appjson.Healthchecks | None = None

    def goal(self, *, each: bool = False) -> str:
        """What it waits for, as the push says it (`each`: for each of a batch, in the third person)."""
        if self.app_json is not None:
            names = ", ".join(f"{c.name} ({c.describe()})" for c in self.app_json.run)
            return f"{'passes' if each else 'pass'} app.json's {names}"
        return f"{'answers' if each else 'answer'} {' and '.join(c.describe() for c in self.checks.checks)}"


def plan(commit: Commit, *, path: str, timeout: int, app_json: bool = True) -> Plan:
    """The plan of a release of `commit`: app.json's startup checks first (`app_json` False: not those), then its
    CHECKS file, then `path` (the app's healthcheck-path). Each file is parsed here, at its first use."""
    from_app_json = commit.app_json_checks if app_json else None
    if from_app_json is not None and from_app_json.run:
        return Plan(timeout, default_checks(path), from_app_json)
    return Plan(timeout, commit.checks_file or default_checks(path))


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


@dataclass
class Container:
    """A container on this host, reached on its network at its address and `port`."""

    id: str
    name: str
    network: str
    port: int
    now: engine.Container | None = None  # as last inspected
    poll: float = 0.02  # a healthy app boots meanwhile: the push waits on this
    says_all: bool = True  # one target: its check says what it skips and waits for
    probe_first: bool = False  # its state first: the inspection gives the address to probe

    @property
    def who(self) -> str:
        return self.name

    @property
    def at(self) -> str:
        return ""

    def check_alive(self, when: str) -> None:
        self.now = engine.inspect(self.id, network=self.network)
        if self.now.status in ("exited", "dead") or self.now.restarts > 0:
            raise exited(self.now, when)

    def address(self, port: int | None = None) -> str | None:
        ip = self.now.ip if self.now is not None else ""
        return f"{ip}:{port or self.port}" if ip else None

    def late(self, what: str, last: str, timeout: float) -> DeployFailed:
        return DeployFailed(f"{self.name} did not pass {what} within {timeout:.0f}s (last: {last}; the app must "
                            f"listen on $PORT, {self.port} here)", detail=log_tail(self.id))

    def failed(self, text: str) -> DeployFailed:
        return DeployFailed(f"{self.name} {text}", detail=log_tail(self.id))

    def not_run(self, check: appjson.Healthcheck) -> str | None:
        return None  # every kind of check runs against a container

    def stays_up(self, check: appjson.Healthcheck, started: float) -> tuple[bool, str]:
        waited = check.uptime - (time.monotonic() - started)
        if waited > 0:
            time.sleep(waited)
        now = engine.inspect(self.id)
        return (now.status == "running" and now.restarts == 0), f"{now.status}, {now.restarts} restarts"

    def command(self, check: appjson.Healthcheck) -> tuple[bool, str]:
        code, _ = engine.exec_capture(self.id, list(check.command), timeout=check.timeout)
        return code == 0, f"exit code {code}"


@dataclass
class Task:
    """A Swarm task at its node's `address` (host:port), checked from the manager; `gone()` says why the process
    behind it stopped (None: it runs). Only the published web port is reachable from here and a command would
    run on another node: such app.json checks are said and not run."""

    name: str
    fixed: str
    gone: Callable[[], str | None]
    poll: float = 0.05
    says_all: bool = False  # one of a batch, announced once (taskcheck.py)
    # Asked why it stopped only after a probe failed: while a manager's Swarm recovers (its engine restarted) it may
    # list a task as not running whose container answers on its node; that task must not leave the route.
    probe_first: bool = True

    @property
    def who(self) -> str:
        return f"{self.name} at {self.fixed}"

    @property
    def at(self) -> str:
        return f" at {self.fixed}"

    def check_alive(self, when: str) -> None:
        why = self.gone()
        if why is not None:
            raise DeployFailed(f"{self.who} stopped {when}: {why}")

    def address(self, port: int | None = None) -> str | None:
        return self.fixed

    def late(self, what: str, last: str, timeout: float) -> DeployFailed:
        return DeployFailed(f"{self.who} did not pass {what} in time (last: {last})")

    def failed(self, text: str) -> DeployFailed:
        return DeployFailed(f"{self.who} {text}")

    def not_run(self, check: appjson.Healthcheck) -> str | None:
        if check.command or check.port:
            return (f"not run in a cluster: {check.name} ({check.describe()}; "
                    f"{'a command runs in the container, on its node' if check.command else 'another port'})")
        return None

    def stays_up(self, check: appjson.Healthcheck, started: float) -> tuple[bool, str]:
        time.sleep(check.uptime)
        why = self.gone()
        return why is None, why or "running"

    def command(self, check: appjson.Healthcheck) -> tuple[bool, str]:
        raise AssertionError("not_run said so")  # pragma: no cover


Target = Container | Task


def run(plan: Plan, target: Target, *, progress: Callable[[str], None], deadline: float | None = None) -> float:
    """Run `plan` against `target` until it passes, by `deadline` (a time.monotonic() value; default: the plan's
    timeout from now); returns the seconds taken. DeployFailed, in the target's words, when it does not."""
    started = time.monotonic()
    deadline = started + plan.timeout if deadline is None else deadline
    if plan.app_json is not None:
        _run_app_json(plan.app_json, target, started, deadline, progress)
    else:
        _run_checks(plan.checks, target, started, deadline, float(plan.timeout), progress)
    return time.monotonic() - started


def _run_checks(checks: Checks, target: Target, started: float, deadline: float, timeout: float,
                progress: Callable[[str], None]) -> None:
    """Poll until the target passes every check in turn."""
    next_note = started + 5
    last = "no answer yet"
    pending = list(checks.checks)
    if checks.wait:
        if target.says_all:
            progress(f"       waiting {checks.wait:.0f}s before the first check (CHECKS: WAIT)")
        time.sleep(min(checks.wait, max(0.0, deadline - started)))
    while True:
        if not target.probe_first:
            target.check_alive("before answering the health check")
        address = target.address()
        if address:
            last = _advance(address, pending, checks, progress) or last
        if not pending:
            return
        if target.probe_first:
            target.check_alive("before answering the health check")
        faultpoints.reached("health")
        now = time.monotonic()
        if now > deadline:
            raise target.late(pending[0].describe(), last, timeout)
        if now > next_note:
            progress(f"       still waiting for {target.who} ({now - started:.0f}s, last: {last})")
            next_note = now + 5
        time.sleep(target.poll if now - started < 10 else 0.25)


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


def _run_app_json(healthchecks: appjson.Healthchecks, target: Target, started: float, deadline: float,
                  progress: Callable[[str], None]) -> None:
    """app.json's startup checks, as dokku runs them: each after its initialDelay, up to `attempts` tries `wait` s
    apart, each try bounded by its `timeout`; all by `deadline`."""
    if target.says_all:
        for name in healthchecks.skipped:
            progress(f"       not run: {name} (a liveness or readiness check; a deploy runs startup checks)")
    for check in healthchecks.run:
        if (why_not := target.not_run(check)) is not None:
            progress(f"       {why_not}")
            continue
        if check.initial_delay:
            time.sleep(min(check.initial_delay, max(0.0, deadline - time.monotonic())))
        for attempt in range(1, check.attempts + 1):
            if not target.probe_first:
                target.check_alive(f"before passing {check.name}")
            passed, why = _attempt(check, target, started)
            if not passed and target.probe_first:
                target.check_alive(f"before passing {check.name}")
            if passed:
                progress(f"       passed: {check.name} ({check.describe()}){target.at}")
                break
            if attempt == check.attempts or time.monotonic() + check.wait > deadline:
                raise target.failed(f"did not pass {check.name} ({check.describe()}) in {attempt} attempts "
                                    f"(last: {why})")
            progress(f"       {check.name}{target.at}: attempt {attempt} of {check.attempts} failed ({why}); "
                     f"again in {check.wait:g}s")
            time.sleep(check.wait)


def _attempt(check: appjson.Healthcheck, target: Target, started: float) -> tuple[bool, str]:
    if check.uptime:
        return target.stays_up(check, started)
    if check.command:
        return target.command(check)
    address = target.address(check.port)
    if address is None:
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
