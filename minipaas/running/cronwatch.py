"""The watcher's cron thread: at each minute boundary, every app's due scheduled jobs start (running/cron.py), each
run in a thread of its own so that a long job delays no other.

Which runs are due is source/cronjobs.py's `due`: the latest scheduled time since the last check (kept in the store,
state/cronruns.py `cron_clock`, so a watcher started again knows what it missed). A run whose minute passed while no
watcher ran is caught up once, at most one per job whatever the downtime, and its record and the watcher's log say
so. An app stopped with `ps:stop` runs no scheduled job, nor does a review app, nor a job with `maintenance: true`.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable

from minipaas.errors import MinipaasError
from minipaas.running import cron
from minipaas.source import cronjobs
from minipaas.state import apps, cronruns, releaselog
from minipaas.state.host import Host
from minipaas.state.names import parent_of
from minipaas.state.releaselog import Release
from minipaas.state.settings import Settings

SETTLE = 0.5  # seconds after the minute boundary: a clock a little behind still sees the new minute


def log(message: str) -> None:
    print(f"watch: cron: {message}", file=sys.stderr, flush=True)


def follow(settings: Settings) -> None:
    """Look for due jobs now (what was missed), then at each minute boundary, until the process ends."""
    while True:
        try:
            tick(settings, time.time())
        except Exception as exc:  # the next minute tries again; the thread never dies
            log(f"{type(exc).__name__}: {exc}")
        time.sleep(60 - time.time() % 60 + SETTLE)


def tick(settings: Settings, now: float, launch: Callable[..., None] | None = None) -> list[tuple[str, str]]:
    """Start every job due at `now`; returns (app, job) of those started. `launch` runs one (default: a thread)."""
    host = Host(settings)
    last = cronruns.last_check(host)
    if last is None or last > now:  # a first watcher (or a clock set back): from now on
        last = now
    cron.reap(host)
    started = []
    for release in releaselog.lives(host):
        # A review app (`APP--branch`) runs its jobs only when asked (`cron:run`): not every branch's nightly report.
        if apps.is_stopped(host, release.app) or parent_of(release.app):
            continue
        try:
            _, jobs = cron.live_jobs(host, release.app)
        except MinipaasError as exc:  # an app.json pushed before scheduled jobs were checked
            log(f"{release.app}: release {release.number}'s jobs cannot be read: {exc.message}")
            continue
        for job in jobs:
            due = cronjobs.due(job, last, now)
            if due is None or job.suspended:
                continue
            note = due.note(job.zone())
            if note:
                log(f"{release.app}/{job.id}: {note}")
            (launch or _in_thread)(settings, release, job, due, note)
            started.append((release.app, job.id))
    cronruns.checked(host, now)
    return started


def _in_thread(settings: Settings, release: Release, job: cronjobs.Job, due: cronjobs.Due, note: str) -> None:
    threading.Thread(target=_run, args=(settings, release, job, due, note), daemon=True,
                     name=f"cron {release.app}/{job.id}").start()


def _run(settings: Settings, release: Release, job: cronjobs.Job, due: cronjobs.Due, note: str) -> None:
    host = Host(settings)  # a connection of this thread's own
    try:
        done = cron.run(host, release.app, release, job, trigger="catch-up" if due.late else "schedule",
                        scheduled_at=due.at, note=note, user=cron.USER)
    except Exception as exc:
        log(f"{release.app}/{job.id}: {getattr(exc, 'message', exc)}")
        return
    took = f" after {done.seconds:.1f}s" if done.seconds is not None else ""
    log(f"{release.app}/{job.id}: {done.status}" + (f" (exit code {done.exit_code})" if done.exit_code is not None
                                                   else "") + took + (f"; {done.note}" if done.note else ""))
