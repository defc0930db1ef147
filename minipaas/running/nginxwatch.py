"""nginx kept running: the watcher's thread that starts the instance's own nginx again when its master dies.

In private mode (MINIPAAS_NGINX=private) nginx's master is minipaas' own. Killed (SIGKILL, the OOM killer) or
crashed, it leaves its workers serving as they were, orphaned: nothing reloads them (a new vhost or certificate is
not served), nothing replaces one that dies, and until the next deploy started a master the host had none. `follow`
waits on the master (a pidfd: woken the moment it ends, nothing polled) and, when it ended without stopping (its
pid file stays: nginx removes it whenever it stops), starts it again with `proxy.ensure_running`, what every deploy
runs first: under nginx's lock, so it never races a deploy's start or reload (whichever comes second finds it
running); the new master reads every app's route from nginx/routes and takes over the orphans' listening
sockets before they go (adapters/nginxorphans.py), so no connection is refused. A master stopped on purpose
(`nginx -s quit`, SIGTERM, the tests' teardown) is left stopped: the next deploy or `ps:restore` starts it. A
start that fails, or a master that dies again within STABLE_SECONDS of its start, is one line in the watcher's
log, and the next try waits 1, 2, 4 ... 60 s. Each start and each first failure is also an event of the audit
log (`events`).

In system mode nginx is the host's service: its service manager (systemd) starts and restarts it, and a second
starter beside it would fight it (a master outside its unit, which the unit's own start then cannot bind beside).
The watcher says so in its log once at its start, and again when the host's master ends without stopping.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

from minipaas.access import events
from minipaas.adapters import nginx, proc
from minipaas.errors import MinipaasError, ProxyError
from minipaas.routing import proxy
from minipaas.state.host import Host
from minipaas.state.settings import Settings

WAIT_SECONDS = 30.0  # a running master is looked up again after this long even if it did not end
IDLE_SECONDS = 1.0  # no master runs: how often to look whether one was started, or what died
FIRST_RETRY = 1.0
LAST_RETRY = 60.0
STABLE_SECONDS = 10.0  # a master that lived this long after a start was a start that held
USER = "minipaas watch"  # the events' user of what the watcher did itself
SYSTEM_LINE = ("nginx is the host's (MINIPAAS_NGINX=system): its service manager keeps it running, not the watcher "
               "(with systemd, Restart=on-failure in nginx.service restarts a killed master; without, the next "
               "deploy or ps:restore starts it)")


def _say(line: str) -> None:
    print(f"watch: {line}", file=sys.stderr, flush=True)


def _record(settings: Settings, command: str, outcome: str) -> None:
    try:
        events.record(Host(settings), app="", command=command, outcome=outcome, user=USER)
    except MinipaasError as exc:  # the database locked or full: the log's line is there
        _say(f"could not write the event ({exc.message})")


def follow(settings: Settings) -> None:
    """Keep the instance's nginx running until the process ends (the watcher's thread)."""
    loop: _Keeper | _HostNginx = _Keeper(settings)
    if settings.nginx != "private":
        _say(SYSTEM_LINE)
        loop = _HostNginx(settings)
    while True:
        try:
            loop.round()
        except Exception as exc:  # the thread must outlive any one round
            _say(f"keeping nginx: {type(exc).__name__}: {exc}; again in 1 s")
            time.sleep(1)


@dataclass
class _Keeper:
    """Private mode: one round waits on the master, or starts it again, or waits out a retry's delay."""

    settings: Settings
    watched: int | None = None  # the master waited on in the last round
    started: float | None = None  # when the last start by this watcher came up (time.monotonic)
    failures: int = 0  # starts in a row that failed or did not hold
    not_before: float = 0.0  # the next start waits until then (time.monotonic)

    def round(self) -> None:
        pid = proxy.front_master(self.settings)
        if pid is not None:
            self.watched = pid
            if not proc.wait_exit(pid, WAIT_SECONDS) and self._held():
                self.failures, self.started = 0, None
            return
        died = proxy.front_died(self.settings)
        if died is None:
            if self.watched is not None:
                _say(f"nginx's master (pid {self.watched}) stopped (its pid file is gone): left stopped, "
                     "the next deploy or ps:restore starts it")
            self.watched = self.started = None
            time.sleep(IDLE_SECONDS)  # stopped on purpose, or a start is writing its pid file
            return
        self.watched = None
        if self.started is not None:
            lived = time.monotonic() - self.started
            self.started = None
            if lived < STABLE_SECONDS:
                self._back_off(died, f"ended {lived:.1f} s after its start")
                return
            self.failures = 0
        wait = self.not_before - time.monotonic()
        if wait > 0:
            time.sleep(min(wait, IDLE_SECONDS))  # a deploy may start it meanwhile: looked at again each second
            return
        self._start_again(died)

    def _held(self) -> bool:
        return self.started is not None and time.monotonic() - self.started >= STABLE_SECONDS

    def _start_again(self, died: int) -> None:
        began = time.monotonic()
        try:
            proxy.ensure_running(self.settings)  # under nginx's lock: a deploy's start first, and this one is none
            pid = proxy.front_master(self.settings)
            if pid is None:
                raise ProxyError("nginx started, and its master ended at once (see its error log)")
        except MinipaasError as exc:
            self._back_off(died, f"did not start again: {exc.message}")
            return
        self.started = time.monotonic()
        took = self.started - began
        _say(f"nginx's master (pid {died}) ended without stopping (killed or crashed: its pid file stays); "
             f"running again in {took:.2f} s (pid {pid}), with every route of nginx/routes")
        _record(self.settings, "watch: nginx started again",
                f"ok: pid {died} ended without stopping; pid {pid} runs, {took:.2f} s")

    def _back_off(self, died: int, what: str) -> None:
        self.failures += 1
        delay = min(FIRST_RETRY * 2 ** (self.failures - 1), LAST_RETRY)
        self.not_before = time.monotonic() + delay
        _say(f"nginx's master (pid {died}) {what}; again in {delay:.0f} s")
        if self.failures == 1:  # one event per outage; the log has every try
            _record(self.settings, "watch: nginx started again", f"failed: {what}; tried again until it runs")


@dataclass
class _HostNginx:
    """System mode: the host's master watched, its end without a stop said in the log; never started here."""

    settings: Settings
    watched: int | None = None

    def round(self) -> None:
        pid = nginx.system_master()
        if pid is not None:
            self.watched = pid
            proc.wait_exit(pid, WAIT_SECONDS)
            return
        if self.watched is not None and nginx.system_died_pid() == self.watched:
            _say(f"the host's nginx (pid {self.watched}) ended without stopping: not restarted by the watcher "
                 "(the host's service; systemctl restart nginx)")
            _record(self.settings, "watch: the host's nginx ended", "left to the host's service manager")
        self.watched = None
        time.sleep(IDLE_SECONDS)
