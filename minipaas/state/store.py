"""SQLite state under MINIPAAS_HOME: apps, their config, domains, settings and releases.

The schema is versioned with `PRAGMA user_version`; `migrate` brings any older database up to
date and is run by `minipaas init` and on every open (it is a no-op when current).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from minipaas.errors import Conflict, MinipaasError, no_space

DEFAULT_WAIT = 30  # seconds a write waits for another process' transaction (MINIPAAS_DB_WAIT)

MIGRATIONS: list[str] = [
    # 1: the core pipeline
    """
    CREATE TABLE apps (
        name TEXT PRIMARY KEY,
        created_at REAL NOT NULL
    );
    CREATE TABLE app_settings (
        app TEXT NOT NULL REFERENCES apps(name) ON DELETE CASCADE,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (app, key)
    );
    CREATE TABLE config (
        app TEXT NOT NULL REFERENCES apps(name) ON DELETE CASCADE,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (app, key)
    );
    CREATE TABLE domains (
        domain TEXT PRIMARY KEY,
        app TEXT NOT NULL REFERENCES apps(name) ON DELETE CASCADE
    );
    CREATE TABLE releases (
        app TEXT NOT NULL REFERENCES apps(name) ON DELETE CASCADE,
        number INTEGER NOT NULL,
        kind TEXT NOT NULL,            -- build, config, restart, rollback
        sha TEXT NOT NULL,
        image TEXT NOT NULL DEFAULT '',
        buildpack TEXT NOT NULL DEFAULT '',
        status TEXT NOT NULL,          -- pending, live, failed, superseded
        config_json TEXT NOT NULL DEFAULT '{}',
        pusher TEXT NOT NULL DEFAULT '',
        created_at REAL NOT NULL,
        finished_at REAL,
        message TEXT NOT NULL DEFAULT '',
        build_log TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (app, number)
    );
    CREATE TABLE retirements (
        container TEXT PRIMARY KEY,
        app TEXT NOT NULL,
        not_before REAL NOT NULL
    );
    """,
    # 2: ssh access: keys, their grants, and the audit log
    """
    CREATE TABLE ssh_keys (
        name TEXT PRIMARY KEY,
        role TEXT NOT NULL,            -- admin, deployer
        fingerprint TEXT NOT NULL UNIQUE,
        key_type TEXT NOT NULL,
        key_data TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE TABLE key_grants (
        name TEXT NOT NULL REFERENCES ssh_keys(name) ON DELETE CASCADE,
        app TEXT NOT NULL,
        PRIMARY KEY (name, app)
    );
    CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at REAL NOT NULL,
        user TEXT NOT NULL,
        fingerprint TEXT NOT NULL DEFAULT '',
        app TEXT NOT NULL DEFAULT '',
        command TEXT NOT NULL,
        outcome TEXT NOT NULL DEFAULT 'started'
    );
    CREATE INDEX events_app ON events (app, at);
    """,
    # 3: static sites are served by nginx from files, not by containers
    """
    ALTER TABLE releases ADD COLUMN serving TEXT NOT NULL DEFAULT 'container';
    """,
    # 4: process types and their scale
    """
    CREATE TABLE formation (
        app TEXT NOT NULL REFERENCES apps(name) ON DELETE CASCADE,
        process TEXT NOT NULL,
        count INTEGER NOT NULL,
        PRIMARY KEY (app, process)
    );
    """,
    # 5: a grant ends with its app (a new app of the same name starts with no deployer on it);
    #    grants left behind by earlier versions are dropped
    """
    CREATE TABLE key_grants_new (
        name TEXT NOT NULL REFERENCES ssh_keys(name) ON DELETE CASCADE,
        app TEXT NOT NULL REFERENCES apps(name) ON DELETE CASCADE,
        PRIMARY KEY (name, app)
    );
    INSERT INTO key_grants_new (name, app) SELECT name, app FROM key_grants WHERE app IN (SELECT name FROM apps);
    DROP TABLE key_grants;
    ALTER TABLE key_grants_new RENAME TO key_grants;
    """,
    # 6: review apps: a branch's own deploy (`<app>--<slug>`) belongs to its parent app
    """
    ALTER TABLE apps ADD COLUMN parent TEXT REFERENCES apps(name) ON DELETE CASCADE;
    ALTER TABLE apps ADD COLUMN branch TEXT;
    ALTER TABLE apps ADD COLUMN pushed_at REAL;
    CREATE UNIQUE INDEX apps_branch ON apps (parent, branch);
    """,
    # 7: tests as image layers: each build's test outcome (passed, failed, skipped; '' none) and how long they ran
    #    (NULL: they did not run in this build, e.g. a cached test layer)
    """
    ALTER TABLE releases ADD COLUMN tests TEXT NOT NULL DEFAULT '';
    ALTER TABLE releases ADD COLUMN tests_seconds REAL;
    """,
    # 8: services apps link (postgres, redis): their password, the apps linked to each (and the config key
    #    it sets there), and their settings (backup schedule and retention, limits)
    """
    CREATE TABLE services (
        kind TEXT NOT NULL,            -- postgres, redis
        name TEXT NOT NULL,
        version TEXT NOT NULL,
        password TEXT NOT NULL,
        created_at REAL NOT NULL,
        PRIMARY KEY (kind, name)
    );
    CREATE TABLE service_links (
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        app TEXT NOT NULL REFERENCES apps(name) ON DELETE CASCADE,
        env_key TEXT NOT NULL,
        PRIMARY KEY (kind, name, app),
        FOREIGN KEY (kind, name) REFERENCES services(kind, name) ON DELETE CASCADE
    );
    CREATE TABLE service_settings (
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (kind, name, key),
        FOREIGN KEY (kind, name) REFERENCES services(kind, name) ON DELETE CASCADE
    );
    """,
    # 9: an app stopped with ps:stop stays stopped across ps:restore (a reboot), as dokku's does
    """
    ALTER TABLE apps ADD COLUMN stopped INTEGER NOT NULL DEFAULT 0;
    """,
    # 10: an app's life: a random id given when it is created (and to the apps that exist now). Its BuildKit cache
    #     mounts are named after it, so an app created again under the same name starts with none of the old one's;
    #     the ids its builds used are kept (beyond the app: apps:destroy and gc empty them, then forget them)
    """
    ALTER TABLE apps ADD COLUMN life TEXT NOT NULL DEFAULT '';
    UPDATE apps SET life = lower(hex(randomblob(8))) WHERE life = '';
    CREATE TABLE cache_mounts (
        life TEXT NOT NULL,
        app TEXT NOT NULL,
        id TEXT NOT NULL,
        PRIMARY KEY (life, id)
    );
    """,
    # 11: secret config values (`config:set --secret`; link URLs always): a deployer's `config` shows every other
    #     value, so every value stored before is marked secret (none becomes visible). A review app a deployer
    #     pushed to gets none of the secret values (docs/security.md); of the review apps there are, those of an
    #     app a deployer is granted, or was pushed to by a key that is not an admin's, count as such.
    """
    ALTER TABLE config ADD COLUMN secret INTEGER NOT NULL DEFAULT 0;
    UPDATE config SET secret = 1;
    ALTER TABLE apps ADD COLUMN deployer_pushed INTEGER NOT NULL DEFAULT 0;
    UPDATE apps SET deployer_pushed = 1 WHERE parent IS NOT NULL AND (parent IN (SELECT app FROM key_grants)
        OR parent IN (SELECT app FROM events WHERE command LIKE 'git-receive-pack %'
                      AND user NOT IN (SELECT name FROM ssh_keys WHERE role = 'admin')));
    """,
    # 12: a Postgres link's own role password (each linked app logs in as a role of its own, issue 19);
    #     '' for the links made before, whose apps have the superuser's URL until they are upgraded
    """
    ALTER TABLE service_links ADD COLUMN password TEXT NOT NULL DEFAULT '';
    """,
    # 13: the dashboard (issue 21): one-time login links and browser sessions, each of the ssh key that asked for
    #     it; only a SHA-256 of a link's token or a session's id is kept (a copy of the database logs nobody in)
    """
    CREATE TABLE dashboard_links (
        token_hash TEXT PRIMARY KEY,
        key_name TEXT NOT NULL REFERENCES ssh_keys(name) ON DELETE CASCADE,
        fingerprint TEXT NOT NULL,
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL,
        used_at REAL
    );
    CREATE TABLE dashboard_sessions (
        id_hash TEXT PRIMARY KEY,
        key_name TEXT NOT NULL REFERENCES ssh_keys(name) ON DELETE CASCADE,
        fingerprint TEXT NOT NULL,
        csrf TEXT NOT NULL,
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL,
        last_seen REAL NOT NULL
    );
    CREATE INDEX dashboard_sessions_key ON dashboard_sessions (key_name);
    """,
    # 14: canary releases (issue 22): the release that takes a share of an app's traffic beside its live one, the
    #     share now, and where it is in its steps; the release itself has status 'canary' until promoted or aborted
    """
    CREATE TABLE canaries (
        app TEXT PRIMARY KEY REFERENCES apps(name) ON DELETE CASCADE,
        release INTEGER NOT NULL,
        stable INTEGER NOT NULL,
        weight INTEGER NOT NULL,
        steps TEXT NOT NULL,
        step INTEGER NOT NULL,
        started_at REAL NOT NULL,
        step_started_at REAL NOT NULL,
        started_by TEXT NOT NULL
    );
    """,
    # 15: apps that sleep when idle (issue 24): since when, when they last woke, and why their last wake failed
    #     (whether one sleeps now is its route's: routes.sleeping)
    """
    CREATE TABLE sleeps (
        app TEXT PRIMARY KEY REFERENCES apps(name) ON DELETE CASCADE,
        slept_at REAL NOT NULL,
        woke_at REAL,
        wake_error TEXT NOT NULL DEFAULT ''
    );
    """,
    # 16: notifications (issue 25): where the host's events are sent (the URL holds secrets: shown redacted only),
    #     the events waiting to be sent (the outbox, emptied by the watcher), and each one's last failure
    """
    CREATE TABLE notifications (
        name TEXT PRIMARY KEY,
        kind TEXT NOT NULL,            -- webhook, slack
        url TEXT NOT NULL,
        app TEXT NOT NULL DEFAULT '',  -- '' every app's
        events TEXT NOT NULL,          -- comma-separated event names
        created_at REAL NOT NULL,
        sent_at REAL,
        failed_at REAL,
        failure TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE notify_outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        notification TEXT NOT NULL REFERENCES notifications(name) ON DELETE CASCADE,
        event TEXT NOT NULL,
        app TEXT NOT NULL DEFAULT '',
        release INTEGER,
        message TEXT NOT NULL DEFAULT '',
        at REAL NOT NULL,
        tries INTEGER NOT NULL DEFAULT 0,
        next_at REAL NOT NULL
    );
    CREATE INDEX notify_outbox_due ON notify_outbox (next_at);
    """,
    # 17: scheduled jobs (issue 25): each run of an app's app.json `cron` jobs (kept per job, newest 100), and when
    #     the watcher last looked for due jobs (what a restarted watcher missed)
    """
    CREATE TABLE cron_runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        app TEXT NOT NULL REFERENCES apps(name) ON DELETE CASCADE,
        job TEXT NOT NULL,
        release INTEGER NOT NULL,
        trigger TEXT NOT NULL,         -- schedule, catch-up, manual
        container TEXT NOT NULL DEFAULT '',
        scheduled_at REAL,
        started_at REAL NOT NULL,
        finished_at REAL,
        status TEXT NOT NULL,          -- running, succeeded, failed, timed-out, skipped, replaced
        exit_code INTEGER,
        last_lines TEXT NOT NULL DEFAULT '',
        note TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX cron_runs_job ON cron_runs (app, job, id);
    CREATE TABLE cron_clock (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        checked_at REAL NOT NULL
    );
    """,
]


def connect(path: Path, *, wait: float = DEFAULT_WAIT) -> sqlite3.Connection:
    # Every app's config lives here: create the file 0600 whatever the umask, before SQLite does
    # (it would use 0644); its -wal and -shm files then get the same mode from SQLite.
    if not path.exists():
        with contextlib.suppress(FileExistsError):
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            os.chmod(path, 0o600)
    conn = sqlite3.connect(path, timeout=wait, isolation_level=None)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute(f"PRAGMA busy_timeout = {int(wait * 1000)}")
    try:
        migrate(conn)
    except sqlite3.OperationalError as exc:
        raise refusal(conn, exc) from None
    return conn


def migrate(conn: sqlite3.Connection) -> int:
    """Apply pending migrations; returns the schema version."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version == len(MIGRATIONS):
        return version
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]  # another process may have won
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            for statement in script.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return len(MIGRATIONS)


def upgrade(path: Path, *, wait: float = DEFAULT_WAIT) -> int:
    """`init`: the database at `path` made, or brought up to date; returns its schema version."""
    conn = connect(path, wait=wait)
    try:
        return migrate(conn)
    finally:
        conn.close()


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A write transaction: all of it or nothing. A database another process holds locked beyond the wait, or a disk
    with no room left for it, is one line (`refusal`), and nothing of the transaction is written."""
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        raise refusal(conn, exc) from None
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        if isinstance(exc, sqlite3.OperationalError):
            raise refusal(conn, exc) from None
        raise


def refusal(conn: sqlite3.Connection, exc: sqlite3.OperationalError) -> MinipaasError | sqlite3.OperationalError:
    """What to tell the user when SQLite refuses a write: the database locked beyond the wait, or no room on its disk
    (anything else is a bug, and stays as it is)."""
    name = getattr(exc, "sqlite_errorname", "")
    if name in ("SQLITE_BUSY", "SQLITE_LOCKED"):
        waited = conn.execute("PRAGMA busy_timeout").fetchone()[0] / 1000
        return Conflict(f"minipaas' database stayed locked by another process for {waited:g} s (a transaction left "
                        "open: an sqlite3 shell, a stuck command); nothing was changed: try again once it is free")
    if name == "SQLITE_FULL":
        return no_space(f"of minipaas' database ({_path(conn)})")
    return exc


def _path(conn: sqlite3.Connection) -> str:
    return next((str(row[2]) for row in conn.execute("PRAGMA database_list") if row[1] == "main"), "minipaas.db")


def now() -> float:
    return time.time()
