"""Bringing apps back as recorded: `ps:restore` (every app, after a reboot or a dockerd restart) and
`ps:start` (one app, after `ps:stop`), both through `resume`."""

from __future__ import annotations

import contextvars
import threading
from concurrent.futures import ThreadPoolExecutor

from minipaas.addons import addons
from minipaas.deploy import canary, formation, placement, retirement, rollout
from minipaas.errors import DeployFailed, MinipaasError, NotFound
from minipaas.progress import Progress
from minipaas.routing import domains, proxy, routes
from minipaas.running import dashboardproc, drains, sleeping, watcher
from minipaas.state import apps, releaselog
from minipaas.state.host import Host
from minipaas.state.locks import app_lock
from minipaas.state.releaselog import Kind, Serving

RESTORE_AT_ONCE = 4


def resume(host: Host, app: str, progress: Progress, *, wake: bool = False) -> tuple[int, str] | None:
    """The live release running and routed again (call with the app's lock held): its stopped containers
    started (in a cluster: its services scaled back, their tasks' addresses read again), health-checked and
    switched to; when they are gone (a `docker rm`, a lost engine), new ones rolled out from its image.
    A sleeping app (idle) is left asleep, its route holding its requests, unless `wake` (ps:start): then it wakes
    (running/sleeping.py). Returns the release that serves and where, None without a release."""
    s = host.settings
    retirement.reconcile(host, app)
    current = releaselog.live(host, app)
    if current is None:
        return None
    if app in routes.sleeping(s):
        if not wake:
            return current.number, "no container: sleeping until its next request"
        sleeping.wake_locked(host, app, progress)
        return current.number, ", ".join(proxy.upstream_addresses(s, app)) or "no web process"
    where = placement.for_host(host, app)  # containers here, or Swarm services in a cluster
    if current.serving == Serving.STATIC:
        proxy.write_site(host, app, domains.of(host, app))
        return current.number, "static files"
    where.prepare()  # a static site has no network (containers.drop_network_if_unused)
    commit = formation.read(host, app, current.sha)  # read once, for the resume or the rollout
    if where.resume(current, progress, commit=commit):
        canary.resume(host, app, progress)  # a canary beside it gets its share again, or is aborted
    else:  # (a rollout replaces a canary)
        progress(f"-----> {app}: {where.WHAT} of release {current.number} are gone; starting new ones")
        current = rollout.roll_out(host, app, kind=Kind.RESTART, sha=current.sha, image=current.image,
                                   buildpack=current.buildpack, progress=progress, env=current.config, commit=commit)
    return current.number, ", ".join(proxy.upstream_addresses(s, app)) or "no web process"


def restore(host: Host, progress: Progress) -> None:
    """Bring every app back to its recorded state (after a reboot or a dockerd restart). One app that
    cannot come back does not hold the others back: each is said, and the command fails at the end.

    RESTORE_AT_ONCE apps come back at once: most of an app's return is waiting (the engine starting its
    containers, the app's own start until it answers), so a host of hundreds is back in a fraction of the time."""
    s = host.settings
    proxy.setup(s)
    watcher.ensure_running(s)
    try:  # the log drains' shipper before the apps, so that their first lines reach the drains too
        drains.ensure(host)
    except MinipaasError as exc:  # the drains miss lines; the apps come back all the same
        progress(f"!     log drains: {exc.message}")
    # Services first: the apps linked to them expect them at their first request.
    failed = addons.restore_all(host, progress)
    wanted = []
    for app in apps.names(host):
        if apps.is_stopped(host, app):
            progress(f"-----> {app}: stopped with ps:stop; left so (`ps:start {app}` starts it)")
        else:
            wanted.append(app)
    said = threading.Lock()
    connections = threading.local()

    def say(line: str) -> None:
        with said:  # whole lines, one app's after another's
            progress(line)

    def one(app: str) -> bool:
        if not hasattr(connections, "host"):
            connections.host = Host(s)  # SQLite: a connection per thread
        try:
            with app_lock(s, app, say):
                serving = resume(connections.host, app, say)
        except MinipaasError as exc:
            say(f" !     {app}: {exc}")
            return False
        if serving is not None:
            say(f"-----> {app}: release {serving[0]} serving at {serving[1]}")
        return True

    # Each app in a copy of this thread's context: the acting key (access.py) reaches what the workers record.
    context = contextvars.copy_context()
    with ThreadPoolExecutor(max_workers=RESTORE_AT_ONCE, thread_name_prefix="restore") as pool:
        done = pool.map(lambda app: context.copy().run(one, app), wanted)
        failed += [app for app, ok in zip(wanted, done, strict=True) if not ok]
    # The dashboard after the apps: its first vhost reloads nginx, which reads the routing table's file, and a
    # deploy killed at its switch left that file naming its release until its app was repaired above.
    try:  # a dashboard that cannot start holds no app back
        if dashboardproc.ensure_running(s):
            progress(f"-----> dashboard: started for {s.dashboard_host}")
    except MinipaasError as exc:
        progress(f" !     dashboard: {exc.message}")
    if failed:
        raise DeployFailed(f"not restored: {', '.join(failed)}")


def start(host: Host, app: str, progress: Progress) -> None:
    """`ps:start`: the live release back up (after `ps:stop`)."""
    with app_lock(host.settings, app, progress):
        serving = resume(host, app, progress, wake=True)
        if serving is None:
            raise NotFound(f"{app} has no release to start; push it first")
        apps.set_stopped(host, app, False)
    progress(f"-----> Started {app} (release {serving[0]})")
