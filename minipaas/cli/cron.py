"""Scheduled jobs (app.json `cron`): cron:list, cron:runs, cron:run."""

from __future__ import annotations

import sys

import click

from minipaas.cli.common import current_host, existing_app, print_json, printable, say, table, when


@click.command("cron:list")
@click.argument("app")
@click.option("--json", "as_json", is_flag=True)
def cron_list(app: str, as_json: bool) -> None:
    """The app's scheduled jobs (its live release's app.json `cron`) and when each runs next."""
    import time

    from minipaas.running import cron
    from minipaas.source import cronjobs

    live, jobs = cron.live_jobs(current_host(), existing_app(app))
    now = time.time()
    rows = [(job, None if job.suspended else cronjobs.next_run(job, now)) for job in jobs]
    if as_json:
        print_json([{**job.as_dict(), "next_run": at} for job, at in rows])
        return
    if not jobs:
        say(f"{app} has no scheduled jobs" + (f" in release {live.number}" if live else " (no live release)"))
        return
    table(([job.id, job.schedule + (f" ({job.tz})" if job.tz else ""), job.policy, _duration(job.max_runtime),
            "suspended" if at is None else when(at), job.command] for job, at in rows),
          ["JOB", "SCHEDULE", "POLICY", "MAX RUNTIME", "NEXT RUN", "COMMAND"])


@click.command("cron:runs")
@click.argument("app")
@click.argument("job", required=False)
@click.option("--json", "as_json", is_flag=True)
@click.option("-n", "--limit", type=click.IntRange(1, 100), default=10, help="runs shown (newest first)")
def cron_runs(app: str, job: str | None, as_json: bool, limit: int) -> None:
    """The newest runs of the app's scheduled jobs (or of one): start, duration, exit code, last lines."""
    from minipaas.state import cronruns

    found = cronruns.newest(current_host(), existing_app(app), job, limit)
    if as_json:
        print_json([r.as_dict() for r in found])
        return
    if not found:
        say(f"{app} has no runs" + (f" of {job}" if job else "") + " yet")
        return
    table(([r.id, r.job, when(r.started_at), "-" if r.seconds is None else f"{r.seconds:.1f}s", r.status,
            "-" if r.exit_code is None else r.exit_code, r.trigger, r.note[:110]] for r in found),
          ["RUN", "JOB", "STARTED", "TOOK", "STATUS", "EXIT", "TRIGGER", "NOTE"])
    for r in found:
        if r.last_lines:
            say(f"=====> run {r.id} ({r.job}), its last lines:")
            for line in r.last_lines.splitlines():
                say(f"       {printable(line)}")


@click.command("cron:run")
@click.argument("app")
@click.argument("job")
def cron_run(app: str, job: str) -> None:
    """Run a scheduled job now (its policy applies), wait for it, and show its last lines; exits with its code."""
    from minipaas.errors import Conflict, MinipaasError
    from minipaas.running import cron

    host = current_host()
    release, found = cron.find(host, existing_app(app), job)

    def started(run: cron.Started) -> None:
        say(f"-----> Running {found.id} of {app} (release {release.number}) in {run.container}: {found.command}")

    done = cron.run(host, app, release, found, trigger="manual", on_start=started)
    if done.status == "skipped":
        raise Conflict(f"{found.id} of {app} did not run: {done.note}")
    for line in done.last_lines.splitlines():
        say(f"       {printable(line)}")
    took = f" after {done.seconds:.1f}s" if done.seconds is not None else ""
    if done.status == "succeeded":
        say(f"=====> {found.id} succeeded{took} (run {done.id})")
        return
    reason = done.note or f"exit code {done.exit_code}"
    error = MinipaasError(f"{found.id} of {app} {done.status}{took} (run {done.id}): {reason}")
    if done.status == "failed" and done.exit_code:
        click.echo(f"error: {error.message}", err=True)
        sys.exit(done.exit_code if 0 < done.exit_code < 256 else 1)
    raise error


def _duration(seconds: int) -> str:
    from minipaas.running import cron

    return cron.duration_text(seconds)


def all_commands() -> list[click.Command]:
    return [cron_list, cron_runs, cron_run]
