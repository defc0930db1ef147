"""Locks: two deploys of one app never overlap, nor two BuildKit builds on one host; the waiting one says so.

Where they live: every lock file is in a folder that is this account's alone (root's: 0700, not a
symlink, checked before each lock is opened, one line when it is not): an instance's locks in its own
`locks/`, the few that every instance on the host shares (the BuildKit build, base images, a shared
authorized_keys) in HOST_LOCKS (the Debian root filesystem's beside it, in the host's cache folder, which
is root's alone too). No other local account can create, replace, symlink, open or so hold
a lock file there: none can make a push wait (before, `/run/lock` was everyone's), nor make root
create or truncate a file elsewhere through a symlink.

How they are opened: by filelock (>= 4.2.1), which opens a lock file O_NOFOLLOW, never truncates it, and
(as every descriptor Python opens) O_CLOEXEC; `open_file` does the same for the shared locks of base
images (stacks.py), which filelock does not offer. A symlink where a lock should be is one line.
"""

from __future__ import annotations

import errno
import fcntl
import os
import pwd
import stat
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING

from minipaas.errors import Conflict
from minipaas.state.settings import Settings

if TYPE_CHECKING:
    from filelock import FileLock

WAIT_LIMIT = 30 * 60  # a build may be long; beyond this something is stuck
# root's folder for what every minipaas home and instance on the host shares (a tmpfs: nothing in it
# outlives a boot, as no lock needs to).
HOST_LOCKS = Path("/run/minipaas")
# BuildKit runs every build's steps in one cgroup of the engine, limited to the building app's limits:
# one build at a time on the whole host (every minipaas home on it), hence a host lock.
HOST_BUILD_LOCK = "buildkit.lock"
HOST_BUILD_WAIT_LIMIT = 2 * 60 * 60  # several apps' builds may be queued, each up to its build-timeout
# The instance's own locks that are not an app's: a dot keeps them apart from `<app>.lock` (no app
# name has one), so an app named `proxy` does not share the nginx writers' lock.
INSTANCE_LOCKS = ("nginx.proxy", "nginx.routes", "acme.orders")
FILE_MODE = 0o600


def host_locks() -> Path:
    """The folder of the host's shared locks: root's /run/minipaas; without root (a developer's laptop)
    one of the account's own in the temp folder, which only that account's minipaas shares."""
    if os.geteuid() == 0:
        return HOST_LOCKS
    return Path(tempfile.gettempdir()) / f"minipaas-{os.geteuid()}-locks"


def host_lock(name: str) -> Path:
    return host_locks() / name


def app_lock_path(settings: Settings, app: str) -> Path:
    return settings.locks_dir / f"{app}.lock"


def instance_lock(settings: Settings, name: str) -> Path:
    """One of INSTANCE_LOCKS of this instance (`nginx.proxy`: one writer of nginx's files)."""
    if name not in INSTANCE_LOCKS:
        raise ValueError(f"unknown instance lock {name}")
    return settings.locks_dir / f"{name}.lock"


def build_context_lock(settings: Settings, app: str, kind: str) -> Path:
    """One build of an app at a time uses its context folder of `kind` (buildcontext.py)."""
    return settings.locks_dir / f"{app}.context-{kind}.lock"


def retirer_lock(settings: Settings, app: str) -> Path:
    """Held (shared) by each background retirer of the app while it runs: held by none, none runs."""
    return settings.locks_dir / f"{app}.retirer.lock"


def remove_app_locks(settings: Settings, app: str) -> None:
    """The lock files of a destroyed app (its own, its retirers' and its build contexts'); nobody holds them then."""
    for path in (app_lock_path(settings, app), retirer_lock(settings, app),
                 *settings.locks_dir.glob(f"{app}.context-*.lock")):
        path.unlink(missing_ok=True)


def private_folder(folder: Path) -> Path:
    """`folder`, made 0700 when missing, and checked to be a real folder of this account alone."""
    try:
        try:
            info = folder.lstat()
        except FileNotFoundError:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            info = folder.lstat()
    except OSError as exc:
        raise Conflict(f"cannot make the lock folder {folder}: {exc.strerror or exc}") from None
    if not stat.S_ISDIR(info.st_mode):
        raise Conflict(f"{folder} must be a folder for minipaas' locks, not a symlink or a file: remove it")
    if info.st_uid != os.geteuid() or info.st_mode & 0o077:
        raise Conflict(f"the lock folder {folder} must be {_account(os.geteuid())}'s alone (mode 0700), not "
                       f"{_account(info.st_uid)}'s with mode {stat.S_IMODE(info.st_mode):04o}: remove it "
                       "(minipaas makes it again)")
    return folder


def _account(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def _unopenable(path: Path, exc: OSError) -> Conflict:
    if exc.errno == errno.ELOOP:
        return Conflict(f"{path} is a symlink, not a lock file: remove it")
    return Conflict(f"cannot open the lock file {path}: {exc.strerror or exc}")


def _file_lock(path: Path) -> FileLock:
    from filelock import FileLock  # 40-90 ms to import: only by a process that takes a lock

    private_folder(path.parent)
    # A plain flock: no soft-lock fallback (marker files), the file kept for the next holder.
    return FileLock(path, mode=FILE_MODE, fallback_to_soft=False, preserve_lock_file=True)


def _try(lock: FileLock, path: Path) -> bool:
    from filelock import Timeout

    try:
        lock.acquire(blocking=False)
    except Timeout:
        return False
    except OSError as exc:
        raise _unopenable(path, exc) from None
    return True


@contextmanager
def _holding(lock: FileLock) -> Iterator[None]:
    try:
        yield
    finally:
        lock.release()


@contextmanager
def held(path: Path, *, progress: Callable[[str], None] | None = None, waiting: str = "") -> Iterator[None]:
    """An exclusive lock on `path`, waited for as long as it takes: for short critical sections (one
    writer of nginx's files, of the routing table, one ACME conversation). With `progress`, a caller that
    has to wait hears `waiting` first."""
    lock = _file_lock(path)
    if not _try(lock, path):
        if progress is not None:
            progress(waiting)
        try:
            lock.acquire()
        except OSError as exc:
            raise _unopenable(path, exc) from None
    with _holding(lock):
        yield


@contextmanager
def waited(path: Path, progress: Callable[[str], None], *, waiting: str, resumed: str | None, limit: float,
           stuck: str, poll: float = 0.1) -> Iterator[None]:
    """An exclusive lock on `path` for locks held through builds: a caller that has to wait hears `waiting`
    (and `resumed` once it has the lock), and gives up with Conflict(`stuck`) after `limit` seconds."""
    from filelock import Timeout

    lock = _file_lock(path)
    if not _try(lock, path):
        progress(waiting)
        try:
            lock.acquire(timeout=limit, poll_interval=poll)
        except Timeout:
            raise Conflict(stuck) from None
        except OSError as exc:
            raise _unopenable(path, exc) from None
        if resumed is not None:
            progress(resumed)
    with _holding(lock):
        yield


@contextmanager
def try_app_lock(settings: Settings, app: str) -> Iterator[bool]:
    """The app's lock if nobody holds it (yields True), else no lock at all (yields False)."""
    path = app_lock_path(settings, app)
    lock = _file_lock(path)
    if not _try(lock, path):
        yield False
        return
    with _holding(lock):
        yield True


@contextmanager
def app_lock(settings: Settings, app: str, progress: Callable[[str], None]) -> Iterator[None]:
    with waited(app_lock_path(settings, app), progress, waiting=f"Waiting for another deploy of {app} to finish...",
                resumed="The other deploy finished; going on.", limit=WAIT_LIMIT,
                stuck=f"another deploy of {app} has held its lock for {WAIT_LIMIT // 60} minutes"):
        yield


@contextmanager
def retiring(settings: Settings, app: str) -> Iterator[None]:
    """Held by a retirer of the app for its whole run (several may run at once: a shared flock). The kernel lets
    go of it when the retirer dies however it dies, which is how `retirer_runs` tells a dead one."""
    with open_file(retirer_lock(settings, app)) as handle:
        fcntl.flock(handle, fcntl.LOCK_SH)
        yield


def retirer_runs(settings: Settings, app: str) -> bool:
    """Whether a retirer of the app runs now (holds its lock)."""
    with open_file(retirer_lock(settings, app)) as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        return False  # closing the file lets go of the lock


@contextmanager
def host_build_lock(progress: Callable[[str], None], path: Path | None = None) -> Iterator[None]:
    """The host's BuildKit build lock (see HOST_BUILD_LOCK)."""
    path = path or host_lock(HOST_BUILD_LOCK)
    with waited(path, progress, waiting="Waiting for another app's build to finish...",
                resumed="The other build finished; going on.", limit=HOST_BUILD_WAIT_LIMIT,
                stuck=f"another build has held the host's build lock ({path}) for "
                      f"{HOST_BUILD_WAIT_LIMIT // 60} minutes"):
        yield


@contextmanager
def open_file(path: Path) -> Iterator[IO[bytes]]:
    """The lock file at `path` opened as filelock would (created 0600 in a checked folder, O_NOFOLLOW, never
    truncated, O_CLOEXEC), for a caller that takes shared and exclusive flocks on it itself."""
    private_folder(path.parent)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE)
    except OSError as exc:
        raise _unopenable(path, exc) from None
    with os.fdopen(fd, "rb+", buffering=0) as handle:
        yield handle
