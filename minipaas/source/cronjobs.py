"""app.json's `cron` key, as dokku reads it: the app's scheduled jobs, and when each is due.

```json
{"cron": [{"command": "node jobs/report.js", "schedule": "@daily", "concurrency_policy": "forbid",
           "maxRuntime": "1h", "TZ": "Europe/Paris"}]}
```
A schedule is five cron fields or @hourly/@daily/@weekly/@monthly/@yearly (also @annually, @midnight), in the
host's time zone or the job's `TZ`. `concurrency_policy` is allow, forbid or replace; minipaas' default is
`forbid` (dokku's is `allow`): a job that outlives its interval is not started twice. `maxRuntime` (default 1h)
is seconds, or a duration such as 90s, 30m, 1h30m. `maintenance: true` suspends a job (it stays listed).
A job's id is its `name` when given, else its command made into a name (`node jobs/report.js` ->
`node-jobs-report-js`): stable across pushes as long as the command stays.

Cron expressions are read by croniter (a well-kept library), never by hand. Pure: text in, jobs and times out.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from dateutil import tz as dateutil_tz

from minipaas.errors import InvalidInput
from minipaas.source.appjson import _load

MAX_JOBS = 50
POLICIES = ("allow", "forbid", "replace")
DEFAULT_POLICY = "forbid"
DEFAULT_MAX_RUNTIME = 3600
MOST_RUNTIME = 7 * 24 * 3600
# dokku's shorthands, as the five fields they stand for
SHORTHANDS = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0",
              "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *"}
JOB_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,39}")
_DURATION = re.compile(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
_NOT_TEXT = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
MAX_COUNTED = 100  # missed runs counted back, at most (a year's downtime of `* * * * *` is not counted one by one)


@dataclass(frozen=True)
class Job:
    id: str
    command: str
    schedule: str  # as written
    policy: str = DEFAULT_POLICY
    max_runtime: int = DEFAULT_MAX_RUNTIME  # seconds
    tz: str = ""  # "" : the host's
    suspended: bool = False

    @property
    def fields(self) -> str:
        return SHORTHANDS.get(self.schedule, self.schedule)

    def zone(self) -> tzinfo:
        return ZoneInfo(self.tz) if self.tz else host_zone()

    def argv(self) -> list[str]:
        """What the container runs: the command through a shell, as dokku's cron does."""
        return ["/bin/sh", "-c", self.command]

    def as_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


def host_zone() -> tzinfo:
    """The host's time zone (its rules, DST included, not only today's offset)."""
    return dateutil_tz.tzlocal()


def parse(raw: bytes | None) -> tuple[Job, ...]:
    """The jobs of an app.json (none without one or without `cron`); one InvalidInput line for anything wrong."""
    if not raw:
        return ()
    section = _load(raw).get("cron")
    if section is None:
        return ()
    if not isinstance(section, list) or len(section) > MAX_JOBS:
        raise InvalidInput(f"cron in app.json must be a list of at most {MAX_JOBS} jobs")
    jobs: dict[str, Job] = {}
    for index, entry in enumerate(section):
        job = _job(entry, f"app.json cron[{index}]")
        if job.id in jobs:
            raise InvalidInput(f"app.json cron[{index}]: another job has the id {job.id!r}; give each a `name`")
        jobs[job.id] = job
    return tuple(jobs.values())


def _job(entry: Any, where: str) -> Job:
    if not isinstance(entry, Mapping):
        raise InvalidInput(f"{where} must be an object with a command and a schedule")
    command, schedule = entry.get("command"), entry.get("schedule")
    if not isinstance(command, str) or not command.strip() or "\0" in command or len(command) > 4096:
        raise InvalidInput(f"{where}: command must be a non-empty string (without NUL)")
    if not isinstance(schedule, str) or _NOT_TEXT.search(schedule):
        raise InvalidInput(f"{where}: schedule must be a string such as \"0 3 * * *\" or \"@daily\"")
    schedule = " ".join(schedule.split())
    check_schedule(schedule, where)
    policy = entry.get("concurrency_policy", DEFAULT_POLICY)
    if policy not in POLICIES:
        raise InvalidInput(f"{where}: concurrency_policy must be allow, forbid or replace, not {str(policy)[:40]!r}")
    zone = entry.get("TZ", "")
    if not isinstance(zone, str) or (zone and not _zone_exists(zone)):
        raise InvalidInput(f"{where}: TZ {str(zone)[:60]!r} is not a time zone (e.g. Europe/Paris, UTC)")
    suspended = entry.get("maintenance", False)
    if not isinstance(suspended, bool):
        raise InvalidInput(f"{where}: maintenance must be true or false")
    name = entry.get("name")
    if name is not None and (not isinstance(name, str) or not JOB_ID.fullmatch(name)):
        raise InvalidInput(f"{where}: name must be lowercase letters, digits and dashes (at most 40), "
                           f"not {str(name)[:40]!r}")
    return Job(id=name or derived_id(command), command=command, schedule=schedule, policy=policy,
               max_runtime=duration(entry.get("maxRuntime", DEFAULT_MAX_RUNTIME), where), tz=zone,
               suspended=suspended)


def check_schedule(schedule: str, where: str) -> None:
    fields = SHORTHANDS.get(schedule, schedule)
    # Five fields only: croniter also reads a sixth (seconds) and a seventh (year), which dokku's cron does not.
    if (schedule.startswith("@") and schedule not in SHORTHANDS) or len(fields.split()) != 5 \
            or not croniter.is_valid(fields):
        raise InvalidInput(f"{where}: schedule {schedule[:60]!r} is not five cron fields (minute hour day month "
                           "weekday) nor @hourly, @daily, @weekly, @monthly or @yearly")


def _zone_exists(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def duration(value: Any, where: str) -> int:
    """maxRuntime: seconds (a number), or `90s`, `30m`, `1h30m`; from 1 s to 7 days."""
    seconds: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        seconds = value
    elif isinstance(value, str) and value and (found := _DURATION.fullmatch(value.strip())) and any(found.groups()):
        hours, minutes, secs = (int(g or 0) for g in found.groups())
        seconds = hours * 3600 + minutes * 60 + secs
    if seconds is None or not 1 <= seconds <= MOST_RUNTIME:
        raise InvalidInput(f"{where}: maxRuntime must be seconds or a duration such as 30m or 1h30m, from 1s to 7 "
                           f"days, not {str(value)[:40]!r}")
    return seconds


def derived_id(command: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", command.lower()).strip("-")[:40].strip("-")
    return slug or "job"


# -- when a job is due ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Due:
    at: float  # the scheduled time of the run to start (Unix time)
    missed: int  # earlier runs since the last check that are not run (capped at MAX_COUNTED)
    late: bool  # its minute passed while no watcher ran: a catch-up run

    def note(self, zone: tzinfo) -> str:
        if not self.late and not self.missed:
            return ""
        when = datetime.fromtimestamp(self.at, zone).strftime("%Y-%m-%d %H:%M %Z").strip()
        more = f"{self.missed}{'+' if self.missed >= MAX_COUNTED else ''}"
        if self.late:
            return (f"caught up: the watcher was down at {when}"
                    + (f"; {more} earlier missed run(s) not run" if self.missed else ""))
        return f"{more} run(s) missed while the watcher was down, not run (this one is on time)"


def next_run(job: Job, after: float) -> float:
    """The job's next scheduled time after `after` (Unix time)."""
    return float(croniter(job.fields, datetime.fromtimestamp(after, job.zone())).get_next(float))


def due(job: Job, last_check: float, now: float) -> Due | None:
    """Which run of the job is due at `now`, the watcher having last checked at `last_check`: the latest scheduled
    time in (last_check, now], if any. When its minute is not now's (the watcher was down then), it is a catch-up,
    and any earlier one in the window is missed: at most one missed run is ever caught up."""
    if now <= last_check:
        return None
    # croniter's get_prev excludes its start: start just after now for a time at now's exact second.
    back = croniter(job.fields, datetime.fromtimestamp(now + 1e-3, job.zone()))
    latest = float(back.get_prev(float))
    if latest <= last_check:
        return None
    missed = 0
    while missed < MAX_COUNTED and float(back.get_prev(float)) > last_check:
        missed += 1
    minute_now = now - now % 60
    return Due(at=latest, missed=missed, late=latest < minute_now)
