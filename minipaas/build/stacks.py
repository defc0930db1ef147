"""Stacks: the Node.js base images `minipaas/node:<exact version>` that app images are built on.

This module owns those images on the engine: which exist (`local`), which one an app gets
(`resolve`: nodeversions.py against the npm registry's list of releases), making a missing one in
the push that first needs it (`holding`; the making itself is stackbuild.py), `stack:build`, which
images use which base image (`users`), and removing an unused one (`remove`, for gc). A
`minipaas/node:<MAJOR>` tag follows the newest local version of each major, for apps' own
Dockerfiles (`FROM minipaas/node:26`).

Base images are shared by every minipaas home and instance on the engine, and so are their locks
(`node-<version>.lock` of the host's, state/locks.py): a push holds its version's lock shared from the moment it
has the image until its build is over; making the image, and gc removing it, hold it exclusively.
Which images use a base image is the engine's to say: images built from one inherit its
`minipaas.node.version` label (and buildpack builds write it again), whichever home they belong to.
"""

from __future__ import annotations

import contextlib
import fcntl
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import IO, Any

from semantic_version import Version

from minipaas.adapters import engine
from minipaas.build import rootfs
from minipaas.errors import Conflict
from minipaas.progress import Progress
from minipaas.source import nodeversions
from minipaas.source.nodeversions import Catalog, CatalogSource, CatalogUnavailable, Wanted, is_release
from minipaas.state import locks
from minipaas.state.settings import Settings

REPOSITORY = nodeversions.REPOSITORY
VERSION_LABEL = nodeversions.VERSION_LABEL
WAIT_LIMIT = 60 * 60  # another push's build of the same base image; beyond this something is stuck
_POLL = 0.2


def image_tag(version: str | int) -> str:
    return f"{REPOSITORY}:{version}"


@dataclass(frozen=True)
class Stack:
    """A local base image."""

    version: str
    image_id: str
    tags: tuple[str, ...]  # minipaas/node:20.17.0, and minipaas/node:20 when it is the newest 20.x
    size: int

    @property
    def tag(self) -> str:
        return image_tag(self.version)

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])


@dataclass(frozen=True)
class User:
    """An image built on a base image."""

    home: str  # the minipaas home it belongs to ("" when not minipaas')
    app: str
    release: str
    tag: str


# -- what is there -------------------------------------------------------------------------


def local() -> dict[str, Stack]:
    """Local base images by exact version, oldest version first."""
    found: dict[str, Stack] = {}
    for image in engine.list_images(REPOSITORY):  # newest first
        stack = _stack(image)
        if stack is None or (stack.version in found and found[stack.version].tag in found[stack.version].tags):
            continue  # the image carrying the exact tag wins over an older one of the same version
        found[stack.version] = stack
    return dict(sorted(found.items(), key=lambda item: Version(item[0])))


def find(version: str) -> Stack | None:
    """The local base image of an exact version: one look-up by its tag on a push's path (listing every
    image costs the engine a tenth of a second), the whole list only when that tag is missing."""
    stack = _stack(engine.image_info(image_tag(version)) or {})
    return stack if stack is not None and stack.version == version else local().get(version)


def _stack(image: Mapping[str, Any]) -> Stack | None:
    labels = image.get("Labels") or {}
    version = str(labels.get(VERSION_LABEL) or "").strip().lstrip("v")
    tags = tuple(t for t in image.get("RepoTags") or [] if t.startswith(f"{REPOSITORY}:"))
    if labels.get(engine.LABEL) != "stack" or not is_release(version) or not tags:
        return None  # not one of ours (an app's image names its home there), or untagged
    return Stack(version, str(image["Id"]), tags, int(image.get("Size") or 0))


def is_provided(reference: str) -> bool:
    """Whether an image reference names one of minipaas' base images (which any app's build may use)."""
    from docker.utils import parse_repository_tag

    repository, _ = parse_repository_tag(reference)
    if repository != REPOSITORY:
        return False
    labels = engine.image_labels(reference)
    # A base image carries `minipaas=stack` (nothing yet when missing: made before the build); an app's
    # image names its home there.
    return labels is None or labels.get(engine.LABEL, "stack") == "stack"


def users() -> dict[str, list[User]]:
    """Tagged images built on each base image version, of every home and instance on the engine."""
    found: dict[str, list[User]] = defaultdict(list)
    for image in engine.labelled_images(VERSION_LABEL):
        labels = image.get("Labels") or {}
        tags = [t for t in image.get("RepoTags") or [] if t != "<none>:<none>"]
        if labels.get(engine.LABEL) == "stack" or not tags:
            continue  # a base image itself, or a dangling leftover (it keeps no base image)
        version = str(labels.get(VERSION_LABEL) or "").strip().lstrip("v")
        found[version].append(User(labels.get(engine.LABEL, ""), labels.get(engine.APP_LABEL, ""),
                                   labels.get(engine.RELEASE_LABEL, ""), tags[0]))
    return dict(found)


def listing(home: str) -> list[dict[str, object]]:
    """Each local base image (newest first) with the apps of `home` built on it, for stack:list."""
    used = users()
    rows: list[dict[str, object]] = []
    for version, stack in reversed(local().items()):
        mine = used.get(version, [])
        rows.append({
            "image": stack.tag,
            "version": version,
            "also": sorted(t for t in stack.tags if t != stack.tag),
            "size": stack.size,
            "apps": sorted({u.app for u in mine if u.home == home and u.app}),
            "other_apps": len({(u.home, u.app or u.tag) for u in mine if u.home != home}),
        })
    return rows


# -- which version -------------------------------------------------------------------------


def catalog_source(settings: Settings) -> CatalogSource:
    # The registry's client (requests) and the making of images are imported when needed: `report` and `gc`
    # import this module for the names of base images only.
    from minipaas.build import npmregistry

    http = npmregistry.session(settings)
    return CatalogSource(rootfs.cache_folder(settings.host_cache), lambda path: npmregistry.document(http, path),
                         lambda url: npmregistry.fetch_bytes(http, url))


def resolve(settings: Settings, wanted: Wanted) -> str:
    """The exact Node.js release for a request (the newest that satisfies it); StackMissing or
    InvalidInput with one line when none does.

    With neither the npm registry nor its cached list at hand, the local base images stand in for it."""
    try:
        return catalog_source(settings).resolve(wanted)
    except CatalogUnavailable:
        have = local()
        if not have:
            raise
        return nodeversions.resolve(wanted, Catalog(tuple(have)))


# -- having one ----------------------------------------------------------------------------


@contextlib.contextmanager
def for_app(settings: Settings, wanted: Wanted, progress: Progress) -> Iterator[Stack]:
    """The base image for an app's request, made if missing, held until the block ends."""
    version = resolve(settings, wanted)
    progress(f"-----> Using Node.js {version} ({wanted.why()})")
    with holding(settings, version, progress) as stack:
        yield stack


@contextlib.contextmanager
def holding(settings: Settings, version: str, progress: Progress, *,
            reason: str = "first use on this host") -> Iterator[Stack]:
    """The base image of an exact version, made first when missing (one build per version at a time on
    the host: a second push waits for the first one's build, then uses it), held while the block runs
    so that gc leaves it alone."""
    with _version_lock(version) as lock:
        deadline = time.monotonic() + WAIT_LIMIT
        waited = built = False
        while True:
            if _try(lock, fcntl.LOCK_SH):
                stack = find(version)
                if stack is not None:
                    break
                fcntl.flock(lock, fcntl.LOCK_UN)
            if _try(lock, fcntl.LOCK_EX):
                if find(version) is None:
                    _make(settings, version, progress, reason=reason)
                    built = True
                # Converts to shared, though not atomically on Linux: the loop looks for the image again.
                fcntl.flock(lock, fcntl.LOCK_SH)
                continue
            if not waited:
                progress(f"-----> Waiting for another build of the base image {image_tag(version)} to finish...")
                waited = True
            if time.monotonic() > deadline:
                raise Conflict(f"another build of the base image {image_tag(version)} has held its lock for "
                               f"{WAIT_LIMIT // 60} minutes")
            time.sleep(_POLL)
        if waited and not built:
            progress(f"-----> {image_tag(version)} is ready (the other build made it); using it")
        yield _adopt(stack)


@contextlib.contextmanager
def for_dockerfile(settings: Settings, references: Iterable[str], progress: Progress) -> Iterator[None]:
    """The base images an app's own Dockerfile names (`FROM minipaas/node:26`, `:20.17.0`), made when
    missing, held until the block ends. Other tags of minipaas/node are left to the builder."""
    with contextlib.ExitStack() as held:
        for reference in sorted(set(references)):
            repository, _, tag = reference.rpartition(":")
            if repository != REPOSITORY:
                continue
            labels = engine.image_labels(reference)
            if labels is not None and labels.get(engine.LABEL) == "stack":
                version = str(labels.get(VERSION_LABEL) or "")
            elif is_release(tag):
                version = tag
            elif tag.isdigit():
                version = resolve(settings, Wanted(tag, "the Dockerfile's FROM"))
            else:
                continue
            if is_release(version):
                held.enter_context(holding(settings, version, progress))
        yield


def build(settings: Settings, text: str | None, progress: Progress, *, force: bool = False) -> str:
    """`stack:build`: the base image for a version or range (default: the host's default major)."""
    wanted = Wanted(text.strip(), "--node") if text and text.strip() else Wanted(str(settings.node_major), "default")
    version = resolve(settings, wanted)
    progress(f"-----> Node.js {version} ({wanted.why()})")
    if not force:
        there = find(version)
        with holding(settings, version, progress, reason="for stack:build") as stack:
            if there is not None:
                progress(f"-----> {stack.tag} is already there ({stack.size / 1e6:.0f} MB)")
        return image_tag(version)
    with _version_lock(version) as lock:
        if not _try(lock, fcntl.LOCK_EX):
            progress(f"-----> Waiting for the builds using {image_tag(version)} to finish...")
            _wait(lock, fcntl.LOCK_EX, f"the base image {image_tag(version)} has been in use for an hour")
        old = find(version)
        _make(settings, version, progress, reason="rebuilt by stack:build --force")
    if old is not None and not engine.remove_image(old.image_id):
        progress(f"       the previous {old.tag} ({old.image_id[7:19]}) is still used; gc removes it later")
    return image_tag(version)


def _make(settings: Settings, version: str, progress: Progress, *, reason: str) -> None:
    tag = image_tag(version)
    progress(f"-----> Building base image {tag} (Node {version}, {reason})")
    started = time.monotonic()
    from minipaas.build import stackbuild  # see catalog_source

    stackbuild.make(settings, version, progress)
    retag_major(int(version.split(".")[0]))
    progress(f"       {tag} ready in {time.monotonic() - started:.0f}s; later builds reuse it")


def _adopt(stack: Stack) -> Stack:
    """Give an image its exact-version tag when it has only a major one (made by earlier versions)."""
    if stack.tag in stack.tags:
        return stack
    engine.tag_image(stack.image_id, REPOSITORY, stack.version)
    return Stack(stack.version, stack.image_id, (*stack.tags, stack.tag), stack.size)


def retag_major(major: int) -> None:
    """Point `minipaas/node:<major>` at the newest local version of that major (if any)."""
    with _tags_lock():
        newest = [s for s in local().values() if s.major == major]
        if not newest or image_tag(major) in newest[-1].tags:
            return
        holder = engine.image_labels(image_tag(major))
        if holder is not None and holder.get(engine.LABEL) != "stack":
            return  # never move a tag that is not a base image's
        engine.tag_image(newest[-1].image_id, REPOSITORY, str(major))


def remove(version: str) -> bool:
    """Remove an unused base image with its tags; False when a build holds it or an image uses it by now."""
    with _version_lock(version) as lock:
        if not _try(lock, fcntl.LOCK_EX):
            return False
        with _tags_lock():
            stack = find(version)
            if stack is None or users().get(version):
                return False
            removed = all([engine.remove_image(tag) for tag in stack.tags])
    retag_major(stack.major)
    return removed


# -- locks ---------------------------------------------------------------------------------


@contextlib.contextmanager
def _version_lock(version: str) -> Iterator[IO[bytes]]:
    # the engine's images are the host's: so are their locks, whatever the home
    with locks.open_file(locks.host_lock(f"node-{version}.lock")) as handle:
        yield handle


@contextlib.contextmanager
def _tags_lock() -> Iterator[None]:
    """Moving and removing tags of minipaas/node, one process at a time (held briefly)."""
    with locks.open_file(locks.host_lock("node-tags.lock")) as handle:
        _wait(handle, fcntl.LOCK_EX, "the lock on minipaas/node's tags has been held for an hour")
        yield


def _try(handle: IO[bytes], mode: int) -> bool:
    try:
        fcntl.flock(handle, mode | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _wait(handle: IO[bytes], mode: int, stuck: str) -> None:
    deadline = time.monotonic() + WAIT_LIMIT
    while not _try(handle, mode):
        if time.monotonic() > deadline:
            raise Conflict(stuck)
        time.sleep(_POLL)
