"""Review apps that outlived their branch: destroyed by the daily timer (`review-apps:expire`) and by `gc`.

Two reasons, judged per review app (`reason`, pure): its branch got no push for the parent's `review-apps-ttl`
(the last push as minipaas recorded it: `reviews.touch` at every push of the branch, never a file's mtime), or
its branch is no longer in the parent's repository (deleted without a push minipaas saw: `git update-ref -d`
on the host, a force-push of another ref, a repository restored from an older copy). Each goes through the
same destroy as a deleted branch's (lifecycle.destroy: containers, images, routes, nginx files, site folders,
its database and role, rows, build contexts) and is said in the parent's `events`.

Under the parent's push turn: a push that is making a review app (its row exists before git writes its
branch's ref) is never mistaken for an orphan, and a push of a stale branch is never raced.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from minipaas.access import events
from minipaas.adapters import gitrepo
from minipaas.deploy import lifecycle
from minipaas.errors import MinipaasError
from minipaas.progress import Progress
from minipaas.state import apps, durations, locks, reviews
from minipaas.state.host import Host
from minipaas.state.reviews import Review

COMMAND = "review-apps:expire"


@dataclass(frozen=True)
class Expired:
    name: str
    parent: str
    branch: str
    why: str


def reason(review: Review, *, ttl: int, now: float, branch_exists: bool) -> str | None:
    """Why the review app goes (None: it stays). `ttl` in seconds, 0: no lifetime."""
    if not branch_exists:
        return f"its branch {review.branch} is no longer in the repository"
    if ttl and now - review.last_push >= ttl:
        days = (now - review.last_push) / 86_400
        return f"its branch {review.branch} got no push for {days:.1f} days (review-apps-ttl)"
    return None


def _due(host: Host, parent: str, now: float, progress: Progress) -> list[Expired]:
    """The parent's review apps that go now; none when its repository cannot be read (a missing or broken
    repository is never taken for one whose branches were all deleted)."""
    ttl = durations.ttl_seconds(apps.get_setting(host, parent, "review-apps-ttl")) or 0
    try:
        have = gitrepo.branches(host.settings.repo_path(parent))
    except (OSError, MinipaasError) as exc:
        progress(f"       review apps of {parent} kept: its repository cannot be read ({exc})")
        return []
    found = []
    for review in reviews.of(host, parent):
        why = reason(review, ttl=ttl, now=now, branch_exists=review.branch in have)
        if why is not None:
            found.append(Expired(review.name, parent, review.branch, why))
    return found


def expire(host: Host, *, dry_run: bool, progress: Progress, only: str | None = None,
           now: float | None = None) -> list[Expired]:
    """Destroy (or, `dry_run`, name) the review apps that outlived their branch, of every app or of `only`."""
    now = time.time() if now is None else now
    gone: list[Expired] = []
    for parent in [only] if only else reviews.parents(host):
        due = _due(host, parent, now, progress)
        if not due:
            continue
        if dry_run:
            gone += due
            continue
        with locks.push_turn(host.settings, parent, progress):
            for expired in _due(host, parent, now, progress):  # judged again: a push may have come meanwhile
                lifecycle.destroy(host, expired.name, lambda line: progress(f"       {line}"))
                events.record(host, app=parent, command=f"{COMMAND} {expired.name}",
                              outcome=f"review app {expired.name} removed: {expired.why}")
                progress(f"-----> Removed review app {expired.name}: {expired.why}")
                gone.append(expired)
    if dry_run:
        for expired in gone:
            progress(f"       would remove review app {expired.name}: {expired.why}")
    return gone
