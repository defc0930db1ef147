"""Scheduled jobs' runs in the store (table cron_runs) and the watcher's cron clock (table cron_clock). Records
only: running a job is running/cron.py's, deciding when is source/cronjobs.py's and running/cronwatch.py's."""

from __future__ import annotations

from dataclasses import dataclass

from minipaas.state import store
from minipaas.state.host import Host

KEEP = 100  # runs kept per job, newest first
RUNNING = "running"
FINISHED = ("succeeded", "failed", "timed-out", "skipped", "replaced")


@dataclass(frozen=True)
class Run:
    id: int
    app: str
    job: str
    release: int
    trigger: str
    container: str
    scheduled_at: float | None
    started_at: float
    finished_at: float | None
    status: str
    exit_code: int | None
    last_lines: str
    note: str

    @property
    def seconds(self) -> float | None:
        return None if self.finished_at is None else max(0.0, self.finished_at - self.started_at)

    def as_dict(self) -> dict[str, object]:
        return {**self.__dict__, "seconds": self.seconds}


def _run(row: object) -> Run:
    return Run(**dict(row))  # type: ignore[call-overload]


def begin(host: Host, app: str, job: str, *, release: int, trigger: str, container: str,
          scheduled_at: float | None, note: str, alone: bool) -> int | None:
    """A run starts (status running); returns its id. `alone`: only when no other run of the job is running (one
    statement: two watchers or commands starting the same job at once cannot both pass); None when one is."""
    with store.transaction(host.db) as db:
        cursor = db.execute(
            "INSERT INTO cron_runs (app, job, release, trigger, container, scheduled_at, started_at, status, note) "
            "SELECT ?, ?, ?, ?, ?, ?, ?, 'running', ? WHERE NOT ? OR NOT EXISTS "
            "(SELECT 1 FROM cron_runs WHERE app = ? AND job = ? AND status = 'running')",
            (app, job, release, trigger, container, scheduled_at, store.now(), note, alone, app, job))
        if not cursor.rowcount:
            return None
        _trim(db, app, job)
    return int(cursor.lastrowid or 0)


def skipped(host: Host, app: str, job: str, *, release: int, trigger: str, scheduled_at: float | None,
            note: str) -> int:
    """A run that did not start (its policy forbade it): recorded, finished at once."""
    now = store.now()
    with store.transaction(host.db) as db:
        cursor = db.execute(
            "INSERT INTO cron_runs (app, job, release, trigger, scheduled_at, started_at, finished_at, status, note) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, 'skipped', ?)", (app, job, release, trigger, scheduled_at, now, now, note))
        _trim(db, app, job)
    return int(cursor.lastrowid or 0)


def _trim(db: object, app: str, job: str) -> None:
    db.execute("DELETE FROM cron_runs WHERE app = ? AND job = ? AND id NOT IN "  # type: ignore[attr-defined]
               "(SELECT id FROM cron_runs WHERE app = ? AND job = ? ORDER BY id DESC LIMIT ?)",
               (app, job, app, job, KEEP))


def finish(host: Host, run: int, *, status: str, exit_code: int | None, last_lines: str, note: str = "") -> bool:
    """The run ended; False when it had ended already (another took it over: `replace` stopped it)."""
    assert status in FINISHED
    with store.transaction(host.db) as db:
        cursor = db.execute(
            "UPDATE cron_runs SET status = ?, exit_code = ?, last_lines = ?, finished_at = ?, "
            "note = CASE WHEN ? = '' THEN note WHEN note = '' THEN ? ELSE note || '; ' || ? END "
            "WHERE id = ? AND status = 'running'",
            (status, exit_code, last_lines, store.now(), note, note, note, run))
    return bool(cursor.rowcount)


def get(host: Host, run: int) -> Run | None:
    row = host.db.execute("SELECT * FROM cron_runs WHERE id = ?", (run,)).fetchone()
    return _run(row) if row else None


def running(host: Host, app: str | None = None, job: str | None = None) -> list[Run]:
    """Runs not finished yet (of one job, one app, or all), oldest first."""
    rows = host.db.execute(
        "SELECT * FROM cron_runs WHERE status = 'running' AND (? IS NULL OR app = ?) AND (? IS NULL OR job = ?) "
        "ORDER BY id", (app, app, job, job))
    return [_run(row) for row in rows]


def newest(host: Host, app: str, job: str | None = None, limit: int = 20) -> list[Run]:
    rows = host.db.execute(
        "SELECT * FROM cron_runs WHERE app = ? AND (? IS NULL OR job = ?) ORDER BY id DESC LIMIT ?",
        (app, job, job, limit))
    return [_run(row) for row in rows]


def last_check(host: Host) -> float | None:
    """When the watcher last looked for due jobs (None: never)."""
    row = host.db.execute("SELECT checked_at FROM cron_clock WHERE id = 1").fetchone()
    return float(row[0]) if row else None


def checked(host: Host, at: float) -> None:
    with store.transaction(host.db) as db:
        db.execute("INSERT INTO cron_clock (id, checked_at) VALUES (1, ?) "
                   "ON CONFLICT (id) DO UPDATE SET checked_at = excluded.checked_at", (at,))
