"""Scheduled jobs without an engine: app.json `cron` parsing and its one-line refusals, which runs are due given the
last check and now (the one catch-up rule, time zones), the run records' policy gate and the watcher's clock
(SQLite only)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from minipaas.errors import InvalidInput
from minipaas.running import cronwatch
from minipaas.source import cronjobs
from minipaas.source.cronjobs import Job
from minipaas.state import cronruns, releaselog, store
from minipaas.state.host import Host
from tests.helpers.stores import store_host


def jobs(*entries: dict[str, object]) -> tuple[Job, ...]:
    return cronjobs.parse(json.dumps({"cron": list(entries)}).encode())


def utc(*parts: float) -> float:
    """Unix time of a UTC date; a fractional last part is seconds past the minute."""
    *whole, seconds = parts
    return datetime(*(int(p) for p in whole), tzinfo=UTC).timestamp() + seconds  # type: ignore[misc]


def test_dokkus_keys_are_read_with_forbid_and_one_hour_as_defaults() -> None:
    report, nightly = jobs({"command": "node jobs/report.js", "schedule": "@daily"},
                           {"command": "./backup", "schedule": "30  2 * * 1-5", "concurrency_policy": "replace",
                            "maxRuntime": "1h30m", "TZ": "Europe/Paris", "name": "backup", "maintenance": True})
    assert report == Job(id="node-jobs-report-js", command="node jobs/report.js", schedule="@daily",
                         policy="forbid", max_runtime=3600)
    assert report.fields == "0 0 * * *" and report.argv() == ["/bin/sh", "-c", "node jobs/report.js"]
    assert (nightly.id, nightly.schedule, nightly.policy, nightly.max_runtime, nightly.tz, nightly.suspended) == \
        ("backup", "30 2 * * 1-5", "replace", 5400, "Europe/Paris", True)
    assert cronjobs.parse(b'{"healthchecks": {}}') == () and cronjobs.parse(None) == ()
    assert jobs({"command": "x", "schedule": "@hourly", "maxRuntime": 90})[0].max_runtime == 90


@pytest.mark.parametrize(("entry", "says"), [
    ({"command": "x", "schedule": "61 * * * *"}, "schedule '61 * * * *' is not five cron fields"),
    ({"command": "x", "schedule": "* * * *"}, "is not five cron fields"),
    ({"command": "x", "schedule": "0 * * * * *"}, "is not five cron fields"),  # croniter's seconds: not dokku's
    ({"command": "x", "schedule": "@often"}, "'@often' is not five cron fields"),
    ({"command": "x", "schedule": 5}, "schedule must be a string"),
    ({"command": "", "schedule": "@daily"}, "command must be a non-empty string"),
    ({"command": "x", "schedule": "@daily", "concurrency_policy": "queue"}, "allow, forbid or replace, not 'queue'"),
    ({"command": "x", "schedule": "@daily", "TZ": "Mars/Olympus"}, "TZ 'Mars/Olympus' is not a time zone"),
    ({"command": "x", "schedule": "@daily", "TZ": "../../etc/passwd"}, "is not a time zone"),
    ({"command": "x", "schedule": "@daily", "maxRuntime": "forever"}, "maxRuntime must be seconds or a duration"),
    ({"command": "x", "schedule": "@daily", "maxRuntime": 0}, "from 1s to 7 days, not '0'"),
    ({"command": "x", "schedule": "@daily", "maxRuntime": "8d"}, "maxRuntime must be"),
    ({"command": "x", "schedule": "@daily", "maintenance": "yes"}, "maintenance must be true or false"),
    ({"command": "x", "schedule": "@daily", "name": "Bad Name"}, "name must be lowercase letters"),
])
def test_bad_jobs_are_refused_in_one_line_naming_the_entry(entry: dict[str, object], says: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        jobs({"command": "ok", "schedule": "@daily"}, entry)
    assert refused.value.message.startswith("app.json cron[1]: ") and says in refused.value.message
    assert "\n" not in refused.value.message


def test_two_jobs_with_one_id_must_be_named_and_cron_must_be_a_list() -> None:
    with pytest.raises(InvalidInput, match="another job has the id 'echo-hi'; give each a `name`"):
        jobs({"command": "echo hi", "schedule": "@daily"}, {"command": "echo  hi", "schedule": "@hourly"})
    with pytest.raises(InvalidInput, match=r"cron in app\.json must be a list"):
        cronjobs.parse(b'{"cron": {"command": "x"}}')


EVERY_MINUTE = Job(id="tick", command="true", schedule="* * * * *")
NIGHTLY_PARIS = Job(id="night", command="true", schedule="30 2 * * *", tz="Europe/Paris")
SUSPENDED = Job(id="paused", command="true", schedule="* * * * *", suspended=True)  # `maintenance: true`


def test_the_run_of_this_minute_is_due_once() -> None:
    now = utc(2026, 12, 8, 10, 0, 1)
    assert cronjobs.due(EVERY_MINUTE, utc(2026, 12, 8, 9, 59, 0.5), now) == \
        cronjobs.Due(at=utc(2026, 12, 8, 10, 0, 0), missed=0, late=False)
    assert cronjobs.due(EVERY_MINUTE, now, now + 30) is None  # checked already this minute
    assert cronjobs.due(EVERY_MINUTE, now, now) is None


def test_after_downtime_at_most_one_missed_run_is_caught_up_and_said() -> None:
    # Down from 01:00 to 10:00:20 UTC: the 02:30 Paris run (01:30 UTC) is caught up, once.
    due = cronjobs.due(NIGHTLY_PARIS, utc(2026, 12, 8, 1, 0, 0), utc(2026, 12, 8, 10, 0, 20))
    assert due == cronjobs.Due(at=utc(2026, 12, 8, 1, 30, 0), missed=0, late=True)
    assert due.note(ZoneInfo("Europe/Paris")) == "caught up: the watcher was down at 2026-12-08 02:30 CET"
    # Down three days: one run, the latest; the two before it are said missed.
    due = cronjobs.due(NIGHTLY_PARIS, utc(2026, 12, 5, 1, 0, 0), utc(2026, 12, 8, 10, 0, 20))
    assert due is not None and (due.at, due.missed, due.late) == (utc(2026, 12, 8, 1, 30, 0), 3, True)
    # A minutely job down ten minutes: this minute's run is on time, the nine before are not run.
    due = cronjobs.due(EVERY_MINUTE, utc(2026, 12, 8, 9, 50, 0.5), utc(2026, 12, 8, 10, 0, 1))
    assert due is not None and (due.at, due.missed, due.late) == (utc(2026, 12, 8, 10, 0, 0), 9, False)
    assert due.note(UTC) == "9 run(s) missed while the watcher was down, not run (this one is on time)"


def test_the_job_time_zone_decides_and_follows_summer_time() -> None:
    # 02:30 in Paris is 01:30 UTC in winter, 00:30 UTC in summer.
    assert cronjobs.next_run(NIGHTLY_PARIS, utc(2026, 12, 8, 0, 0, 0)) == utc(2026, 12, 8, 1, 30, 0)
    assert cronjobs.next_run(NIGHTLY_PARIS, utc(2026, 7, 8, 0, 0, 0)) == utc(2026, 7, 8, 0, 30, 0)
    utc_job = Job(id="n", command="true", schedule="30 2 * * *", tz="UTC")
    assert cronjobs.next_run(utc_job, utc(2026, 12, 8, 0, 0, 0)) == utc(2026, 12, 8, 2, 30, 0)
    assert cronjobs.due(NIGHTLY_PARIS, utc(2026, 12, 8, 2, 0, 0), utc(2026, 12, 8, 2, 31, 0)) is None


@pytest.fixture
def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Host:
    return store_host(tmp_path, monkeypatch, "shop")


def test_forbid_lets_one_run_begin_while_allow_lets_two(host: Host) -> None:
    first = cronruns.begin(host, "shop", "report", release=1, trigger="manual", container="c1", scheduled_at=None,
                           note="", alone=True)
    assert first is not None
    assert cronruns.begin(host, "shop", "report", release=1, trigger="schedule", container="c2", scheduled_at=None,
                          note="", alone=True) is None
    assert cronruns.begin(host, "shop", "report", release=1, trigger="schedule", container="c3", scheduled_at=None,
                          note="", alone=False) is not None
    assert cronruns.finish(host, first, status="replaced", exit_code=None, last_lines="", note="replaced")
    assert not cronruns.finish(host, first, status="failed", exit_code=137, last_lines="x")  # ended already
    assert [(r.container, r.status) for r in cronruns.newest(host, "shop")] == [("c3", "running"),
                                                                               ("c1", "replaced")]


def test_the_watcher_remembers_when_it_last_checked_and_starts_what_is_due(host: Host) -> None:
    assert cronruns.last_check(host) is None
    number = releaselog.record_pending(host, "shop", kind="build", sha="a" * 40, image="img", buildpack="node",
                                       env={})
    releaselog.update(host, "shop", number, status="live")
    with store.transaction(host.db) as db:  # a review app of shop, live with the same jobs: it runs none by itself
        db.execute("INSERT INTO apps (name, created_at) VALUES ('shop--feature', 0)")
    review = releaselog.record_pending(host, "shop--feature", kind="build", sha="a" * 40, image="img",
                                       buildpack="node", env={})
    releaselog.update(host, "shop--feature", review, status="live")
    from minipaas.running import cron

    for app in ("shop", "shop--feature"):
        cron._parsed[(str(host.settings.repo_path(app)), "a" * 40)] = (EVERY_MINUTE, NIGHTLY_PARIS, SUSPENDED)
    launched: list[tuple[str, float, bool]] = []

    def launch(settings: object, release: object, job: Job, due: cronjobs.Due, note: str) -> None:
        launched.append((job.id, due.at, due.late))

    first = utc(2026, 12, 8, 1, 0, 0.5)
    assert cronwatch.tick(host.settings, first, launch) == []  # a first watcher starts from now
    assert cronruns.last_check(host) == first
    # Restarted at 10:00:20 after a night down: this minute's run, and the night's one caught up.
    assert cronwatch.tick(host.settings, utc(2026, 12, 8, 10, 0, 20), launch) == [("shop", "tick"),
                                                                                  ("shop", "night")]
    assert launched == [("tick", utc(2026, 12, 8, 10, 0, 0), False), ("night", utc(2026, 12, 8, 1, 30, 0), True)]
    assert cronwatch.tick(host.settings, utc(2026, 12, 8, 10, 0, 40), launch) == []
