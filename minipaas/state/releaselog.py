"""The release log: every release of an app (its image, config, status, log) and the containers
waiting for retirement, in the SQLite store. Records only; rolling a release out is deploy/rollout.py's."""

from __future__ import annotations

import getpass
import json
import os
import sqlite3
from dataclasses import dataclass

from minipaas import faultpoints
from minipaas.errors import NotFound
from minipaas.state import store
from minipaas.state.host import Host


@dataclass(frozen=True)
class Release:
    app: str
    number: int
    kind: str
    sha: str
    image: str
    buildpack: str
    status: str
    config: dict[str, str]
    serving: str  # container, or static (nginx serves the release's files)
    pusher: str
    created_at: float
    finished_at: float | None
    message: str
    tests: str = ""  # passed, failed, skipped ("": no tests, or not a build)
    tests_seconds: float | None = None  # how long they ran in this build (None with passed: a cached test layer)

    @property
    def tests_text(self) -> str:
        """`passed 3.2s`, `passed (cached)`, `failed 1.0s`, `skipped`, or "-"."""
        if not self.tests:
            return "-"
        if self.tests_seconds is None:
            return f"{self.tests} (cached)" if self.tests == "passed" else self.tests
        return f"{self.tests} {self.tests_seconds:.1f}s"

    def as_dict(self) -> dict[str, object]:
        data = dict(self.__dict__)
        data.pop("config")
        return data


def from_row(row: object) -> Release:
    r = dict(row)  # type: ignore[call-overload]
    return Release(app=r["app"], number=r["number"], kind=r["kind"], sha=r["sha"], image=r["image"],
                   buildpack=r["buildpack"], status=r["status"], config=json.loads(r["config_json"]),
                   serving=r["serving"],
                   pusher=r["pusher"], created_at=r["created_at"], finished_at=r["finished_at"],
                   message=r["message"], tests=r.get("tests") or "", tests_seconds=r.get("tests_seconds"))


def listing(host: Host, app: str) -> list[Release]:
    rows = host.db.execute("SELECT * FROM releases WHERE app = ? ORDER BY number DESC", (app,))
    return [from_row(row) for row in rows]


def images(host: Host) -> dict[str, set[str]]:
    """Every app's release images, in one query (`report` over hundreds of apps: one `listing` per app would
    read every release's build log too)."""
    found: dict[str, set[str]] = {}
    for row in host.db.execute("SELECT app, image FROM releases WHERE image != ''"):
        found.setdefault(row["app"], set()).add(row["image"])
    return found


def live(host: Host, app: str) -> Release | None:
    row = host.db.execute("SELECT * FROM releases WHERE app = ? AND status = 'live'", (app,)).fetchone()
    return from_row(row) if row else None


def get(host: Host, app: str, number: int) -> Release:
    row = host.db.execute("SELECT * FROM releases WHERE app = ? AND number = ?", (app, number)).fetchone()
    if row is None:
        raise NotFound(f"{app} has no release {number}")
    return from_row(row)


def last_pushed(host: Host, app: str) -> str | None:
    """The commit of the app's newest build, whether it went live or not (a rejected push's too)."""
    row = host.db.execute("SELECT sha FROM releases WHERE app = ? AND kind IN ('build', 'rebuild') "
                          "ORDER BY number DESC LIMIT 1", (app,)).fetchone()
    return row["sha"] if row else None


def build_log(host: Host, app: str, number: int) -> str:
    row = host.db.execute("SELECT build_log FROM releases WHERE app = ? AND number = ?", (app, number)).fetchone()
    return row["build_log"] if row else ""


def pusher() -> str:
    return os.environ.get("MINIPAAS_USER") or getpass.getuser()


def record_pending(host: Host, app: str, *, kind: str, sha: str, image: str, buildpack: str,
                    env: dict[str, str]) -> int:
    with store.transaction(host.db) as db:
        number = db.execute("SELECT COALESCE(MAX(number), 0) + 1 FROM releases WHERE app = ?",
                            (app,)).fetchone()[0]
        db.execute(
            "INSERT INTO releases (app, number, kind, sha, image, buildpack, status, config_json, pusher,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?)",
            (app, number, kind, sha, image, buildpack, json.dumps(env), pusher(), store.now()))
    return int(number)


_UPDATABLE = frozenset({"image", "buildpack", "build_log", "status", "message", "finished_at", "serving", "tests",
                        "tests_seconds"})


def update(host: Host, app: str, number: int, **fields: object) -> None:
    unknown = set(fields) - _UPDATABLE
    if unknown:
        raise ValueError(f"not a release column: {unknown}")
    # Column names come from the fixed set above; values are bound parameters.
    assignments = ", ".join(f"{key} = ?" for key in fields)
    with store.transaction(host.db) as db:
        db.execute(f"UPDATE releases SET {assignments} WHERE app = ? AND number = ?",  # noqa: S608
                   (*fields.values(), app, number))


def record_live(host: Host, app: str, number: int, *, retiring: list[str], drain: int) -> None:
    with store.transaction(host.db) as db:
        db.execute("UPDATE releases SET status = 'superseded' WHERE app = ? AND status = 'live'", (app,))
        db.execute("UPDATE releases SET status = 'live', finished_at = ? WHERE app = ? AND number = ?",
                   (store.now(), app, number))
        db.execute("UPDATE apps SET stopped = 0 WHERE name = ?", (app,))  # a release going live runs
        schedule_retirement(db, app, retiring, drain)
        faultpoints.reached("record")


def interrupt_pending(host: Host, app: str, *, retiring: list[str], drain: int) -> list[Release]:
    """The releases a deploy that died left pending, marked failed (`interrupted`), and the containers its route
    still sent requests to scheduled for retirement, in one transaction; returns those releases."""
    with store.transaction(host.db) as db:
        rows = db.execute("SELECT * FROM releases WHERE app = ? AND status = 'pending'", (app,)).fetchall()
        db.execute("UPDATE releases SET status = 'failed', message = 'interrupted', finished_at = ? "
                   "WHERE app = ? AND status = 'pending'", (store.now(), app))
        schedule_retirement(db, app, retiring, drain)
    return [from_row(row) for row in rows]


def schedule_retirement(db: sqlite3.Connection, app: str, containers: list[str], drain: int) -> None:
    for container in containers:
        # OR IGNORE: a container already draining keeps its deadline; a burst of deploys must not defer it.
        db.execute("INSERT OR IGNORE INTO retirements (container, app, not_before) VALUES (?, ?, ?)",
                   (container, app, store.now() + drain))


def retiring(host: Host, app: str) -> set[str]:
    return {row["container"] for row in host.db.execute("SELECT container FROM retirements WHERE app = ?", (app,))}
