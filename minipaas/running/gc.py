"""Garbage collection: what old releases leave on disk, removed by a retention rule; and first (the `gc` command's,
not the one after each deploy) the review apps that outlived their branch (deploy/reviewexpiry.py).

The last `keep-releases` (default 5) releases that went live stay instantly rollback-able (their
images and site directories are kept); older release images, exited containers, dangling images and
older site directories go. The image of a container that stays is never removed; the image of one that retires
(after its drain delay) goes once it has: the background gc that follows each retirement removes it, and `gc` and
`gc --dry-run` name it meanwhile ("when its container retires"), so that a dry run names what the gcs remove.
One gc of the instance runs at a time (`locks.gc_turn`); an app being deployed is skipped, and said.

Base images (`minipaas/node:<version>`) go when no image on the engine is built on them any more,
whichever home it belongs to: `gc` looks at all of them, `gc APP` (and the one after each deploy) at
those the app's removed images were built on. The newest local version of the host's default major
stays, so that a new app's first push does not build it again.

In a cluster (docs/cluster-design.md) the same rules hold for the registry: the releases whose images go here go from
the registry too (cluster/registrygc.py: their manifests by the API), a release a Swarm service runs counts as
running, and a whole `gc` (not `gc APP`, not the one after a deploy: it restarts the registry read-only for a
moment) then has the registry free the blobs no manifest references.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from minipaas.adapters import engine
from minipaas.adapters.engine.labels import TASK_LABEL
from minipaas.build import buildkit, cacheclear, dockerfiles, stacks
from minipaas.cluster import membership, registrygc, releases
from minipaas.deploy import containers, reviewexpiry
from minipaas.routing import sites
from minipaas.running import diskreport
from minipaas.state import apps, cachemounts, releaselog
from minipaas.state.host import Host
from minipaas.state.locks import gc_turn, try_app_lock
from minipaas.state.releaselog import Status

# A pin lives as long as its build (build-timeout is at most an hour); an older one is a killed build's.
PIN_LIFETIME = 2 * 60 * 60


@dataclass
class Freed:
    items: list[str] = field(default_factory=list)
    bytes: int = 0
    # What goes once the containers holding it have retired (after their drain delay): the background gc that
    # follows their retirement removes it, and a dry run names it, so that it names what the gcs remove.
    later: list[str] = field(default_factory=list)

    def add(self, what: str, size: int) -> None:
        self.items.append(what)
        self.bytes += size


class Sizes:
    """The images' unique sizes (engine.unique_image_sizes: the engine's disk usage, which costs it work that grows
    with every container, volume and build cache record it has), asked once, and only when an image is to go: the
    gc after a deploy that removes nothing (a static site's, an app's first releases) costs the engine nothing."""

    def __init__(self, host: Host) -> None:
        self._sizes: dict[str, int] | None = None
        self._cache = diskreport.sizes_cache(host)

    def get(self, image: str, default: int) -> int:
        if self._sizes is None:
            self._sizes = engine.unique_image_sizes(self._cache)
        return self._sizes.get(image, default)


def collect(host: Host, *, dry_run: bool, only: str | None = None,
            progress: Callable[[str], None] = lambda _: None, review_apps: bool = False) -> Freed:
    """Remove (or, `dry_run`, name) what the retention rule drops. One gc of the instance at a time, so a dry
    run names what the gc before it left. `review_apps` (the `gc` command's): the review apps that outlived
    their branch go first (deploy/reviewexpiry.py), not in the gc that follows a deploy."""
    with gc_turn(host.settings, progress):
        expired = []
        if review_apps:
            expired = reviewexpiry.expire(host, dry_run=dry_run, progress=progress, only=only)
        freed = _collect(host, dry_run=dry_run, only=only, progress=progress)
        freed.items[:0] = [f"review app {e.name} ({e.why})" for e in expired]
        return freed


def _collect(host: Host, *, dry_run: bool, only: str | None, progress: Callable[[str], None]) -> Freed:
    freed = Freed()
    sizes = Sizes(host)
    removed: dict[str, str] = {}  # release image -> the Node version of its base image ("" if none)
    for app in [only] if only else apps.names(host):
        # Never beside a deploy of the same app: its new container and image exist before they are live. Shared
        # with the cluster's task watcher (its round every second), which never changes what gc looks at.
        with try_app_lock(host.settings, app) as held:
            if not held:
                progress(f"       {app}: a deploy is running; collected next time")
                continue
            _collect_app(host, app, dry_run=dry_run, freed=freed, sizes=sizes, removed=removed, progress=progress)
    if only is None:
        _collect_build_leftovers(host, dry_run=dry_run, freed=freed, progress=progress)
    _collect_stacks(host, dry_run=dry_run, freed=freed, sizes=sizes, removed=removed,
                    only=set(removed.values()) if only else None)
    if only is None and not dry_run and membership.registry_address(host.settings):
        _sweep_registry(host, freed, progress)
    for item in freed.items:
        progress(f"       {'would remove' if dry_run else 'removed'} {item}")
    for item in freed.later:
        progress(f"       would remove {item} (when its container retires)" if dry_run else
                 f"       will remove {item} when its container retires")
    later = f", {len(freed.later)} more when their containers retire" if freed.later else ""
    verb = "would free" if dry_run else "freed"
    progress(f"-----> gc {verb} {_human(freed.bytes)} ({len(freed.items)} items{later})")
    return freed


def _collect_app(host: Host, app: str, *, dry_run: bool, freed: Freed, sizes: Sizes,
                 removed: dict[str, str], progress: Callable[[str], None]) -> None:
    retention = int(apps.get_setting(host, app, "keep-releases"))
    history = releaselog.listing(host, app)
    went_live = [r for r in history if r.status in (Status.LIVE, Status.SUPERSEDED)]
    keep = {r.number for r in (went_live if retention == 0 else went_live[:retention])}
    kept_images = {r.image for r in history if r.number in keep and r.image}
    retiring = releaselog.retiring(host, app)
    labels = {engine.LABEL: str(host.settings.home), engine.APP_LABEL: app}
    found = engine.containers(labels)
    # Exited containers first, so that the images they held are free: not a retiring one (its retirer removes it),
    # nor one of the live release (stopped with `ps:stop`, or by an engine restart: `ps:restore` starts it again).
    live = next((str(r.number) for r in history if r.status == Status.LIVE), None)
    exited = [c for c in found if c.status in ("exited", "dead") and c.id not in retiring
              and c.labels.get(engine.RELEASE_LABEL) != live
              and c.labels.get(engine.PROCESS_LABEL) not in (None, "run", "cron")
              and TASK_LABEL not in c.labels]  # a task's container is the Swarm's
    for container in exited:
        if not dry_run:
            engine.remove(container.id, timeout=0)
        freed.add(f"container {container.name}", 0)
    gone = {c.id for c in exited}
    # (A Swarm task's container counts by its service, below: the Swarm keeps stopped tasks' ones for a while.)
    holding = [c for c in found if c.id not in gone and TASK_LABEL not in c.labels]
    # The image of a container that stays is in use; one whose containers all retire goes after them.
    in_use = {c.labels.get(engine.RELEASE_LABEL) for c in holding if c.id not in retiring}
    draining = {c.labels.get(engine.RELEASE_LABEL) for c in holding if c.id in retiring}
    clustered = membership.registry_address(host.settings) is not None
    if clustered:  # a release a service runs (a retiring one, a stopped one's) is in use as its containers are
        in_use |= {str(releases.release_of(name)) for name in releases.app_services(host.settings, app)}
    dropped = []
    for rel in history:
        image = rel.image
        if not image or image in kept_images or str(rel.number) in in_use:
            continue
        if image != host.settings.image_tag(app, rel.number, rel.sha):
            continue  # config and rollback releases reuse another release's image
        image_labels = engine.image_labels(image)
        if str(rel.number) in draining:
            if image_labels is not None:
                freed.later.append(f"image {image}")
            continue
        dropped.append(image)  # from the cluster's registry too, also when the engine here has it no more
        if image_labels is None:
            continue
        size = sizes.get(image, 0)  # before it goes: what it held alone
        if dry_run or engine.remove_image(image, owner=str(host.settings.home)):
            freed.add(f"image {image}", size)
            removed[image] = image_labels.get(stacks.VERSION_LABEL, "")
    if clustered and not dry_run:
        for name in registrygc.forget(host.settings, dropped, progress):
            freed.add(f"manifest {name} in the cluster's registry", 0)
    for number, size in sites.prune(host.settings, app, keep, dry_run=dry_run):
        freed.add(f"site directory {app}/{number}", size)
    if not dry_run:
        freed.bytes += engine.prune_dangling(labels)  # the legacy builder's stage images are tagged: kept
        # An app without containers holds no network of the shared pool (its last container retired: a
        # container app became a static site, a scale to 0; one an older minipaas made for a static site).
        if containers.drop_network_if_unused(host, app):
            progress(f"       removed the network of {app} (it has no container)")


def _collect_build_leftovers(host: Host, *, dry_run: bool, freed: Freed, progress: Callable[[str], None]) -> None:
    """What builds leave when they do not get to their end: the build caches of apps destroyed before they were
    emptied, and image pins of builds killed before they untagged them (older than any build may take)."""
    for life, app in cachemounts.forgotten(host).items():
        if dry_run or cacheclear.empty_life(host, life, app, progress):
            freed.add(f"build caches of {app} (destroyed)", 0)
    for tag in engine.tags_matching(f"{host.settings.instance}/{dockerfiles.PIN_PREFIX}*"):
        if dockerfiles.is_leftover_pin(tag.rpartition(":")[0], older_than=PIN_LIFETIME) and \
                (dry_run or engine.remove_image(tag)):
            freed.add(f"tag {tag} (a build's pin)", 0)
    # A TemporaryDirectory does not outlive SIGKILL: a killed build's folder stays (any home's: they are alike).
    for folder in Path(tempfile.gettempdir()).glob(f"{buildkit.TMP_PREFIX}*"):
        with contextlib.suppress(OSError):
            if folder.is_dir() and not folder.is_symlink() and \
                    time.time() - folder.stat().st_mtime > PIN_LIFETIME:
                if not dry_run:
                    shutil.rmtree(folder)
                freed.add(f"{folder} (a killed build's folder)", 0)


def _collect_stacks(host: Host, *, dry_run: bool, freed: Freed, sizes: Sizes, removed: dict[str, str],
                    only: set[str] | None) -> None:
    """Base images no image is built on any more (those `removed` are counted as gone already)."""
    have = stacks.local()
    default = [s.version for s in have.values() if s.major == host.settings.node_major][-1:]
    used = stacks.users()
    for version, stack in have.items():
        if (only is not None and version not in only) or version in default:
            continue
        if any(user.tag not in removed for user in used.get(version, [])):
            continue
        size = sizes.get(stack.tag, stack.size)
        if dry_run or stacks.remove(version):
            freed.add(f"base image {stack.tag} (no release is built on it)", size)
    if not dry_run:
        freed.bytes += engine.prune_dangling({engine.LABEL: "stack"})  # base images a rebuild replaced


def _sweep_registry(host: Host, freed: Freed, progress: Callable[[str], None]) -> None:
    """The registry's blob collection, with every app's lock held: no deploy pushes meanwhile (a push would be
    refused by the read-only registry); skipped, and said, while one runs."""
    with contextlib.ExitStack() as stack:
        for app in apps.names(host):
            if not stack.enter_context(try_app_lock(host.settings, app)):
                progress(f"       {app}: a deploy is running; the registry's blobs are collected next time")
                return
        size = registrygc.sweep(host.settings, progress)
        freed.add("unreferenced blobs in the cluster's registry", size)


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"
