"""Locks: two deploys of one app never overlap, nor two pushes to its repository, nor two gcs, nor two BuildKit
builds on one host; the waiting one says so.

An app's lock (`<app>.lock`) is taken exclusively by what changes what runs (a deploy, a scale, a restore) and
shared by what only needs no deploy beside it (gc, the cluster's task watcher, a one-off's cleanup): those
never hold each other up, nor pass for a deploy (gc used to say "a deploy is running" and skip the app when it
met the watcher's round or the background gc). A push's turn (`<app>.push.lock`) lasts until git has updated the refs
the hook accepted: the hook hands it to a small process that waits for git's receive-pack to end, so the
next push of the repository sees the refs as the last one left them (`PushTurn`).

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
import subprocess
import sys
import tempfile
import time
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
INSTANCE_LOCKS = ("nginx.proxy", "nginx.routes", "acme.orders", "gc.collect", "drains.shipper")
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


def push_lock_path(settings: Settings, app: str) -> Path:
    """One push of an app's repository at a time, from its hook's start until git updated the refs."""
    return settings.locks_dir / f"{app}.push.lock"


def build_context_lock(settings: Settings, app: str, kind: str) -> Path:
    """One build of an app at a time uses its context folder of `kind` (buildcontext.py)."""
    return settings.locks_dir / f"{app}.context-{kind}.lock"


def retirer_lock(settings: Settings, app: str) -> Path:
    """Held (shared) by each background retirer of the app while it runs: held by none, none runs."""
    return settings.locks_dir / f"{app}.retirer.lock"


def remove_app_locks(settings: Settings, app: str) -> None:
    """The lock files of a destroyed app (its own, its push turn's, its retirers' and its build contexts');
    nobody holds them then."""
    for path in (app_lock_path(settings, app), push_lock_path(settings, app), retirer_lock(settings, app),
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
    """The app's lock shared, if no deploy holds it (yields True), else no lock at all (yields False).

    For what must not run beside a deploy but may run beside each other (gc, the task watcher's round, a
    one-off's cleanup): shared, they never make each other think a deploy is running. A deploy (`app_lock`,
    exclusive) waits until they are done."""
    with open_file(app_lock_path(settings, app)) as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def app_lock(settings: Settings, app: str, progress: Callable[[str], None]) -> Iterator[None]:
    with waited(app_lock_path(settings, app), progress, waiting=f"Waiting for another deploy of {app} to finish...",
                resumed="The other deploy finished; going on.", limit=WAIT_LIMIT,
                stuck=f"another deploy of {app} has held its lock for {WAIT_LIMIT // 60} minutes"):
        yield


# How long a handed-over push turn waits at most for git (it updates the refs and reports in milliseconds).
KEEP_LIMIT = 600.0
# The keeper: holds the inherited lock until the process ends (a pidfd becomes readable), then exits.
_KEEPER = """import os, select, sys, time
pid, limit = int(sys.argv[1]), float(sys.argv[2])
try:
    fd = os.pidfd_open(pid)
except ProcessLookupError:
    sys.exit(0)
except OSError:
    end = time.monotonic() + limit
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < end:
        time.sleep(0.02)
    sys.exit(0)
select.select([fd], [], [], limit)
"""


class PushTurn:
    """A push's turn at its app's repository (`push_turn`). The hook exits before git updates the refs it
    accepted: `keep_until_gone` keeps the turn past the hook's exit, until git's process has ended."""

    def __init__(self, handle: IO[bytes]) -> None:
        self._handle = handle
        self.kept = False

    def keep_until_gone(self, pid: int | None, limit: float = KEEP_LIMIT) -> None:
        """Hand the turn to a small process (it inherits the lock's open file) that ends once process `pid`
        has, or after `limit` seconds; this process may then exit without ending the turn. None: nothing to
        wait for, the turn ends with this process' `with`."""
        if pid is None:
            return
        try:
            subprocess.Popen([sys.executable, "-I", "-S", "-c", _KEEPER, str(pid), str(limit)],
                             pass_fds=(self._handle.fileno(),), stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        except OSError:
            return  # the turn ends with the hook, as before turns were handed over
        self.kept = True


@contextmanager
def push_turn(settings: Settings, app: str, progress: Callable[[str], None], *,
              limit: float = WAIT_LIMIT, poll: float = 0.05) -> Iterator[PushTurn]:
    """The app's push turn (exclusive), waited for (said) up to `limit` seconds."""
    with open_file(push_lock_path(settings, app)) as handle:
        if not _flock_now(handle):
            progress(f"Waiting for another push to {app} to finish...")
            deadline = time.monotonic() + limit
            while not _flock_now(handle):
                if time.monotonic() > deadline:
                    raise Conflict(f"another push to {app} has held its turn for {int(limit) // 60} minutes")
                time.sleep(poll)
            progress("The other push finished; going on.")
        yield PushTurn(handle)
        # Closing the file ends the turn unless a keeper holds the same open file (never LOCK_UN: that
        # would end it for the keeper too).


def _flock_now(handle: IO[bytes]) -> bool:
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


@contextmanager
def gc_turn(settings: Settings, progress: Callable[[str], None]) -> Iterator[None]:
    """One gc of the instance at a time (the background one after a deploy, `gc`, `gc --dry-run`): a dry run
    sees what the gc before it left, and two never remove the same things at once."""
    with held(instance_lock(settings, "gc.collect"), progress=progress,
              waiting="       waiting for another gc of this instance to finish..."):
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
