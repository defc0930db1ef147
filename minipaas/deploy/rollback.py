"""Going back: a rollback to an earlier release (its image or site, with its config of that time), and
`settings:set APP static-dir`, which serves the live static build from another folder."""

from __future__ import annotations

import contextlib

from minipaas.adapters import engine
from minipaas.build import builds
from minipaas.deploy import formation, rollout
from minipaas.errors import Conflict, MinipaasError, NotFound
from minipaas.progress import Progress
from minipaas.routing import domains, proxy, sites
from minipaas.state import apps, config, releaselog, store
from minipaas.state.host import Host
from minipaas.state.locks import app_lock
from minipaas.state.releaselog import Kind, Release, Serving, Status


def rollback(host: Host, app: str, target: int | None, progress: Progress) -> Release:
    """Bring back an earlier release's image (or site) and its config of that time, without a build."""
    with app_lock(host.settings, app, progress):
        current = releaselog.live(host, app)
        if current is None:
            raise NotFound(f"{app} has no live release to roll back from")
        if target is None:
            earlier = [r for r in releaselog.listing(host, app)
                       if r.status == Status.SUPERSEDED and r.number < current.number]
            if not earlier:
                raise NotFound(f"{app} has no earlier release that went live")
            target = earlier[0].number
        chosen = releaselog.get(host, app, target)
        if chosen.number == current.number:
            raise Conflict(f"release {target} is the live one already")
        if chosen.status != Status.SUPERSEDED:
            raise Conflict(f"release {target} never went live ({chosen.status}); pick one that did")
        if not _restorable(host, app, chosen):
            raise Conflict(f"release {target} was garbage-collected; the last "
                           f"{apps.get_setting(host, app, 'keep-releases')} can be rolled back")
        progress(f"-----> Rolling {app} back to release {target} ({chosen.sha[:7]}, {chosen.kind})")
        before = config.snapshot(host, app)
        config.replace_all(host, app, chosen.config)
        try:
            if chosen.serving == Serving.STATIC:
                return _roll_back_site(host, app, chosen, progress)
            released = rollout.roll_out(host, app, kind=Kind.ROLLBACK, sha=chosen.sha, image=chosen.image,
                                 buildpack=chosen.buildpack, progress=progress)
        except BaseException:
            config.restore(host, app, before)
            raise
        releaselog.update(host, app, released.number, message=f"rollback to {target}")
        return releaselog.get(host, app, released.number)


def _restorable(host: Host, app: str, release: Release) -> bool:
    if release.serving == Serving.STATIC:
        return (sites.app_dir(host.settings, app) / str(release.number)).is_dir()
    return engine.image_labels(release.image) is not None


def _roll_back_site(host: Host, app: str, chosen: Release, progress: Progress) -> Release:
    number = releaselog.record_pending(host, app, kind=Kind.ROLLBACK, sha=chosen.sha, image=chosen.image,
                             buildpack=chosen.buildpack, env=chosen.config)
    releaselog.update(host, app, number, serving=Serving.STATIC, message=f"rollback to {chosen.number}")
    previous = sites.live_release(host.settings, app)
    live_before = releaselog.live(host, app)
    sites.activate(host.settings, app, chosen.number)
    try:
        # The vhost follows the kind of site: a docs site's responses carry its CSP, a plain one's not.
        proxy.write_site(host, app, domains.of(host, app), static=True,
                         markdown=proxy.serves_markdown(host.settings, chosen.buildpack))
        releaselog.record_live(host, app, number, retiring=[], drain=0)
    except BaseException:
        if previous is not None:
            sites.activate(host.settings, app, previous)
            if live_before is not None:
                with contextlib.suppress(MinipaasError):  # the first failure is the one to report
                    proxy.write_site(host, app, domains.of(host, app), static=True,
                                     markdown=proxy.serves_markdown(host.settings, live_before.buildpack))
        raise
    progress(f"=====> {app} release {number} (= release {chosen.number}) is live")
    return releaselog.get(host, app, number)


def change_static_dir(host: Host, app: str, folder: str, progress: Progress) -> Release | None:
    """`settings:set APP static-dir FOLDER`: checked, stored, and served at once from the live build's image
    when that is a static build holding the folder (a new release of the same commit); else from the next
    push. A folder that cannot be served (no index.html, a symlink) is refused and the setting kept as it was."""
    with app_lock(host.settings, app, progress):
        current = releaselog.live(host, app)
        before = apps.get_setting(host, app, "static-dir")
        apps.set_setting(host, app, "static-dir", folder)  # checks its form: a relative path, no `..`
        try:
            if folder and current is not None:
                sites.check_static_dir(host.settings, app, current.sha, folder)
            source = builds.inspect(host, app, formation.read(host, app, current.sha)) if current is not None else None
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
    number = releaselog.record_pending(host, app, kind=Kind.SETTINGS, sha=current.sha, image=current.image,
                             buildpack=current.buildpack, env=current.config)
    releaselog.update(host, app, number, serving=Serving.STATIC,
                      message=f"static-dir {folder or '(found by the build)'}")
    previous = sites.live_release(s, app)
    try:
        sites.prepare(host, app, number, current.sha, source.pack, site_dir=folder, image=current.image,
                      progress=progress, outputs=source.preset.output if source.preset else ())
        sites.activate(s, app, number)
        releaselog.record_live(host, app, number, retiring=[], drain=0)
    except BaseException as exc:
        if previous is not None and sites.live_release(s, app) != previous:
            sites.activate(s, app, previous)
        message = exc.message if isinstance(exc, MinipaasError) else f"interrupted ({type(exc).__name__})"
        releaselog.update(host, app, number, status=Status.FAILED, message=message, finished_at=store.now())
        raise
    progress(f"=====> {app} release {number} (release {current.number}'s build) is live")
    return releaselog.get(host, app, number)
