"""Review apps: every pushed branch but the deploy branch live at its own URL, gone with the branch.

A push of `feature/login` to `hello` deploys the commit as the app `hello--feature-login` (state/
reviews.py), served at `feature-login.hello.<domain>` (the parent's `review-url`), through the same
build, health check and switch as any deploy (rollout.py). Its config and settings are the parent's
with its own overrides; a deleted branch removes it entirely (lifecycle.destroy); beyond the parent's
`review-apps-max`, the least recently pushed ones are stopped until their next push.
"""

from __future__ import annotations

from collections.abc import Callable

from minipaas.build import builds
from minipaas.deploy import containers, lifecycle, processes, rollout
from minipaas.errors import Conflict
from minipaas.routing import proxy
from minipaas.state import apps, releaselog, reviews
from minipaas.state.host import Host
from minipaas.state.names import check_hostname

Progress = Callable[[str], None]


def deploy_branch(host: Host, parent: str, branch: str, sha: str, progress: Progress,
                  options: builds.Options | None = None) -> str:
    """Deploy `sha` as the branch's review app, made on its first push; returns the review app's name."""
    review = reviews.find(host, parent, branch)
    name = review.name if review else _create(host, parent, branch, progress)
    reviews.touch(host, name)
    try:
        rollout.deploy_commit(host, name, sha, progress, options)
    except BaseException:
        if review is None:  # its first push was rejected: the branch is not there, nor is its review app
            lifecycle.destroy(host, name, lambda _line: None)
        raise
    _stop_beyond_max(host, parent, keep=name, progress=progress)
    return name


def remove_branch(host: Host, parent: str, branch: str, progress: Progress) -> None:
    """The branch was deleted: its review app goes, with everything it had."""
    review = reviews.find(host, parent, branch)
    if review is None:
        progress(f"-----> {branch} deleted (it had no review app)")
        return
    lifecycle.destroy(host, review.name, lambda line: progress(f"       {line}"))
    progress(f"-----> {branch} deleted: review app {review.name} removed")


def _create(host: Host, parent: str, branch: str, progress: Progress) -> str:
    name = reviews.new_name(host, parent, branch)
    domain = check_hostname(apps.default_domain(host, name), what="review app host name")
    if host.db.execute("SELECT app FROM domains WHERE domain = ?", (domain,)).fetchone():
        raise Conflict(f"the review app of {branch} would be served at {domain}, which another app has")
    reviews.insert(host, name=name, parent=parent, branch=branch, domain=domain)
    try:
        proxy.write_site(host.settings, name, [domain])
    except BaseException:
        lifecycle.forget(host, name)
        raise
    progress(f"-----> Review app {name} for branch {branch}")
    return name


def _stop_beyond_max(host: Host, parent: str, *, keep: str, progress: Progress) -> None:
    """Keep at most `review-apps-max` review apps running: the least recently pushed stop first (their
    next push starts them again). Static review sites cost nothing and are left alone."""
    limit = int(apps.get_setting(host, parent, "review-apps-max"))
    if limit == 0:
        return
    running = [r for r in reviews.of(host, parent) if _runs(host, r.name)]
    for review in running[limit:]:
        if review.name == keep:
            continue
        processes.stop(host, review.name, lambda _line: None)
        progress(f"-----> Stopped review app {review.name} ({review.branch}): more than review-apps-max "
                 f"({limit}) run; its next push starts it again")


def _runs(host: Host, name: str) -> bool:
    live = releaselog.live(host, name)
    return live is not None and live.serving != "static" and containers.running(host, name, live.number)
