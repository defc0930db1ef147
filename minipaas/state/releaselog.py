"""The release log: every release of an app (its image, config, status, log) and the containers
waiting for retirement, in the SQLite store, with the words it is written in (`Status`, `Kind`, `Serving`).
Records only; rolling a release out is deploy/rollout.py's."""

from __future__ import annotations

import getpass
import json
import os
import sqlite3
from dataclasses import dataclass
from enum import Enum, StrEnum

from minipaas import faultpoints
from minipaas.errors import NotFound
from minipaas.state import store
from minipaas.state.host import Host


class Status(StrEnum):
    """Where a release stands. Stored as its text: a member equals its string, so queries and old rows agree."""

    PENDING = "pending"  # being built or started
    LIVE = "live"  # the app's one stable release: what rollbacks, `ps:restore` and gc count from
    CANARY = "canary"  # beside the live one, with a share of its traffic (state/canaries.py)
    SUPERSEDED = "superseded"  # was live; a rollback may bring it back
    FAILED = "failed"  # never went live (its message says why), or a canary aborted


class Kind(StrEnum):
    """What made a release."""

    BUILD = "build"  # a push
    REBUILD = "rebuild"  # a release whose image had gone, built again from its commit
    CONFIG = "config"  # config:set / config:unset
    RESTART = "restart"  # ps:restart, ps:restore, a node leaving
    ROLLBACK = "rollback"
    SCALE = "scale"  # ps:scale in a cluster: the release rolled out again at its new count
    DRAIN = "drain"  # a cluster node drained: the release rolled out again elsewhere
    SETTINGS = "settings"  # static-dir changed: the live static build served from another folder


class Serving(StrEnum):
    """Who answers a release's requests."""

    CONTAINER = "container"  # its containers (or Swarm tasks), behind nginx
    STATIC = "static"  # nginx itself, from the release's files


@dataclass(frozen=True)
class Release:
    app: str
    number: int
    kind: Kind
    sha: str
    image: str
    buildpack: str
    status: Status
    config: dict[str, str]
    serving: Serving
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
    return Release(app=r["app"], number=r["number"], kind=Kind(r["kind"]), sha=r["sha"], image=r["image"],
                   buildpack=r["buildpack"], status=Status(r["status"]), config=json.loads(r["config_json"]),
                   serving=Serving(r["serving"]),
                   pusher=r["pusher"], created_at=r["created_at"], finished_at=r["finished_at"],
                   message=r["message"], tests=r.get("tests") or "", tests_seconds=r.get("tests_seconds"))


def listing(host: Host, app: str) -> list[Release]:
    rows = host.db.execute("SELECT * FROM releases WHERE app = ? ORDER BY number DESC", (app,))
    return [from_row(row) for row in rows]


def live(host: Host, app: str) -> Release | None:
    """The app's live release, if it has one."""
    found = lives(host, app)
    return found[0] if found else None


def lives(host: Host, app: str | None = None) -> list[Release]:
    """The live release of every app (by app), or of one: the one query for "the live release"."""
    # Two forms of the one query, not `? IS NULL OR app = ?`: that would keep SQLite from the (app, number) key.
    if app is None:
        rows = host.db.execute("SELECT * FROM releases WHERE status = ? ORDER BY app", (Status.LIVE,))
    else:
        rows = host.db.execute("SELECT * FROM releases WHERE status = ? AND app = ?", (Status.LIVE, app))
    return [from_row(row) for row in rows]


def live_since(host: Host) -> dict[str, float]:
    """When each app's live release went live (it finished), for the idle apps (running/sleeping.py)."""
    return {row["app"]: row["at"] for row in host.db.execute(
        "SELECT app, coalesce(finished_at, created_at) AS at FROM releases WHERE status = 'live'")}


def routed_numbers(host: Host, app: str) -> set[int]:
    """The releases whose containers have a share of the app's route: the live one, and a canary beside it."""
    rows = host.db.execute("SELECT number FROM releases WHERE app = ? AND status IN (?, ?)",
                           (app, Status.LIVE, Status.CANARY))
    return {int(row["number"]) for row in rows}


def images(host: Host, app: str | None = None) -> dict[str, set[str]]:
    """The images of every app's releases (by app), or of one app's, a release that had none left out: one query
    (`report` over hundreds of apps; a `listing` per app would read every release's build log too)."""
    if app is None:
        rows = host.db.execute("SELECT app, image FROM releases WHERE image != ''")
    else:
        rows = host.db.execute("SELECT app, image FROM releases WHERE app = ? AND image != ''", (app,))
    found: dict[str, set[str]] = {}
    for row in rows:
        found.setdefault(row["app"], set()).add(row["image"])
    return found


def get(host: Host, app: str, number: int) -> Release:
    row = host.db.execute("SELECT * FROM releases WHERE app = ? AND number = ?", (app, number)).fetchone()
    if row is None:
        raise NotFound(f"{app} has no release {number}")
    return from_row(row)


def last_pushed(host: Host, app: str) -> str | None:
    """The commit of the app's newest build, whether it went live or not (a rejected push's too)."""
    row = host.db.execute("SELECT sha FROM releases WHERE app = ? AND kind IN (?, ?) ORDER BY number DESC LIMIT 1",
                          (app, Kind.BUILD, Kind.REBUILD)).fetchone()
    return row["sha"] if row else None


def build_log(host: Host, app: str, number: int) -> str:
    row = host.db.execute("SELECT build_log FROM releases WHERE app = ? AND number = ?", (app, number)).fetchone()
    return row["build_log"] if row else ""


def pusher() -> str:
    return os.environ.get("MINIPAAS_USER") or getpass.getuser()


def record_pending(host: Host, app: str, *, kind: Kind, sha: str, image: str, buildpack: str,
                    env: dict[str, str]) -> int:
    with store.transaction(host.db) as db:
        number = db.execute("SELECT COALESCE(MAX(number), 0) + 1 FROM releases WHERE app = ?",
                            (app,)).fetchone()[0]
        db.execute(
            "INSERT INTO releases (app, number, kind, sha, image, buildpack, status, config_json, pusher,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (app, number, kind, sha, image, buildpack, Status.PENDING, json.dumps(env), pusher(), store.now()))
    return int(number)


class _Keep(Enum):
    KEEP = "keep"


KEEP = _Keep.KEEP  # `update`'s default: the column keeps its value (None is a value: finished_at, tests_seconds)


def update(host: Host, app: str, number: int, *, image: str | _Keep = KEEP, buildpack: str | _Keep = KEEP,
           build_log: str | _Keep = KEEP, status: Status | _Keep = KEEP, message: str | _Keep = KEEP,
           finished_at: float | _Keep | None = KEEP, serving: Serving | _Keep = KEEP, tests: str | _Keep = KEEP,
           tests_seconds: float | _Keep | None = KEEP) -> None:
    """Set the columns given (the others keep their values), in one statement."""
    given = {"image": image, "buildpack": buildpack, "build_log": build_log, "status": status, "message": message,
             "finished_at": finished_at, "serving": serving, "tests": tests, "tests_seconds": tests_seconds}
    fields = {column: value for column, value in given.items() if value is not KEEP}
    if not fields:
        return
    # Column names come from the fixed keys above; values are bound parameters.
    assignments = ", ".join(f"{key} = ?" for key in fields)
    with store.transaction(host.db) as db:
        db.execute(f"UPDATE releases SET {assignments} WHERE app = ? AND number = ?",  # noqa: S608
                   (*fields.values(), app, number))


def make_live(db: sqlite3.Connection, app: str, number: int) -> None:
    """Within a transaction: the release is the app's live one, the one that was becomes superseded."""
    db.execute("UPDATE releases SET status = ? WHERE app = ? AND status = ?", (Status.SUPERSEDED, app, Status.LIVE))
    db.execute("UPDATE releases SET status = ?, finished_at = ? WHERE app = ? AND number = ?",
               (Status.LIVE, store.now(), app, number))


def record_live(host: Host, app: str, number: int, *, retiring: list[str], drain: int) -> None:
    with store.transaction(host.db) as db:
        make_live(db, app, number)
        db.execute("UPDATE apps SET stopped = 0 WHERE name = ?", (app,))  # a release going live runs
        schedule_retirement(db, app, retiring, drain)
        faultpoints.reached("record")


def interrupt_pending(host: Host, app: str, *, retiring: list[str], drain: int) -> list[Release]:
    """The releases a deploy that died left pending, marked failed (`interrupted`), and the containers its route
    still sent requests to scheduled for retirement, in one transaction; returns those releases."""
    with store.transaction(host.db) as db:
        rows = db.execute("SELECT * FROM releases WHERE app = ? AND status = ?", (app, Status.PENDING)).fetchall()
        db.execute("UPDATE releases SET status = ?, message = 'interrupted', finished_at = ? "
                   "WHERE app = ? AND status = ?", (Status.FAILED, store.now(), app, Status.PENDING))
        schedule_retirement(db, app, retiring, drain)
    return [from_row(row) for row in rows]


def schedule_retirement(db: sqlite3.Connection, app: str, containers: list[str], drain: int) -> None:
    for container in containers:
        # OR IGNORE: a container already draining keeps its deadline; a burst of deploys must not defer it.
        db.execute("INSERT OR IGNORE INTO retirements (container, app, not_before) VALUES (?, ?, ?)",
                   (container, app, store.now() + drain))


def retire_later(host: Host, app: str, containers: list[str], drain: int) -> None:
    """Containers of the app to retire once `drain` seconds have passed (`schedule_retirement` on its own)."""
    with store.transaction(host.db) as db:
        schedule_retirement(db, app, containers, drain)


def retirements(host: Host, app: str) -> list[tuple[str, float]]:
    """The app's containers waiting for retirement, with the time each may go from, the soonest first."""
    rows = host.db.execute("SELECT container, not_before FROM retirements WHERE app = ? ORDER BY not_before", (app,))
    return [(row["container"], row["not_before"]) for row in rows]


def retired(host: Host, container: str) -> None:
    """The container is gone: no longer waiting for retirement."""
    with store.transaction(host.db) as db:
        db.execute("DELETE FROM retirements WHERE container = ?", (container,))


def retiring(host: Host, app: str) -> set[str]:
    return {row["container"] for row in host.db.execute("SELECT container FROM retirements WHERE app = ?", (app,))}
