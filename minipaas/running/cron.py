"""Running an app's scheduled jobs (app.json `cron`, parsed by source/cronjobs.py): each run is a one-off container
of the LIVE release's image with the app's config, network and limits (running/oneoff.py's `spec`, as `run`
makes them), started detached, waited for up to the job's maxRuntime, then removed; its exit code, times and last
lines go to the store (state/cronruns.py). Never an `exec` into a web container: a job runs whether or not the app
serves, and cannot hurt the container that does.

The jobs are read from the live release's commit (its app.json, cached by sha): a deploy or a rollback changes
them with nothing else to update. A job that fails, or outlives its maxRuntime, is an event `cron-failed` in the
events log (access/events.py), which notifications match on.

Concurrency, per job: `forbid` (minipaas' default) records a run that would start while another runs as skipped;
`replace` stops the running one (recorded as replaced) and starts the new one; `allow` runs both. The check and the
new run's record are one statement (state/cronruns.py `begin`): two starters at once cannot both pass `forbid`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from minipaas.access import events
from minipaas.adapters import engine, gitrepo
from minipaas.errors import InvalidInput, MinipaasError, NotFound
from minipaas.running import oneoff
from minipaas.source import cronjobs
from minipaas.source.cronjobs import Job
from minipaas.state import cronruns, releaselog
from minipaas.state.host import Host
from minipaas.state.releaselog import Release, Serving

USER = "minipaas-cron"  # who the events log says did it, for runs the watcher starts
EVENT = "cron-failed"
LAST_LINES = 20
STOP_GRACE = 10  # seconds between SIGTERM and SIGKILL when a run is stopped (timeout, replace)
STARTING_GRACE = 60  # a run recorded this recently may not have its container yet

_parsed: dict[tuple[str, str], tuple[Job, ...]] = {}  # (repo, sha) -> its jobs: a commit never changes


def jobs_at(host: Host, app: str, sha: str) -> tuple[Job, ...]:
    """The jobs of the app's commit `sha` (its app.json's `cron`)."""
    key = (str(host.settings.repo_path(app)), sha)
    if key not in _parsed:
        _parsed[key] = cronjobs.parse(gitrepo.read_file(host.settings.repo_path(app), sha, "app.json"))
    return _parsed[key]


def live_jobs(host: Host, app: str) -> tuple[Release | None, tuple[Job, ...]]:
    """The live release and its jobs (none for an app without a release, or a static site: it has no image)."""
    live = releaselog.live(host, app)
    if live is None or live.serving == Serving.STATIC or not live.image:
        return live, ()
    return live, jobs_at(host, app, live.sha)


def find(host: Host, app: str, job_id: str) -> tuple[Release, Job]:
    live, jobs = live_jobs(host, app)
    if live is None:
        raise NotFound(f"{app} has no live release; push it first")
    for job in jobs:
        if job.id == job_id:
            return live, job
    known = ", ".join(job.id for job in jobs) or "none"
    raise NotFound(f"{app} has no scheduled job {job_id[:40]!r} in release {live.number} (its jobs: {known})")


@dataclass(frozen=True)
class Started:
    """A run being made: its record and container, before it ends."""
    run: int
    container: str
    deadline: float


def run(host: Host, app: str, release: Release, job: Job, *, trigger: str, scheduled_at: float | None = None,
        note: str = "", user: str = "", on_start: Callable[[Started], None] | None = None) -> cronruns.Run:
    """One run of the job, to its end (or its policy's skip); returns its record."""
    started = start(host, app, release, job, trigger=trigger, scheduled_at=scheduled_at, note=note, user=user)
    if isinstance(started, cronruns.Run):
        return started
    if on_start is not None:
        on_start(started)
    return finish(host, app, job, started, user=user)


def start(host: Host, app: str, release: Release, job: Job, *, trigger: str, scheduled_at: float | None,
          note: str, user: str = "") -> Started | cronruns.Run:
    """The run's container started (Started), or the record of a run its policy skipped."""
    if not release.image or release.serving == Serving.STATIC:
        raise InvalidInput(f"{app} is a static site: it has no image to run a job in")
    others = active(host, app, job.id)
    if others and job.policy == "forbid":
        return _skip(host, app, release, job, trigger, scheduled_at, others[0])
    if others and job.policy == "replace":
        for other in others:
            stop(host, other.id, other.container, status="replaced", note=f"replaced by a newer run ({trigger})")
    spec = oneoff.spec(host, app, release.image, "cron", f"{job.id}.{uuid.uuid4().hex[:8]}")
    number = cronruns.begin(host, app, job.id, release=release.number, trigger=trigger, container=spec["name"],
                            scheduled_at=scheduled_at, note=note, alone=job.policy != "allow")
    if number is None:  # another starter got there between our look and our record
        return _skip(host, app, release, job, trigger, scheduled_at, (active(host, app, job.id) or [None])[0])
    began = time.time()
    try:
        engine.run(**spec, command=job.argv(), restart="")
    except MinipaasError as exc:
        cronruns.finish(host, number, status="failed", exit_code=None, last_lines="",
                        note=f"did not start: {exc.message}")
        _failed(host, app, job, f"did not start: {exc.message}", user)
        oneoff.release_network(host, app)
        found = cronruns.get(host, number)
        assert found is not None
        return found
    found = cronruns.get(host, number)
    if found is not None and found.status != cronruns.RUNNING:  # a `replace` ended it before its container was made
        engine.remove(spec["name"], timeout=0)
        oneoff.release_network(host, app)
        return found
    return Started(number, spec["name"], began + job.max_runtime)


def finish(host: Host, app: str, job: Job, started: Started, *, user: str = "") -> cronruns.Run:
    """Wait for the run's container to end (or its maxRuntime to pass: then it is stopped), record it, remove it."""
    try:
        code = _wait(started.container, started.deadline)
    except BaseException:  # `cron:run` interrupted (^C, its ssh session gone): the run goes with it
        stop(host, started.run, started.container, status="failed", note="interrupted while it ran")
        raise
    status, note = "succeeded", ""
    if code is None:
        engine.stop(started.container, timeout=STOP_GRACE)
        code = _wait(started.container, time.time() + STOP_GRACE + 5)
        status, note = "timed-out", f"stopped after its maxRuntime of {duration_text(job.max_runtime)}"
    elif code != 0:
        status = "failed"
    lines = last_lines(started.container)
    engine.remove(started.container, timeout=0)
    recorded = cronruns.finish(host, started.run, status=status, exit_code=code, last_lines=lines, note=note)
    if recorded and status != "succeeded":  # not when a `replace` took it over: that run's record says so
        _failed(host, app, job, note or f"exit code {code}", user)
    oneoff.release_network(host, app)
    found = cronruns.get(host, started.run)
    assert found is not None
    return found


def _wait(container: str, deadline: float) -> int | None:
    """The container's exit code, or None when it still runs at `deadline`."""
    while (left := deadline - time.time()) > 0:
        asked = time.monotonic()
        try:
            code = engine.wait(container, timeout=left)
        except NotFound:
            return -1  # removed under us (a `replace`, or by hand): what it said is recorded by who removed it
        except MinipaasError:
            code = None
        if code is not None:
            return code
        if time.monotonic() - asked < 1:
            time.sleep(1)  # the engine did not answer at all (it restarts): ask again
    return None


def active(host: Host, app: str, job: str) -> list[cronruns.Run]:
    """The job's runs whose container still runs. A run recorded as running whose container ended or went while
    nobody waited for it (its runner was killed) is settled here, with what its container said."""
    found = []
    for other in cronruns.running(host, app, job):
        try:
            state = engine.inspect(other.container).status
        except NotFound:
            if time.time() - other.started_at < STARTING_GRACE:
                found.append(other)  # recorded, its container not made yet
            else:
                cronruns.finish(host, other.id, status="failed", exit_code=None, last_lines="",
                                note="its container went while no runner waited for it")
            continue
        if state in ("running", "created", "restarting"):
            found.append(other)
        else:
            settle(host, other)
    return found


def settle(host: Host, other: cronruns.Run) -> None:
    """A run whose container ended with no runner waiting (the watcher or command that started it was killed)."""
    try:
        code = engine.inspect(other.container).exit_code
    except NotFound:
        code = None
    lines = last_lines(other.container)
    engine.remove(other.container, timeout=0)
    cronruns.finish(host, other.id, status="succeeded" if code == 0 else "failed", exit_code=code,
                    last_lines=lines, note="ended while no runner waited for it")


def reap(host: Host, now: float | None = None) -> None:
    """Settle every run whose runner is gone (the watcher's each minute): one whose container ended is recorded with
    what it said; one still running past its maxRuntime (its runner, a killed watcher's thread, cannot stop it any
    more) is stopped and recorded as timed out. `now`: the clock (a test's advanced one)."""
    now = time.time() if now is None else now
    for other in cronruns.running(host):
        if now - other.started_at < STARTING_GRACE:
            continue
        for still in active(host, other.app, other.job):
            if still.id != other.id:
                continue
            limit = _max_runtime(host, other.app, other.job)
            if now > other.started_at + limit + STOP_GRACE + STARTING_GRACE:  # well past its own runner's deadline
                note = f"stopped by the watcher after its maxRuntime of {duration_text(limit)} (its runner was gone)"
                stop(host, other.id, other.container, status="timed-out", note=note)
                events.record(host, app=other.app, command=f"{EVENT} {other.app} {other.job}", outcome=note,
                              user=USER)


def _max_runtime(host: Host, app: str, job: str) -> int:
    """The job's maxRuntime in the live release (the default when it is no longer there)."""
    try:
        return next((j.max_runtime for j in live_jobs(host, app)[1] if j.id == job), cronjobs.DEFAULT_MAX_RUNTIME)
    except MinipaasError:
        return cronjobs.DEFAULT_MAX_RUNTIME


def stop(host: Host, run: int, container: str, *, status: str, note: str) -> None:
    """Stop a running run. Recorded first: its runner, if any, sees its container end and finds the record
    finished already, which it leaves as this says."""
    cronruns.finish(host, run, status=status, exit_code=None, last_lines=last_lines(container), note=note)
    engine.remove(container, timeout=STOP_GRACE)


def last_lines(container: str) -> str:
    try:
        raw = b"".join(engine.logs(container, tail=LAST_LINES))
    except MinipaasError:
        return ""
    return raw.decode("utf-8", errors="replace").rstrip("\n")


def _skip(host: Host, app: str, release: Release, job: Job, trigger: str, scheduled_at: float | None,
          other: cronruns.Run | None) -> cronruns.Run:
    since = f" (started {datetime.fromtimestamp(other.started_at):%H:%M:%S})" if other else ""
    note = f"skipped: the previous run still runs{since}; concurrency_policy forbid"
    found = cronruns.get(host, cronruns.skipped(host, app, job.id, release=release.number, trigger=trigger,
                                                scheduled_at=scheduled_at, note=note))
    assert found is not None
    return found


def _failed(host: Host, app: str, job: Job, outcome: str, user: str) -> None:
    events.record(host, app=app, command=f"{EVENT} {app} {job.id}", outcome=outcome, user=user)


def duration_text(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return "".join(f"{n}{unit}" for n, unit in ((hours, "h"), (minutes, "m"), (secs, "s")) if n) or "0s"
