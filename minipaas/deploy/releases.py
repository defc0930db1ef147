"""Releases: the deploy sequence and the record of every release.

A release is an image plus the config of its time. Rolling one out always goes the same way:
start the new web container, wait until it is healthy, switch the app's route to it, record it as
live, and retire the old containers after the drain delay, in the background. A failure at any
step removes what that step created, records the release as failed, and leaves the old one serving.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from minipaas.adapters import engine, gitrepo, networks
from minipaas.build import builds, starthints
from minipaas.deploy import appjson, formation, health, watcher
from minipaas.errors import BuildFailed, Conflict, DeployFailed, InvalidInput, MinipaasError, NotFound
from minipaas.progress import Recorder
from minipaas.routing import domains, proxy, sites
from minipaas.state import apps, config, store
from minipaas.state.host import Host
from minipaas.state.locks import app_lock

Progress = Callable[[str], None]


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

    def as_dict(self) -> dict[str, object]:
        data = dict(self.__dict__)
        data.pop("config")
        return data


def _release(row: object) -> Release:
    r = dict(row)  # type: ignore[call-overload]
    return Release(app=r["app"], number=r["number"], kind=r["kind"], sha=r["sha"], image=r["image"],
                   buildpack=r["buildpack"], status=r["status"], config=json.loads(r["config_json"]),
                   serving=r["serving"],
                   pusher=r["pusher"], created_at=r["created_at"], finished_at=r["finished_at"],
                   message=r["message"])


def listing(host: Host, app: str) -> list[Release]:
    rows = host.db.execute("SELECT * FROM releases WHERE app = ? ORDER BY number DESC", (app,))
    return [_release(row) for row in rows]


def live(host: Host, app: str) -> Release | None:
    row = host.db.execute("SELECT * FROM releases WHERE app = ? AND status = 'live'", (app,)).fetchone()
    return _release(row) if row else None


def get(host: Host, app: str, number: int) -> Release:
    row = host.db.execute("SELECT * FROM releases WHERE app = ? AND number = ?", (app, number)).fetchone()
    if row is None:
        raise NotFound(f"{app} has no release {number}")
    return _release(row)


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


def web_containers(host: Host, app: str) -> list[engine.Container]:
    return [c for c in app_containers(host, app) if c.labels.get("minipaas.process") == formation.WEB]


def app_containers(host: Host, app: str) -> list[engine.Container]:
    """The app's long-running containers, of every process type (one-off `run` ones excluded)."""
    found = engine.containers({engine.LABEL: str(host.settings.home), "minipaas.app": app},
                              network=host.settings.app_network(app))
    return [c for c in found if c.labels.get("minipaas.process") not in ("run", formation.RELEASE)]


# -- entry points --------------------------------------------------------------------------

def deploy_commit(host: Host, app: str, sha: str, progress: Progress) -> Release:
    """Build and roll out a pushed commit (the pre-receive hook's job)."""
    with app_lock(host.settings, app, progress):
        current = live(host, app)
        if current and current.sha == sha and _running(host, app, current.number):
            progress(f"-----> {sha[:7]} is already live as release {current.number}; nothing to do")
            return current
        return _roll_out(host, app, kind="build", sha=sha, image="", buildpack="", progress=progress)


def change_config(
    host: Host, app: str, change: Callable[[], bool], progress: Progress, *, restart: bool = True
) -> Release | None:
    """Apply a config change and roll the live image out with it; undo the change if that fails."""
    with app_lock(host.settings, app, progress):
        before = config.get_all(host, app)
        if not change():
            progress("-----> Config unchanged")
            return None
        current = live(host, app)
        if current is None or not restart:
            return None
        if current.serving == "static":
            progress("-----> Stored; a static site has no process to give it to")
            return None
        progress(f"-----> Releasing {app} with the new config")
        try:
            return _roll_out(host, app, kind="config", sha=current.sha, image=current.image,
                             buildpack=current.buildpack, progress=progress)
        except MinipaasError:
            config.replace_all(host, app, before)
            raise


def restart(host: Host, app: str, progress: Progress) -> Release:
    """Replace the live containers by fresh ones of the same image and config, without downtime."""
    with app_lock(host.settings, app, progress):
        current = live(host, app)
        if current is None:
            raise NotFound(f"{app} has no live release to restart; push it first")
        if current.serving == "static":
            progress(f"-----> {app} is a static site served by nginx: nothing to restart")
            return current
        return _roll_out(host, app, kind="restart", sha=current.sha, image=current.image,
                         buildpack=current.buildpack, progress=progress)


def rollback(host: Host, app: str, target: int | None, progress: Progress) -> Release:
    """Bring back an earlier release's image (or site) and its config of that time, without a build."""
    with app_lock(host.settings, app, progress):
        current = live(host, app)
        if current is None:
            raise NotFound(f"{app} has no live release to roll back from")
        if target is None:
            earlier = [r for r in listing(host, app) if r.status == "superseded" and r.number < current.number]
            if not earlier:
                raise NotFound(f"{app} has no earlier release that went live")
            target = earlier[0].number
        chosen = get(host, app, target)
        if chosen.number == current.number:
            raise Conflict(f"release {target} is the live one already")
        if chosen.status != "superseded":
            raise Conflict(f"release {target} never went live ({chosen.status}); pick one that did")
        if not _restorable(host, app, chosen):
            raise Conflict(f"release {target} was garbage-collected; the last "
                           f"{apps.get_setting(host, app, 'keep-releases')} can be rolled back")
        progress(f"-----> Rolling {app} back to release {target} ({chosen.sha[:7]}, {chosen.kind})")
        before = config.get_all(host, app)
        config.replace_all(host, app, chosen.config)
        try:
            if chosen.serving == "static":
                return _roll_back_site(host, app, chosen, progress)
            released = _roll_out(host, app, kind="rollback", sha=chosen.sha, image=chosen.image,
                                 buildpack=chosen.buildpack, progress=progress)
        except BaseException:
            config.replace_all(host, app, before)
            raise
        _update(host, app, released.number, message=f"rollback to {target}")
        return get(host, app, released.number)


def change_static_dir(host: Host, app: str, folder: str, progress: Progress) -> Release | None:
    """`settings:set APP static-dir FOLDER`: checked, stored, and served at once from the live build's image
    when that is a static build holding the folder (a new release of the same commit); else from the next
    push. A folder that cannot be served (no index.html, a symlink) is refused and the setting kept as it was."""
    with app_lock(host.settings, app, progress):
        current = live(host, app)
        before = apps.get_setting(host, app, "static-dir")
        apps.set_setting(host, app, "static-dir", folder)  # checks its form: a relative path, no `..`
        try:
            if folder and current is not None:
                sites.check_static_dir(host.settings, app, current.sha, folder)
            source = builds.inspect(host.settings, app, current.sha) if current is not None else None
            if current is None or source is None or source.pack.serve != "static-build" \
                    or current.buildpack != source.pack.name or not engine.image_labels(current.image) \
                    or (folder and not sites.image_has_folder(current.image, folder)):
                progress(f"-----> Stored; {app} serves {folder or 'the folder its build made'} from the next push")
                return None
            return _reserve_site(host, app, current, source, folder, progress)
        except BaseException:
            apps.set_setting(host, app, "static-dir", before)
            raise


def _reserve_site(host: Host, app: str, current: Release, source: builds.Source, folder: str,
                  progress: Progress) -> Release:
    """The live static build's image, served from another of its folders: a release of kind `settings`."""
    s = host.settings
    number = _record_pending(host, app, kind="settings", sha=current.sha, image=current.image,
                             buildpack=current.buildpack, env=current.config)
    _update(host, app, number, serving="static", message=f"static-dir {folder or '(found by the build)'}")
    previous = sites.live_release(s, app)
    try:
        sites.prepare(s, app, number, current.sha, source.pack, site_dir=folder, image=current.image,
                      progress=progress, outputs=source.preset.output if source.preset else ())
        sites.activate(s, app, number)
        _record_live(host, app, number, retiring=[], drain=0)
    except BaseException as exc:
        if previous is not None and sites.live_release(s, app) != previous:
            sites.activate(s, app, previous)
        message = exc.message if isinstance(exc, MinipaasError) else f"interrupted ({type(exc).__name__})"
        _update(host, app, number, status="failed", message=message, finished_at=store.now())
        raise
    progress(f"=====> {app} release {number} (release {current.number}'s build) is live")
    return get(host, app, number)


def _restorable(host: Host, app: str, release: Release) -> bool:
    if release.serving == "static":
        return (sites.app_dir(host.settings, app) / str(release.number)).is_dir()
    return engine.image_labels(release.image) is not None


def _roll_back_site(host: Host, app: str, chosen: Release, progress: Progress) -> Release:
    number = _record_pending(host, app, kind="rollback", sha=chosen.sha, image=chosen.image,
                             buildpack=chosen.buildpack, env=chosen.config)
    _update(host, app, number, serving="static", message=f"rollback to {chosen.number}")
    previous = sites.live_release(host.settings, app)
    live_before = live(host, app)
    sites.activate(host.settings, app, chosen.number)
    try:
        # The vhost follows the kind of site: a docs site's responses carry its CSP, a plain one's not.
        proxy.write_site(host.settings, app, domains.of(host, app), static=True,
                         markdown=proxy.serves_markdown(host.settings, chosen.buildpack))
        _record_live(host, app, number, retiring=[], drain=0)
    except BaseException:
        if previous is not None:
            sites.activate(host.settings, app, previous)
            if live_before is not None:
                with contextlib.suppress(MinipaasError):  # the first failure is the one to report
                    proxy.write_site(host.settings, app, domains.of(host, app), static=True,
                                     markdown=proxy.serves_markdown(host.settings, live_before.buildpack))
        raise
    progress(f"=====> {app} release {number} (= release {chosen.number}) is live")
    return get(host, app, number)


def scale(host: Host, app: str, args: list[str], progress: Progress) -> dict[str, int]:
    """`ps:scale APP web=3 worker=1`: start what is missing, switch, then retire the surplus (drained)."""
    changes = formation.parse_changes(args)
    with app_lock(host.settings, app, progress):
        current = live(host, app)
        procs = formation.procfile(host, app, current.sha) if current else {}
        before = formation.counts(host, app, procs)
        unknown = sorted(set(changes) - set(before))
        if current is not None and unknown:
            raise InvalidInput(f"{app} has no process type {', '.join(unknown)} "
                               f"(its types: {', '.join(before)}; others come from the Procfile)")
        formation.store_counts(host, app, changes)
        wanted = formation.counts(host, app, procs)
        if current is None or current.serving == "static":
            progress(f"-----> Stored: {_formation_text(wanted)}; it applies from the next deploy")
            return wanted
        try:
            _apply_scale(host, app, current, procs, wanted, progress)
        except BaseException:
            formation.store_counts(host, app, before)
            raise
        progress(f"=====> {app} runs {_formation_text(wanted)}")
        return wanted


def _formation_text(counts: dict[str, int]) -> str:
    return " ".join(f"{process}={count}" for process, count in counts.items())


def _apply_scale(host: Host, app: str, current: Release, procs: dict[str, str], wanted: dict[str, int],
                 progress: Progress) -> None:
    s = host.settings
    mine = [c for c in app_containers(host, app) if c.labels.get("minipaas.release") == str(current.number)
            and c.status == "running" and c.id not in _retiring(host, app)]
    port = web_port(current.image)
    started: list[engine.Container] = []
    keep: list[engine.Container] = []
    surplus: list[engine.Container] = []
    try:
        for process, count in wanted.items():
            existing = sorted((c for c in mine if c.labels.get("minipaas.process") == process),
                              key=lambda c: int(c.labels.get("minipaas.index", "1")))
            keep += existing[:count]
            surplus += existing[count:]
            used = {int(c.labels.get("minipaas.index", "1")) for c in existing}
            free = (i for i in range(1, 10 * formation.MAX_SCALE) if i not in used)
            for _ in range(count - len(existing)):
                started.append(formation.start(host, app, release=current.number, image=current.image, port=port,
                                               env=current.config,
                                               process=process, index=next(free), procs=procs, progress=progress))
        targets = {f"{c.ip}:{container_port(c)}": c.id for c in keep if c.labels["minipaas.process"] == formation.WEB}
        for container in started:
            if container.labels["minipaas.process"] == formation.WEB:
                targets[wait_healthy(host, app, container, current.sha, progress)[0]] = container.id
        formation.check_still_running([c for c in started if c.labels["minipaas.process"] != formation.WEB],
                                      s.app_network(app))
        if targets:
            proxy.switch(s, app, current.number, targets)
        else:
            proxy.unroute(s, app)
    except BaseException:
        for container in started:
            engine.remove(container.id, timeout=0)
        raise
    if surplus:
        drain = int(apps.get_setting(host, app, "drain-seconds"))
        with store.transaction(host.db) as db:
            _schedule_retirement(db, app, [c.id for c in surplus], drain)
        progress(f"-----> Retiring {', '.join(c.name for c in surplus)} in {drain}s (in the background)")
        _spawn_retirer(host, app)


def _retiring(host: Host, app: str) -> set[str]:
    return {row["container"] for row in host.db.execute("SELECT container FROM retirements WHERE app = ?", (app,))}


# -- the sequence --------------------------------------------------------------------------

def _roll_out(host: Host, app: str, *, kind: str, sha: str, image: str, buildpack: str,
              progress: Progress, env: dict[str, str] | None = None) -> Release:
    """Start → health check → switch → record → retire, for every way a release comes about.

    `image` empty: build the commit first. `env`: the config to run with (default: the app's now).
    The release's log keeps everything the caller was shown, and the builder's own output.
    """
    s = host.settings
    ensure_app_network(host, app)
    proxy.ensure_running(s)
    watcher.ensure_running(s)
    _reconcile(host, app)
    env = config.get_all(host, app) if env is None else env
    if image and engine.image_id(image) is None:
        # Removed outside minipaas (a `docker rmi`, a new disk): the commit is still here, so build it again.
        progress(f"-----> The image {image} is gone; building {sha[:7]} again")
        image, kind = "", "rebuild"
    number = _record_pending(host, app, kind=kind, sha=sha, image=image, buildpack=buildpack, env=env)
    progress = Recorder(progress)
    raw = ""  # the builder's own lines, all of them
    started: list[engine.Container] = []
    procs: dict[str, str] | None = None  # the Procfile, once read
    try:
        if not image:
            source = builds.inspect(s, app, sha)
            _update(host, app, number, buildpack=source.pack.name)
            procs = source.procfile
            if source.pack.is_static:
                released, raw = _roll_out_site(host, app, number, source, progress)
                _update(host, app, number, build_log=_log_text(progress, raw))
                return released
            built = builds.build(s, app, number, source, progress,
                                 allowed_images=apps.get_setting(host, app, "build-images"))
            image, buildpack, raw = built.image, built.buildpack, built.log
            _update(host, app, number, image=image, buildpack=buildpack)
        if procs is None:  # an earlier image (config, restart, rollback): read its commit's Procfile
            procs = formation.procfile(host, app, sha)
        if formation.RELEASE in procs:
            formation.run_release_command(host, app, image=image, command=procs[formation.RELEASE], env=env,
                                          progress=progress)
        port = web_port(image)
        for process, count in formation.counts(host, app, procs).items():
            for index in range(1, count + 1):
                started.append(formation.start(host, app, release=number, image=image, port=port, env=env,
                                               process=process, index=index, procs=procs, progress=progress))
        if started:
            formation.warn_if_shared_uid(started[0], progress)
        targets = {}
        for container in (c for c in started if c.labels["minipaas.process"] == formation.WEB):
            address, seconds = wait_healthy(host, app, container, sha, progress)
            progress(f"       healthy after {seconds:.1f}s")
            targets[address] = container.id
        formation.check_still_running([c for c in started if c.labels["minipaas.process"] != formation.WEB],
                                      s.app_network(app))
        if targets:
            proxy.switch(s, app, number, targets)
        else:
            proxy.unroute(s, app)  # scaled to no web process: the app answers 503
        if sites.serving_root(s, app) is not None:  # a static site becomes a container app
            proxy.write_site(s, app, domains.of(host, app), static=False)
            sites.deactivate(s, app)
        new_ids = {c.id for c in started}
        old = [c for c in app_containers(host, app) if c.id not in new_ids]
        drain = int(apps.get_setting(host, app, "drain-seconds"))
        _record_live(host, app, number, retiring=[c.id for c in old], drain=drain)
    except BaseException as exc:
        if isinstance(exc, DeployFailed):  # a process died at start: a pruned devDependency's binary?
            hint = starthints.for_commit(s.repo_path(app), sha, app, exc.detail)
            exc.detail = f"{hint}\n{exc.detail}" if hint else exc.detail
        for container in started:
            engine.remove(container.id, timeout=0)
        message = exc.message if isinstance(exc, MinipaasError) else f"interrupted ({type(exc).__name__})"
        if isinstance(exc, BuildFailed) and exc.log:
            raw = exc.log
        progress.lines.append(f"!     {message}")  # the caller says it; the log keeps it
        _update(host, app, number, status="failed", message=message, finished_at=store.now(),
                build_log=_log_text(progress, raw))
        raise
    if old:
        progress(f"-----> Retiring {', '.join(c.name for c in old)} in {drain}s (in the background)")
        _spawn_retirer(host, app)
    domain = apps.default_domain(host, app)
    progress(f"=====> {app} release {number} is live at http://{domain}{_port_suffix(host)}/")
    _update(host, app, number, build_log=_log_text(progress, raw))
    return get(host, app, number)


BUILDER_OUTPUT = "----- the builder's own output -----"


def _log_text(recorder: Recorder, raw: str) -> str:
    """A release's log: what the pusher saw, then every line the builder printed."""
    text = recorder.text()
    return f"{text}\n\n{BUILDER_OUTPUT}\n{raw}" if raw else text


def _roll_out_site(host: Host, app: str, number: int, source: builds.Source,
                   progress: Progress) -> tuple[Release, str]:
    """The static variant of the sequence: files into a release directory, then one symlink swap.

    Runs inside `_roll_out`'s failure handling: an exception marks the release failed. Returns the
    release and the builder's output (a site with a build step).
    """
    s = host.settings
    image, raw = "", ""
    _update(host, app, number, buildpack=source.pack.name, serving="static")
    if source.pack.serve == "static-build":
        built = builds.build(s, app, number, source, progress)
        image, raw = built.image, built.log
        _update(host, app, number, image=image)
    else:
        progress(f"-----> Preparing {app} (release {number}, {source.sha[:7]}) with the {source.pack.name} buildpack")
    sites.prepare(s, app, number, source.sha, source.pack, site_dir=apps.get_setting(host, app, "static-dir"),
                  image=image, progress=progress, outputs=source.preset.output if source.preset else ())
    previous = sites.live_release(s, app)
    sites.activate(s, app, number)
    try:
        proxy.write_site(s, app, domains.of(host, app), static=True, markdown=source.pack.serve == "markdown")
    except BaseException:
        if previous is None:
            sites.deactivate(s, app)
        else:
            sites.activate(s, app, previous)
        raise
    old = app_containers(host, app)  # it was a container app until now
    proxy.unroute(s, app)
    _record_live(host, app, number, retiring=[c.id for c in old], drain=0)
    _spawn_retirer(host, app)  # old containers, if it was a container app; old site directories (gc)
    progress(f"=====> {app} release {number} is live at http://{apps.default_domain(host, app)}{_port_suffix(host)}/")
    return get(host, app, number), raw


def ensure_app_network(host: Host, app: str) -> None:
    """The app's own Docker network (its containers reach no other app's): made on first use."""
    networks.ensure_app_network(host.settings.app_network(app), pool=host.settings.subnets,
                                labels={engine.LABEL: str(host.settings.home), "minipaas.app": app})


def web_port(image: str) -> int:
    """The port the app listens on: the one its image EXPOSEs (Dockerfile apps), else $PORT's default."""
    exposed = engine.exposed_ports(image)
    return exposed[0] if exposed else health.WEB_PORT


def container_port(container: engine.Container) -> int:
    return int(container.labels.get("minipaas.port", health.WEB_PORT))


def checks_for(host: Host, app: str, sha: str) -> health.Checks:
    """The commit's CHECKS file if it has one, else the app's health-check path."""
    text = gitrepo.read_file(host.settings.repo_path(app), sha, "CHECKS")
    if text is not None:
        return health.parse_checks(text.decode("utf-8", errors="replace"))
    return health.default_checks(apps.get_setting(host, app, "healthcheck-path"))


def wait_healthy(host: Host, app: str, container: engine.Container, sha: str,
                 progress: Progress) -> tuple[str, float]:
    """Health-check a container with the app's checks; returns (its address, seconds taken).

    app.json's `healthchecks.web` (dokku's form) first, then a CHECKS file, then the app's setting."""
    timeout = int(apps.get_setting(host, app, "healthcheck-timeout"))
    raw = gitrepo.read_file(host.settings.repo_path(app), sha, "app.json")
    from_app_json = appjson.parse(raw) if raw is not None else None
    if from_app_json is not None and from_app_json.run:
        names = ", ".join(f"{c.name} ({c.describe()})" for c in from_app_json.run)
        progress(f"-----> Waiting for {container.name} to pass app.json's {names} (timeout {timeout}s)")
        return health.wait_app_json(container.id, network=host.settings.app_network(app),
                                    port=container_port(container),
                                    healthchecks=from_app_json, timeout=timeout, progress=progress)
    checks = checks_for(host, app, sha)
    what = " and ".join(c.describe() for c in checks.checks)
    progress(f"-----> Waiting for {container.name} to answer {what} (timeout {timeout}s)")
    return health.wait_healthy(container.id, network=host.settings.app_network(app), port=container_port(container),
                               checks=checks, timeout=timeout, progress=progress)


def _port_suffix(host: Host) -> str:
    return "" if host.settings.http_port == 80 else f":{host.settings.http_port}"


def _running(host: Host, app: str, number: int) -> bool:
    return any(c.status == "running" and c.labels.get("minipaas.release") == str(number)
               for c in web_containers(host, app))


def _record_pending(host: Host, app: str, *, kind: str, sha: str, image: str, buildpack: str,
                    env: dict[str, str]) -> int:
    with store.transaction(host.db) as db:
        number = db.execute("SELECT COALESCE(MAX(number), 0) + 1 FROM releases WHERE app = ?",
                            (app,)).fetchone()[0]
        db.execute(
            "INSERT INTO releases (app, number, kind, sha, image, buildpack, status, config_json, pusher,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?)",
            (app, number, kind, sha, image, buildpack, json.dumps(env), pusher(), store.now()))
    return int(number)


_UPDATABLE = frozenset({"image", "buildpack", "build_log", "status", "message", "finished_at", "serving"})


def _update(host: Host, app: str, number: int, **fields: object) -> None:
    unknown = set(fields) - _UPDATABLE
    if unknown:
        raise ValueError(f"not a release column: {unknown}")
    # Column names come from the fixed set above; values are bound parameters.
    assignments = ", ".join(f"{key} = ?" for key in fields)
    with store.transaction(host.db) as db:
        db.execute(f"UPDATE releases SET {assignments} WHERE app = ? AND number = ?",  # noqa: S608
                   (*fields.values(), app, number))


def _record_live(host: Host, app: str, number: int, *, retiring: list[str], drain: int) -> None:
    with store.transaction(host.db) as db:
        db.execute("UPDATE releases SET status = 'superseded' WHERE app = ? AND status = 'live'", (app,))
        db.execute("UPDATE releases SET status = 'live', finished_at = ? WHERE app = ? AND number = ?",
                   (store.now(), app, number))
        _schedule_retirement(db, app, retiring, drain)


def _schedule_retirement(db: sqlite3.Connection, app: str, containers: list[str], drain: int) -> None:
    for container in containers:
        # OR IGNORE: a container already draining keeps its deadline; a burst of deploys must not defer it.
        db.execute("INSERT OR IGNORE INTO retirements (container, app, not_before) VALUES (?, ?, ?)",
                   (container, app, store.now() + drain))


# -- retirement and repair -----------------------------------------------------------------

def _spawn_retirer(host: Host, app: str) -> None:
    """Retire old containers after their drain delay without holding up the push."""
    host.settings.logs_dir.mkdir(parents=True, exist_ok=True)
    with open(host.settings.logs_dir / "retire.log", "ab") as log:
        subprocess.Popen(
            [sys.executable, "-m", "minipaas", "retire", app],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
            env={**os.environ, "MINIPAAS_HOME": str(host.settings.home)},
        )


# A retirement this late was left by a retirer that died (a reboot, a kill): the next deploy does it.
ORPHANED_AFTER = 60.0


def retire(host: Host, app: str, *, wait: bool, overdue_by: float = 0.0) -> list[str]:
    """Stop and remove the app's containers whose drain delay is over (waiting for it if `wait`)."""
    done = []
    while True:
        rows = host.db.execute("SELECT container, not_before FROM retirements WHERE app = ? ORDER BY not_before",
                               (app,)).fetchall()
        if not rows:
            return done
        due = [row["container"] for row in rows if row["not_before"] + overdue_by <= store.now()]
        if not due:
            if not wait:
                return done
            time.sleep(max(0.05, rows[0]["not_before"] - store.now()))
            continue
        for container in due:
            engine.remove(container, timeout=10)
            with store.transaction(host.db) as db:
                db.execute("DELETE FROM retirements WHERE container = ?", (container,))
            done.append(container)


def _reconcile(host: Host, app: str) -> None:
    """Repair what a crashed deploy may have left: overdue retirements, stray containers.

    Runs under the app's lock, so no other deploy of this app is creating containers now.
    """
    # Only what no background retirer is handling any more: a deploy never waits on a slow SIGTERM.
    retire(host, app, wait=False, overdue_by=ORPHANED_AFTER)
    current = live(host, app)
    pending = _retiring(host, app)
    for container in app_containers(host, app):
        is_live = current is not None and container.labels.get("minipaas.release") == str(current.number)
        if not is_live and container.id not in pending:
            engine.remove(container.id, timeout=0)
    with store.transaction(host.db) as db:
        db.execute("UPDATE releases SET status = 'failed', message = 'interrupted' "
                   "WHERE app = ? AND status = 'pending'", (app,))


def restore(host: Host, progress: Progress) -> None:
    """Bring every app back to its recorded state (after a reboot or a dockerd restart)."""
    s = host.settings
    proxy.setup(s)
    watcher.ensure_running(s)
    for app in apps.names(host):
        with app_lock(s, app, progress):
            _reconcile(host, app)
            current = live(host, app)
            if current is None:
                continue
            ensure_app_network(host, app)
            if current.serving == "static":
                proxy.write_site(s, app, domains.of(host, app))
                continue
            mine = [c for c in app_containers(host, app) if c.labels.get("minipaas.release") == str(current.number)]
            for c in mine:
                if c.status != "running":
                    engine.start(c.id)
            targets = {wait_healthy(host, app, c, current.sha, progress)[0]: c.id for c in mine
                       if c.labels.get("minipaas.process") == formation.WEB}
            wanted = formation.counts(host, app, formation.procfile(host, app, current.sha))
            if len(targets) < wanted[formation.WEB]:
                progress(f"-----> {app}: containers of release {current.number} are gone; starting new ones")
                _roll_out(host, app, kind="restart", sha=current.sha, image=current.image,
                          buildpack=current.buildpack, progress=progress, env=current.config)
                continue
            if targets:
                proxy.switch(s, app, current.number, targets)
            progress(f"-----> {app}: release {current.number} serving at {', '.join(targets) or 'no web process'}")
