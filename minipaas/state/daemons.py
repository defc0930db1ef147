"""The home's long-lived processes (the watcher, the dashboard): each started as `minipaas COMMAND` in a session
of its own (it outlives the ssh command or hook that started it), its output in the home's logs, and found again
by its pid file, checked to run that command for this home (a pid the kernel gave to another process since is
not taken for it). Below the deploy path, which makes sure the watcher runs (`ensure_watcher`) before a release
is rolled out; the watcher itself is running/watcher.py's.

Each one carries the stamp of the code it was started from (MINIPAAS_CODE in its environment). A daemon from
before an upgrade (a `git pull`, a reinstall) would otherwise run on: its lazy imports then name modules by paths
the new code no longer has, and it never learns what the new code does. `ensure` stops such a daemon and starts
the new code's (every deploy and `ps:restore` call it, install.sh too through them).
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from minipaas.state.settings import Settings

_PACKAGE = Path(__file__).resolve().parents[1]
STAMP_VARIABLE = "MINIPAAS_CODE"
# A push's hook sees its objects in a quarantine folder that git removes when the push ends: a daemon a push starts
# (the watcher, reading the live commit's app.json each minute) must read the repository itself.
PUSH_ONLY = frozenset({"GIT_QUARANTINE_PATH", "GIT_OBJECT_DIRECTORY", "GIT_ALTERNATE_OBJECT_DIRECTORIES"})


def code_stamp() -> str:
    """What the package's code on disk is now: each module's path, size and mtime, hashed (~1 ms for 300 files;
    a file added, removed, moved or rewritten changes it)."""
    digest = hashlib.blake2b(digest_size=8)
    for path in sorted(_PACKAGE.rglob("*.py")):
        try:
            info = path.stat()
        except OSError:  # removed while we walk: the stamp changes anyway
            continue
        digest.update(f"{path.relative_to(_PACKAGE)} {info.st_size} {info.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def spawn(settings: Settings, command: str, *, log: str, stamp: str | None = None) -> None:
    """A minipaas command of this home in a session of its own, its lines in the home's `<log>.log`."""
    settings.logs_dir.mkdir(parents=True, exist_ok=True)
    env = {**{k: v for k, v in os.environ.items() if k not in PUSH_ONLY}, "MINIPAAS_HOME": str(settings.home)}
    if stamp is not None:
        env[STAMP_VARIABLE] = stamp
    with open(settings.logs_dir / f"{log}.log", "ab") as out:
        subprocess.Popen(
            [sys.executable, "-m", "minipaas", command],
            stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True, env=env,
        )


def _environ(pid: int) -> list[bytes]:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return []


@dataclass(frozen=True)
class Daemon:
    command: str  # `minipaas COMMAND` runs it
    name: str  # its pid file's and its log's name

    def pid_file(self, settings: Settings) -> Path:
        return settings.nginx_dir / "run" / f"{self.name}.pid"

    def _is_it(self, pid: int, settings: Settings) -> bool:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return False
        return self.command.encode() in cmdline and f"MINIPAAS_HOME={settings.home}".encode() in _environ(pid)

    def running(self, settings: Settings) -> int | None:
        """Its pid when it runs for this home."""
        try:
            pid = int(self.pid_file(settings).read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if self._is_it(pid, settings) else None

    def ensure(self, settings: Settings) -> bool:
        """Running on the code now on disk: started unless it runs, restarted when it runs older code (or one from
        before stamps, which is older code too). True when it was started now."""
        pid = self.running(settings)
        stamp = code_stamp()
        if pid is not None:
            if f"{STAMP_VARIABLE}={stamp}".encode() in _environ(pid):
                return False
            self._stop(pid, settings)
        spawn(settings, self.command, log=self.name, stamp=stamp)
        return True

    def _stop(self, pid: int, settings: Settings, *, within: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after `within` seconds: the watcher and the dashboard keep nothing that a new one
        does not rebuild (the watcher catches up with what it missed when it starts)."""
        deadline = time.monotonic() + within
        sent = signal.SIGTERM
        while self._is_it(pid, settings):
            try:
                os.kill(pid, sent)
            except ProcessLookupError:
                return
            if time.monotonic() > deadline:
                sent = signal.SIGKILL
            time.sleep(0.05)


WATCHER = Daemon("watch", "watch")  # `minipaas watch`: running/watcher.py


def ensure_watcher(settings: Settings) -> None:
    """The watcher of this home running on the code now on disk (`Daemon.ensure`)."""
    WATCHER.ensure(settings)
