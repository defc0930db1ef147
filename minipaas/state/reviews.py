"""Review apps in the store: which branch of which app has one, under which slug, pushed when.

A review app is an app of its own (`<app>--<slug>`: its releases, containers, domain, overrides of
config and settings) whose row names its parent and branch. Its commits live in the parent's
repository; its config and settings fall back to the parent's (state/config.py, state/apps.py).
Creating and removing one, with its containers and vhost, is deploy/reviewapps.py's.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from minipaas.state import store
from minipaas.state.host import Host
from minipaas.state.names import branch_slug, review_name


@dataclass(frozen=True)
class Review:
    name: str
    parent: str
    branch: str
    pushed_at: float | None
    created_at: float = 0.0

    @property
    def last_push(self) -> float:
        """When its branch was last pushed as minipaas saw it (`touch` at every push; its creation before)."""
        return self.pushed_at if self.pushed_at is not None else self.created_at


def _review(row: object) -> Review:
    return Review(row["name"], row["parent"], row["branch"], row["pushed_at"], row["created_at"])  # type: ignore[index]


def of(host: Host, parent: str) -> list[Review]:
    """The app's review apps, the most recently pushed first."""
    rows = host.db.execute("SELECT name, parent, branch, pushed_at, created_at FROM apps WHERE parent = ? "
                           "ORDER BY coalesce(pushed_at, created_at) DESC, name", (parent,))
    return [_review(row) for row in rows]


def find(host: Host, parent: str, branch: str) -> Review | None:
    row = host.db.execute("SELECT name, parent, branch, pushed_at, created_at FROM apps "
                          "WHERE parent = ? AND branch = ?", (parent, branch)).fetchone()
    return _review(row) if row else None


def parents(host: Host) -> list[str]:
    """The apps that have review apps."""
    return [row["parent"] for row in host.db.execute("SELECT DISTINCT parent FROM apps WHERE parent IS NOT NULL "
                                                     "ORDER BY parent")]


def parent(host: Host, name: str) -> str | None:
    row = host.db.execute("SELECT parent FROM apps WHERE name = ?", (name,)).fetchone()
    return row["parent"] if row else None


def new_name(host: Host, parent: str, branch: str) -> str:
    """The name a new review app of `branch` gets: the plain slug, or, where another app holds that
    name already (a branch that slugs the same: `Feature/Login` after `feature-login`), the slug with a
    hash of the whole branch name."""
    name = review_name(parent, branch_slug(branch))
    if host.db.execute("SELECT 1 FROM apps WHERE name = ?", (name,)).fetchone():
        name = review_name(parent, branch_slug(branch, distinct=True))
    return name


def insert(host: Host, *, name: str, parent: str, branch: str, domain: str) -> None:
    """The review app's row and its domain, in one transaction (the caller checked both are free)."""
    with store.transaction(host.db) as db:
        db.execute("INSERT INTO apps (name, created_at, parent, branch, life) VALUES (?, ?, ?, ?, ?)",
                   (name, store.now(), parent, branch, secrets.token_hex(8)))
        db.execute("INSERT INTO domains (domain, app) VALUES (?, ?)", (domain, name))


def mark_deployer_pushed(host: Host, name: str) -> bool:
    """A deployer pushed the review app's branch: from now on it gets no secret config (state/config.py) and
    no service of its parent. True when it was not marked before."""
    with store.transaction(host.db) as db:
        cursor = db.execute("UPDATE apps SET deployer_pushed = 1 WHERE name = ? AND parent IS NOT NULL "
                            "AND deployer_pushed = 0", (name,))
    return cursor.rowcount > 0


def receives_parent_services(host: Host, name: str) -> bool:
    """Whether a review app reaches its parent's linked services (not once a deployer pushed its branch)."""
    row = host.db.execute("SELECT deployer_pushed FROM apps WHERE name = ?", (name,)).fetchone()
    return row is not None and not row["deployer_pushed"]


def touch(host: Host, name: str) -> None:
    """Record a push of the review app's branch (review-apps-max stops the least recently pushed)."""
    with store.transaction(host.db) as db:
        db.execute("UPDATE apps SET pushed_at = ? WHERE name = ?", (store.now(), name))
