"""Scheduled jobs with a real engine: one app (env-echo, built once) pushed with an app.json `cron`, reused by every
test: each run is a fresh container of the live image with the app's config, `forbid` skips, `replace` stops the
run before, maxRuntime stops a run, a failure is an event `cron-failed`, the watcher runs a `* * * * *` job at its
minute, and a push changes the jobs (a bad schedule is refused in one line)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest

from tests.helpers.host import APPS, Paas, commit, docker, free_port, paas_host

pytestmark = pytest.mark.engine

NEVER = "0 0 1 1 *"  # jobs run by cron:run only (and once a year)
JOBS = [
    {"name": "greet", "command": "echo greeting=$GREETING from $(hostname)", "schedule": NEVER},
    {"name": "broken", "command": "echo about to fail; exit 3", "schedule": NEVER},
    # forbid (the default) and a maxRuntime of a few seconds
    {"name": "sleeper", "command": "echo sleeping; sleep 300", "schedule": NEVER, "maxRuntime": "6s"},
    {"name": "swap", "command": "echo swap started; sleep 300", "schedule": NEVER, "concurrency_policy": "replace",
     "maxRuntime": 8},
    {"name": "tick", "command": "echo tick", "schedule": "* * * * *"},
]


def write_jobs(checkout: object, jobs: list[dict[str, object]], message: str) -> None:
    (checkout / "app.json").write_text(json.dumps({"cron": jobs}))  # type: ignore[operator]
    commit(checkout, message)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def cron_app(tmp_path_factory: pytest.TempPathFactory, engine_ready: None) -> Iterator[tuple[Paas, str, object]]:
    with paas_host(tmp_path_factory.mktemp("cron") / "work", MINIPAAS_METRICS_PORT=str(free_port())) as paas:
        app = paas.new_app("cron")
        paas.run("config:set", app, "GREETING=hello-from-config")
        checkout = paas.checkout(app, APPS / "env-echo")
        write_jobs(checkout, JOBS, "jobs")
        paas.push(checkout)
        yield paas, app, checkout


def runs(paas: Paas, app: str, job: str) -> list[dict[str, object]]:
    return json.loads(paas.run("cron:runs", app, job, "--json").stdout)


def wait_for(predicate: Callable[[], object], limit: float, what: str, detail: Callable[[], str] = str) -> None:
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {limit:g}s: {what}\n{detail()}")
        time.sleep(0.3)


def background(paas: Paas, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "minipaas", *args], env=paas.env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def cron_events(paas: Paas, app: str) -> list[dict[str, object]]:
    return [e for e in json.loads(paas.run("events", app, "--json").stdout)
            if str(e["command"]).startswith("cron-failed ")]


def test_a_job_runs_in_a_fresh_container_with_the_config_and_its_run_is_kept(cron_app: tuple) -> None:
    paas, app, _ = cron_app
    listed = paas.run("cron:list", app).stdout
    assert "greet" in listed and "0 0 1 1 *" in listed and "forbid" in listed and "replace" in listed
    web = {line.split()[0] for line in docker("ps", "-q", "--no-trunc", "--filter", f"label=minipaas.app={app}")
           .splitlines() if line}
    done = paas.run("cron:run", app, "greet")
    assert "greeting=hello-from-config" in done.stdout and "greet succeeded" in done.stdout
    (run,) = runs(paas, app, "greet")
    assert run["status"] == "succeeded" and run["exit_code"] == 0 and run["trigger"] == "manual"
    hostname = str(run["last_lines"]).split(" from ")[1]
    assert not any(container.startswith(hostname) for container in web)  # not one of the web containers
    assert hostname not in docker("ps", "-a", "-q")  # removed after
    assert "greeting=hello-from-config" in paas.run("cron:runs", app).stdout


def test_a_failing_job_exits_with_its_code_and_is_an_event(cron_app: tuple) -> None:
    paas, app, _ = cron_app
    failed = paas.run("cron:run", app, "broken", check=False)
    assert failed.returncode == 3 and "broken of" in failed.stderr and "exit code 3" in failed.stderr
    assert "about to fail" in failed.stdout
    (event,) = [e for e in cron_events(paas, app) if e["command"] == f"cron-failed {app} broken"]
    assert event["outcome"] == "exit code 3"
    bad = paas.run("cron:run", app, "nosuch", check=False)
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "no scheduled job 'nosuch'" in bad.stderr


def test_forbid_skips_a_second_run_and_max_runtime_stops_the_first(cron_app: tuple) -> None:
    paas, app, _ = cron_app
    first = background(paas, "cron:run", app, "sleeper")
    try:
        wait_for(lambda: any(r["status"] == "running" for r in runs(paas, app, "sleeper")), 30, "sleeper runs")
        second = paas.run("cron:run", app, "sleeper", check=False)
        assert second.returncode == 1 and "did not run: skipped: the previous run still runs" in second.stderr
        out, err = first.communicate(timeout=60)
    finally:
        first.kill()
    assert first.returncode == 1 and "sleeper of" in err and "timed-out" in err and "maxRuntime of 6s" in err
    assert "sleeping" in out
    skipped, timed_out = runs(paas, app, "sleeper")[:2]  # newest first: the skipped one began last
    assert timed_out["status"] == "timed-out" and skipped["status"] == "skipped"
    assert any(e["command"] == f"cron-failed {app} sleeper" and "maxRuntime" in str(e["outcome"])
               for e in cron_events(paas, app))
    assert not docker("ps", "-a", "-q", "--filter", f"name={app}.cron.sleeper")  # stopped and removed


def test_replace_stops_the_running_run_and_starts_the_new_one(cron_app: tuple) -> None:
    paas, app, _ = cron_app
    first = background(paas, "cron:run", app, "swap")
    try:
        wait_for(lambda: any(r["status"] == "running" for r in runs(paas, app, "swap")), 30, "swap runs")
        second = background(paas, "cron:run", app, "swap")
        _, err = first.communicate(timeout=30)
        assert first.returncode == 1 and "replaced" in err
        out, err = second.communicate(timeout=60)  # then ends at its own maxRuntime
    finally:
        first.kill()
        second.kill()
    assert "swap started" in out and "timed-out" in err
    newest, replaced = runs(paas, app, "swap")[:2]
    assert (newest["status"], replaced["status"]) == ("timed-out", "replaced")
    assert "replaced by a newer run" in str(replaced["note"])


def test_a_run_whose_runner_was_killed_is_stopped_by_the_watcher_after_its_max_runtime(cron_app: tuple) -> None:
    from minipaas.running import cron
    from minipaas.state.host import Host
    from minipaas.state.settings import load

    paas, app, _ = cron_app
    runner = background(paas, "cron:run", app, "sleeper")

    def started() -> bool:  # recorded, and its container made (the record comes first)
        newest = runs(paas, app, "sleeper")[0]
        return newest["status"] == "running" and bool(docker("ps", "-q", "--filter", f"name={newest['container']}"))

    try:
        wait_for(started, 30, "sleeper runs in its container")
    finally:
        runner.kill()  # SIGKILL: as a watcher killed while its thread waited
        runner.wait()
    orphan = runs(paas, app, "sleeper")[0]
    assert orphan["status"] == "running" and docker("ps", "-q", "--filter", f"name={orphan['container']}")
    host = Host(load(paas.env))
    cron.reap(host, now=float(orphan["started_at"]) + 5)  # within its maxRuntime: left alone
    assert runs(paas, app, "sleeper")[0]["status"] == "running"
    cron.reap(host, now=float(orphan["started_at"]) + 600)  # the watcher's minute, long after: stopped
    reaped = runs(paas, app, "sleeper")[0]
    assert reaped["status"] == "timed-out" and "its runner was gone" in str(reaped["note"])
    assert not docker("ps", "-a", "-q", "--filter", f"name={orphan['container']}")
    assert any("its runner was gone" in str(e["outcome"]) for e in cron_events(paas, app))


def test_the_watcher_runs_a_minutely_job_at_its_minute(cron_app: tuple) -> None:
    paas, app, _ = cron_app

    def ran() -> bool:
        return any(r["trigger"] == "schedule" and r["status"] == "succeeded" and "tick" in str(r["last_lines"])
                   for r in runs(paas, app, "tick"))

    log = paas.home / "logs" / "watch.log"
    wait_for(ran, 75, "the watcher ran `tick` at its minute",
             lambda: f"{runs(paas, app, 'tick')}\n{log.read_text() if log.exists() else 'no watch.log'}")
    started = next(r for r in runs(paas, app, "tick") if r["trigger"] == "schedule")
    assert started["scheduled_at"] is not None and float(started["scheduled_at"]) % 60 == 0
    assert float(started["started_at"]) - float(started["scheduled_at"]) < 30


def test_a_push_replaces_the_jobs_and_a_bad_schedule_is_refused(cron_app: tuple) -> None:
    paas, app, checkout = cron_app
    write_jobs(checkout, [*JOBS, {"command": "true", "schedule": "61 * * * *"}], "a bad schedule")
    refused = paas.push(checkout, expect_ok=False)
    assert "app.json cron[5]: schedule '61 * * * *' is not five cron fields" in refused.stderr
    assert "tick" in paas.run("cron:list", app).stdout  # nothing changed
    write_jobs(checkout, [j for j in JOBS if j["name"] != "tick"], "no more tick")
    paas.push(checkout)
    assert "tick" not in paas.run("cron:list", app).stdout and "greet" in paas.run("cron:list", app).stdout
    gone = paas.run("cron:run", app, "tick", check=False)
    assert gone.returncode == 1 and "no scheduled job 'tick'" in gone.stderr
