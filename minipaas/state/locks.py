"""Locks: two deploys of one app never overlap, nor two BuildKit builds on one host; the waiting one says so."""

from __future__ import annotations

import fcntl
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from minipaas.errors import Conflict
from minipaas.state.settings import Settings

WAIT_LIMIT = 30 * 60  # a build may be long; beyond this something is stuck
# BuildKit runs every build's steps in one cgroup of the engine, limited to the building app's limits:
# one build at a time on the whole host (every minipaas home on it), hence a lock outside any home.
HOST_BUILD_LOCK = Path("/run/lock/minipaas-buildkit.lock")
HOST_BUILD_WAIT_LIMIT = 2 * 60 * 60  # several apps' builds may be queued, each up to its build-timeout


@contextmanager
def held(path: Path, *, progress: Callable[[str], None] | None = None, waiting: str = "") -> Iterator[None]:
    """An exclusive lock on `path` (its folder made if missing), waited for as long as it takes: for short
    critical sections (one writer of nginx's files, of the routing table, one ACME conversation). With
    `progress`, a caller that has to wait hears `waiting` first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        if progress is not None:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                progress(waiting)
                fcntl.flock(handle, fcntl.LOCK_EX)
        else:
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


@contextmanager
def try_app_lock(settings: Settings, app: str) -> Iterator[bool]:
    """The app's lock if nobody holds it (yields True), else no lock at all (yields False)."""
    settings.locks_dir.mkdir(parents=True, exist_ok=True)
    with open(settings.locks_dir / f"{app}.lock", "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True


@contextmanager
def app_lock(settings: Settings, app: str, progress: Callable[[str], None]) -> Iterator[None]:
    settings.locks_dir.mkdir(parents=True, exist_ok=True)
    with open(settings.locks_dir / f"{app}.lock", "a+") as handle:
        acquire(handle, progress, waiting=f"Waiting for another deploy of {app} to finish...",
                 resumed="The other deploy finished; going on.", limit=WAIT_LIMIT,
                 stuck=f"another deploy of {app} has held its lock for {WAIT_LIMIT // 60} minutes")
        yield


@contextmanager
def host_build_lock(progress: Callable[[str], None], path: Path = HOST_BUILD_LOCK) -> Iterator[None]:
    """The host's BuildKit build lock (see HOST_BUILD_LOCK)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        acquire(handle, progress, waiting="Waiting for another app's build to finish...",
                 resumed="The other build finished; going on.", limit=HOST_BUILD_WAIT_LIMIT,
                 stuck=f"another build has held the host's build lock ({path}) for "
                       f"{HOST_BUILD_WAIT_LIMIT // 60} minutes")
        yield


def acquire(handle: IO[str], progress: Callable[[str], None], *, waiting: str, resumed: str | None, limit: float,
            stuck: str, poll: float = 0.1) -> None:
    """Lock an open file exclusively; a caller that has to wait hears `waiting` (and `resumed` once it has
    the lock), and gives up with Conflict(`stuck`) after `limit` seconds: for locks held through builds."""
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return
    except BlockingIOError:
        progress(waiting)
    deadline = time.monotonic() + limit
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise Conflict(stuck) from None
            time.sleep(poll)
    if resumed is not None:
        progress(resumed)
