"""Per-app deploy locks: two deploys of one app never overlap; the waiting one says so."""

from __future__ import annotations

import fcntl
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from minipaas.errors import Conflict
from minipaas.settings import Settings

WAIT_LIMIT = 30 * 60  # a build may be long; beyond this something is stuck


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
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress(f"Waiting for another deploy of {app} to finish...")
            deadline = time.monotonic() + WAIT_LIMIT
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise Conflict(f"another deploy of {app} has held its lock for "
                                       f"{WAIT_LIMIT // 60} minutes") from None
                    time.sleep(0.1)
            progress("The other deploy finished; going on.")
        yield
