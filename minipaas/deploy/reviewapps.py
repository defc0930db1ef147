"""Review apps: every pushed branch but the deploy branch live at its own URL, gone with the branch.

A push of `feature/login` to `hello` deploys the commit as the app `hello--feature-login` (state/
reviews.py), served at `feature-login.hello.<domain>` (the parent's `review-url`), through the same
build, health check and switch as any deploy (rollout.py). Its config and settings are the parent's
with its own overrides, but a deployer's push gets no secret value (state/config.py); a new one gets databases of
its own in its parent's services (addons/reviewdbs.py, `review-apps-db`); a deleted branch removes it entirely
(lifecycle.destroy), and so does the end of its lifetime (reviewexpiry.py). At most `review-apps-limit` exist (a
push of one more branch is refused before anything is made); of them, beyond `review-apps-max`, the least
recently pushed are stopped until their next push.
"""

from __future__ import annotations

from minipaas.addons import containers as addon_containers
from minipaas.addons import reviewdbs
from minipaas.build import builds
from minipaas.deploy import addresspool, containers, lifecycle, placement, rollout
from minipaas.errors import Conflict
from minipaas.progress import Progress
from minipaas.routing import proxy
from minipaas.state import apps, domains, releaselog, reviews, services
from minipaas.state.host import Host
from minipaas.state.names import check_hostname
from minipaas.state.releaselog import Serving


def deploy_branch(host: Host, parent: str, branch: str, sha: str, progress: Progress,
                  options: builds.Options | None = None, *, by_deployer: bool = False) -> str:
    """Deploy `sha` as the branch's review app, made on its first push; returns the review app's name.
    `by_deployer`: a deployer's key pushed it: the review app gets none of the secret config nor the services
    of its parent, from this push until the branch is deleted (state/config.py)."""
    review = reviews.find(host, parent, branch)
    name = review.name if review else _create(host, parent, branch, progress)
    try:
        if review is None:  # its own databases in its parent's services (review-apps-db)
            reviewdbs.provision(host, parent, name, progress, by_deployer=by_deployer)
        if by_deployer:
            _withhold_secrets(host, parent, name, progress)
        reviews.touch(host, name)
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


def check_room(host: Host, parent: str, branches: list[str]) -> None:
    """Refuse, before anything is made, a push whose new branches would make more review apps than the parent's
    `review-apps-limit` (running or stopped: each holds a vhost, a domain, and while it runs containers and a
    network). A branch that has its review app already is always deployed."""
    limit = int(apps.get_setting(host, parent, "review-apps-limit"))
    have = len(reviews.of(host, parent))
    new = [b for b in dict.fromkeys(branches) if reviews.find(host, parent, b) is None]
    if new and have + len(new) > limit:
        raise Conflict(f"{parent} has {have} review apps and review-apps-limit is {limit}: {new[0]} gets none; "
                       f"delete a branch (git push paas :BRANCH), or an admin raises it: "
                       f"minipaas settings:set {parent} review-apps-limit {have + len(new)}")


def _create(host: Host, parent: str, branch: str, progress: Progress) -> str:
    name = reviews.new_name(host, parent, branch)
    domain = check_hostname(apps.default_domain(host, name), what="review app host name")
    if domains.owner(host, domain) is not None:
        raise Conflict(f"the review app of {branch} would be served at {domain}, which another app has")
    reviews.insert(host, name=name, parent=parent, branch=branch, domain=domain)
    try:
        proxy.write_site(host, name, [domain])
    except BaseException:
        lifecycle.forget(host, name)
        raise
    count, limit = len(reviews.of(host, parent)), int(apps.get_setting(host, parent, "review-apps-limit"))
    progress(f"-----> Review app {name} for branch {branch}")
    if warning := addresspool.warning(host):
        progress(f"       warning: {warning}")
    if count >= limit:
        progress(f"       {parent} has {count} review apps, its review-apps-limit: another branch is refused until "
                 f"one is deleted or an admin raises it (settings:set {parent} review-apps-limit N)")
    return name


def _withhold_secrets(host: Host, parent: str, name: str, progress: Progress) -> None:
    """From a deployer's push on, the review app's code is a deployer's: it gets what that key may read."""
    newly = reviews.mark_deployer_pushed(host, name)
    if newly:
        reviewdbs.withhold(host, name, progress)  # its Redis databases: their URL holds the service's password
    for service in services.linked_to(host, parent):  # an admin's push made it, with them on its network
        if not services.link_password(host, service.kind, service.name, name):  # but its own role's database
            addon_containers.detach(host, service, name)
    if newly:
        progress(f"-----> {name} is a deployer's push: it gets no secret config and no service of {parent}")


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
        placement.stop(host, review.name, lambda _line: None)
        progress(f"-----> Stopped review app {review.name} ({review.branch}): more than review-apps-max "
                 f"({limit}) run; its next push starts it again")


def _runs(host: Host, name: str) -> bool:
    live = releaselog.live(host, name)
    return live is not None and live.serving != Serving.STATIC and containers.running(host, name, live.number)
