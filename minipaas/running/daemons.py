"""The home's long-lived processes (the watcher, the dashboard): each started as `minipaas COMMAND` in a session
of its own (it outlives the ssh command or hook that started it), its output in the home's logs, and found again
by its pid file, checked to run that command for this home (a pid the kernel gave to another process since is
not taken for it).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from minipaas.state.settings import Settings

# A push's hook sees its objects in a quarantine folder that git removes when the push ends: a daemon a push starts
# (the watcher, reading the live commit's app.json each minute) must read the repository itself.
PUSH_ONLY = frozenset({"GIT_QUARANTINE_PATH", "GIT_OBJECT_DIRECTORY", "GIT_ALTERNATE_OBJECT_DIRECTORIES"})


def spawn(settings: Settings, command: str, *, log: str) -> None:
    """A minipaas command of this home in a session of its own, its lines in the home's `<log>.log`."""
    settings.logs_dir.mkdir(parents=True, exist_ok=True)
    with open(settings.logs_dir / f"{log}.log", "ab") as out:
        subprocess.Popen(
            [sys.executable, "-m", "minipaas", command],
            stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True,
            env={**{k: v for k, v in os.environ.items() if k not in PUSH_ONLY}, "MINIPAAS_HOME": str(settings.home)},
        )


@dataclass(frozen=True)
class Daemon:
    command: str  # `minipaas COMMAND` runs it
    name: str  # its pid file's and its log's name

    def pid_file(self, settings: Settings) -> Path:
        return settings.nginx_dir / "run" / f"{self.name}.pid"

    def _is_it(self, pid: int, settings: Settings) -> bool:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            return False
        return self.command.encode() in cmdline and f"MINIPAAS_HOME={settings.home}".encode() in environ

    def running(self, settings: Settings) -> int | None:
        """Its pid when it runs for this home."""
        try:
            pid = int(self.pid_file(settings).read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if self._is_it(pid, settings) else None

    def start(self, settings: Settings) -> None:
        spawn(settings, self.command, log=self.name)
