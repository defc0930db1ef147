"""Releases: the deploy sequence and the record of every release.

A release is an image plus the config of its time. Rolling one out always goes the same way:
start the new web container, wait until it is healthy, switch the app's route to it, record it as
live, and retire the old containers after the drain delay, in the background. A failure at any
step removes what that step created, records the release as failed, and leaves the old one serving.
"""

from __future__ import annotations

from collections.abc import Callable

from minipaas import faultpoints
from minipaas.access import events
from minipaas.adapters import engine
from minipaas.build import builds
from minipaas.deploy import canary, containers, formation, placement, retirement
from minipaas.errors import BuildFailed, DeployFailed, MinipaasError, NotFound, TestsFailed
from minipaas.progress import Progress, Recorder
from minipaas.routing import domains, proxy, sites
from minipaas.source import cronjobs, starthints
from minipaas.source.commit import Commit
from minipaas.state import apps, config, daemons, releaselog, store
from minipaas.state.host import Host
from minipaas.state.locks import app_lock
from minipaas.state.releaselog import Kind, Release, Serving, Status

# -- entry points --------------------------------------------------------------------------

def deploy_commit(host: Host, app: str, sha: str, progress: Progress,
                  options: builds.Options | None = None, canary_share: int | None = None) -> Release:
    """Build and roll out a pushed commit (the pre-receive hook's job); `options`: the push's (-o skip-tests...);
    `canary_share`: the percentage it starts with as a canary (-o canary=N; None: the app's settings say)."""
    wanted = canary.plan(host, app, canary_share if canary_share is not None else options.canary if options else None)
    with app_lock(host.settings, app, progress):
        current = releaselog.live(host, app)
        if current and current.sha == sha and placement.for_host(host, app).running(current.number):
            if current.serving == Serving.STATIC or current.config == config.get_all(host, app):
                progress(f"-----> {sha[:7]} is already live as release {current.number}; nothing to do")
                return current
            # The commit is live, the config stored since (`config:set --no-restart`) is not: roll it out.
            progress(f"-----> {sha[:7]} is live as release {current.number} with an older config; releasing it "
                     "with the stored config")
            # Should its image be gone, the rebuild shows the builder's lines if the push asked (-o verbose), as
            # when that reached the build through the environment; the push's other options are not for it.
            return roll_out(host, app, kind=Kind.CONFIG, sha=current.sha, image=current.image,
                            buildpack=current.buildpack, progress=progress,
                            options=builds.Options(verbose=options.verbose) if options else None)
        return roll_out(host, app, kind=Kind.BUILD, sha=sha, image="", buildpack="", progress=progress, options=options,
                        canary_plan=wanted)


def change_config(
    host: Host, app: str, change: Callable[[], bool], progress: Progress, *, restart: bool = True
) -> Release | None:
    """Apply a config change and roll the live image out with it; undo the change if that fails."""
    with app_lock(host.settings, app, progress):
        before = config.snapshot(host, app)
        if not change():
            progress("-----> Config unchanged")
            return None
        current = releaselog.live(host, app)
        if current is None or not restart:
            return None
        if current.serving == Serving.STATIC:
            progress("-----> Stored; a static site has no process to give it to")
            return None
        progress(f"-----> Releasing {app} with the new config")
        try:
            return roll_out(host, app, kind=Kind.CONFIG, sha=current.sha, image=current.image,
                             buildpack=current.buildpack, progress=progress)
        except MinipaasError:
            config.restore(host, app, before)
            raise


def restart(host: Host, app: str, progress: Progress) -> Release:
    """Replace the live containers by fresh ones of the same image and config, without downtime."""
    with app_lock(host.settings, app, progress):
        current = releaselog.live(host, app)
        if current is None:
            raise NotFound(f"{app} has no live release to restart; push it first")
        if current.serving == Serving.STATIC:
            progress(f"-----> {app} is a static site served by nginx: nothing to restart")
            return current
        return roll_out(host, app, kind=Kind.RESTART, sha=current.sha, image=current.image,
                         buildpack=current.buildpack, progress=progress)


# -- the sequence --------------------------------------------------------------------------

def roll_out(host: Host, app: str, *, kind: Kind, sha: str, image: str, buildpack: str,
              progress: Progress, env: dict[str, str] | None = None, options: builds.Options | None = None,
              where: placement.Placement | None = None, canary_plan: canary.Plan | None = None,
              commit: Commit | None = None) -> Release:
    """Start → health check → switch → record → retire, for every way a release comes about.

    `image` empty: build the commit first. `env`: the config to run with (default: the app's now).
    `where`: the placement (default: the host's; `cluster:leave` asks for containers while still in a cluster).
    `commit`: the commit `sha` as the caller read it already (source/commit.py; default: read here, once).
    `canary_plan`: the release starts as a canary (a share of the traffic beside the live release, nothing retired;
    deploy/canary.py). A canary running already is aborted first, whatever this release is.
    The release's log keeps everything the caller was shown, and the builder's own output.
    """
    s = host.settings
    where = where or placement.for_host(host, app)  # containers here, or Swarm services in a cluster
    proxy.ensure_running(s)
    daemons.ensure_watcher(s)
    retirement.reconcile(host, app)
    canary.replace(host, app, progress, by=f"a new release ({kind})")
    split = canary.split_for(host, app, canary_plan, progress) if canary_plan else None
    env = config.get_all(host, app) if env is None else env
    if image and engine.image_id(image) is None:
        # Removed outside minipaas (a `docker rmi`, a new disk): the commit is still here, so build it again.
        progress(f"-----> The image {image} is gone; building {sha[:7]} again")
        image, kind = "", Kind.REBUILD
    number = releaselog.record_pending(host, app, kind=kind, sha=sha, image=image, buildpack=buildpack, env=env)
    progress = Recorder(progress)
    raw = ""  # the builder's own lines, all of them
    try:
        # The commit, read once: the build, the formation, the release command and the health checks receive it.
        commit = commit if commit is not None and commit.sha == sha else formation.read(host, app, sha)
        if not image:
            source = builds.inspect(host, app, commit)
            releaselog.update(host, app, number, buildpack=source.pack.name)
            if source.pack.is_static:
                released, raw = _roll_out_site(host, app, number, source, progress, options)
                releaselog.update(host, app, number, build_log=_log_text(progress, raw))
                return released
            _check_quota(host, app, commit)  # before the build: a formation beyond it would not start
            # Its scheduled jobs too: a schedule that does not parse rejects the push before anything changes.
            cronjobs.parse(commit.app_json)
            containers.check_network_room(host, app)  # nor one that could not get an app network
            built = builds.build(host, app, number, source, progress,
                                 allowed_images=apps.get_setting(host, app, "build-images"), options=options)
            image, buildpack, raw = built.image, built.buildpack, built.log
            releaselog.update(host, app, number, image=image, buildpack=buildpack, tests=built.tests,
                              tests_seconds=built.tests_seconds)
        else:  # an earlier image (config, restart, rollback)
            _check_quota(host, app, commit)
        # The app's network (and the services linked to it there) only now that containers are to run on it:
        # a static site, or a build that fails, holds none of the shared pool.
        where.prepare()
        if formation.RELEASE in commit.procs:
            formation.run_release_command(host, app, image=image, command=commit.procs[formation.RELEASE], env=env,
                                          progress=progress)
        kinds = where.start(placement.Release(number=number, commit=commit, image=image, env=env), progress,
                            split=split)
        if sites.serving_root(s, app) is not None:  # a static site becomes a container app
            proxy.write_site(host, app, domains.of(host, app), static=False)
            sites.deactivate(s, app)
        if split is not None and canary_plan is not None:  # nothing retires while a canary runs
            canary.started(host, app, number, split, canary_plan, progress)
            releaselog.update(host, app, number, build_log=_log_text(progress, raw))
            return releaselog.get(host, app, number)
        old = where.old()
        drain = int(apps.get_setting(host, app, "drain-seconds"))
        releaselog.record_live(host, app, number, retiring=[target for target, _ in old], drain=drain)
    except BaseException as exc:
        if isinstance(exc, DeployFailed):  # a process died at start: a pruned devDependency's binary?
            hint = starthints.for_commit(s.repo_path(app), sha, app, exc.detail)
            exc.detail = f"{hint}\n{exc.detail}" if hint else exc.detail
        message = exc.message if isinstance(exc, MinipaasError) else f"interrupted ({type(exc).__name__})"
        try:
            where.undo()
            containers.drop_network_if_unused(host, app)  # a first deploy that failed leaves no network
        except Exception as undone:  # the engine went away too: the release is still recorded failed, and the next
            # deploy or `ps:restore` removes what it started (retirement.reconcile); the user hears the first cause
            progress.lines.append(f"!     not removed yet: {getattr(undone, 'message', undone)}")
        if isinstance(exc, BuildFailed) and exc.log:
            raw = exc.log
        if isinstance(exc, TestsFailed):
            releaselog.update(host, app, number, tests="failed", tests_seconds=exc.seconds)
        progress.lines.append(f"!     {message}")  # the caller says it; the log keeps it
        releaselog.update(host, app, number, status=Status.FAILED, message=message, finished_at=store.now(),
                build_log=_log_text(progress, raw))
        raise
    faultpoints.reached("retire")
    if old:
        progress(f"-----> Retiring {', '.join(name for _, name in old)} in {drain}s (in the background)")
    # Also with nothing to retire (a first success): its gc collects what rejected pushes before it left.
    retirement.spawn_retirer(host, app)
    if kinds[formation.WEB]:
        domain = apps.default_domain(host, app)
        progress(f"=====> {app} release {number} is live at http://{domain}{containers.port_suffix(host)}/")
    else:
        running = " ".join(f"{kind}={count}" for kind, count in sorted(kinds.items())) or "nothing runs"
        progress(f"=====> {app} release {number} is live with no web process ({running}; "
                 f"`ps:scale {app} web=1` would serve it)")
    releaselog.update(host, app, number, build_log=_log_text(progress, raw))
    _announce_live(host, app, number, kind, sha)
    return releaselog.get(host, app, number)


# The releases a person deploys: a restart, a scale or a drain rolls the same release out again (ps:restore after an
# engine restart would otherwise be a `deploy` of every app).
DEPLOYS = frozenset({Kind.BUILD, Kind.REBUILD, Kind.CONFIG, Kind.ROLLBACK})


def _announce_live(host: Host, app: str, number: int, kind: Kind, sha: str) -> None:
    """The `deploy` event (the audit log's, and the notifications'): a release of DEPLOYS' kinds went live."""
    if kind not in DEPLOYS:
        return
    events.announce(host, "deploy", app=app, command=f"deploy {app} {number}", release=number,
                    outcome=f"release {number} ({kind}, {sha[:7]}) is live")


def _check_quota(host: Host, app: str, commit: Commit) -> None:
    formation.check_quota(host, app, formation.counts(host, app, commit))


BUILDER_OUTPUT = "----- the builder's own output -----"


def _log_text(recorder: Recorder, raw: str) -> str:
    """A release's log: what the pusher saw, then every line the builder printed."""
    text = recorder.text()
    return f"{text}\n\n{BUILDER_OUTPUT}\n{raw}" if raw else text


def _roll_out_site(host: Host, app: str, number: int, source: builds.Source,
                   progress: Progress, options: builds.Options | None = None) -> tuple[Release, str]:
    """The static variant of the sequence: files into a release directory, then one symlink swap.

    Runs inside `_roll_out`'s failure handling: an exception marks the release failed. Returns the
    release and the builder's output (a site with a build step).
    """
    s = host.settings
    image, raw = "", ""
    releaselog.update(host, app, number, buildpack=source.pack.name, serving=Serving.STATIC)
    if source.pack.serve == "static-build":
        built = builds.build(host, app, number, source, progress, options=options)
        image, raw = built.image, built.log
        releaselog.update(host, app, number, image=image, tests=built.tests, tests_seconds=built.tests_seconds)
    else:
        progress(f"-----> Preparing {app} (release {number}, {source.sha[:7]}) with the {source.pack.name} buildpack")
    sites.prepare(host, app, number, source.sha, source.pack, site_dir=apps.get_setting(host, app, "static-dir"),
                  image=image, progress=progress, outputs=source.preset.output if source.preset else ())
    previous = sites.live_release(s, app)
    sites.activate(s, app, number)
    try:
        proxy.write_site(host, app, domains.of(host, app), static=True, markdown=source.pack.serve == "markdown")
    except BaseException:
        if previous is None:
            sites.deactivate(s, app)
        else:
            sites.activate(s, app, previous)
        raise
    old = containers.app_containers(host, app)  # it was a container app until now
    proxy.unroute(s, app)
    releaselog.record_live(host, app, number, retiring=[c.id for c in old], drain=0)
    retirement.spawn_retirer(host, app)  # old containers, if it was a container app; old site directories (gc)
    domain = apps.default_domain(host, app)
    progress(f"=====> {app} release {number} is live at http://{domain}{containers.port_suffix(host)}/")
    _announce_live(host, app, number, Kind.BUILD, source.sha)
    return releaselog.get(host, app, number), raw


# -- retirement and repair -----------------------------------------------------------------


