"""What an nginx master that died alone (SIGKILL, the OOM killer, a crash) leaves in a new master's way.

Its workers live on, orphaned, serving as they were on its listening sockets, and its unix socket's file stays on
disk (nginx removes it only on a clean exit): either makes a new master's bind() fail. Two ways past them:

- taken over (`listening_fds`): copies of an orphan's listening sockets, taken with pidfd_getfd(2), are handed to the
  new master in nginx's NGINX variable, as its own binary upgrade hands them over; the new master accepts on the very
  sockets the orphans did, and only then are they told to finish their requests and go (SIGQUIT). No connection is
  refused meanwhile.
- stopped first (`stop`, SIGTERM then SIGKILL), when no socket can be taken (a kernel without pidfd_getfd): the new
  master binds once they are gone, and connections are refused for that moment (about 0.1 s).

Orphans are told from other nginx workers by their parent (no nginx master) and by a socket on one of the master's
addresses; psutil sees sockets per process.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

from minipaas.adapters import proc

SYS_PIDFD_GETFD = 438  # the same number on every architecture (Linux >= 5.6)


def find(unix_sockets: tuple[Path, ...], tcp: tuple[tuple[str, int], ...]) -> list[Any]:
    """The orphaned nginx workers (psutil processes) with a socket on one of these addresses."""
    import psutil

    unix = {str(path) for path in unix_sockets}

    def ours(conn: Any) -> bool:
        if conn.family == socket.AF_UNIX:
            return conn.laddr in unix
        return conn.status == psutil.CONN_LISTEN and bool(conn.laddr) and (conn.laddr.ip, conn.laddr.port) in tcp

    orphans = []
    for process in psutil.process_iter(["name", "cmdline", "ppid"]):
        try:
            title = " ".join(process.info["cmdline"] or [])
            if process.info["name"] != "nginx" or not title.startswith("nginx: worker process"):
                continue
            if proc.title(process.info["ppid"]).startswith("nginx: master process"):
                continue  # a live master's worker: never ours to stop
            if any(ours(conn) for conn in process.net_connections(kind="all")):
                orphans.append(process)
        except psutil.Error:
            continue  # gone meanwhile, or not ours to inspect
    return orphans


def listening_fds(orphans: list[Any]) -> list[int]:
    """Descriptors of ours for the listening sockets the orphans hold (they share their dead master's); the caller
    closes them. None when the kernel or the orphans do not let us take them."""
    syscall = ctypes.CDLL(None, use_errno=True).syscall
    for orphan in orphans:
        try:
            pidfd = os.pidfd_open(orphan.pid)
        except OSError:
            continue
        taken: list[int] = []
        try:
            for entry in Path(f"/proc/{orphan.pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    if not os.readlink(entry).startswith("socket:"):
                        continue
                    fd = syscall(SYS_PIDFD_GETFD, pidfd, int(entry.name), 0)
                    if fd < 0:
                        continue
                    copy = socket.socket(fileno=fd)
                    if copy.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
                        taken.append(copy.detach())
                    else:
                        copy.close()  # a client's connection: the orphan finishes it
        except OSError:
            pass  # gone meanwhile
        finally:
            os.close(pidfd)
        if taken:
            return taken
    return []


def stop(orphans: list[Any], *, graceful: bool = False) -> None:
    """Stop the orphans: at once (SIGTERM, then SIGKILL for the slow), or gracefully once a new master has taken
    their sockets over (SIGQUIT: they stop accepting and finish their requests; SIGKILL for any still there after
    5 s, an open WebSocket say)."""
    import psutil

    for signum in (signal.SIGQUIT, signal.SIGKILL) if graceful else (signal.SIGTERM, signal.SIGKILL):
        for process in orphans:
            with contextlib.suppress(psutil.Error):
                process.send_signal(signum)
        orphans = wait_gone(orphans, limit=5.0)


def remove_dead_sockets(paths: tuple[Path, ...]) -> None:
    """Remove those socket files of `paths` no process listens on (a master that died left them)."""
    import psutil

    if not paths:
        return
    listening = {conn.laddr for conn in psutil.net_connections(kind="unix")}
    for path in paths:
        if path.is_socket() and str(path) not in listening:
            path.unlink(missing_ok=True)


def wait_gone(processes: list[Any], limit: float) -> list[Any]:
    """Those of `processes` still alive after at most `limit` seconds. A zombie counts as gone: it
    holds no socket any more, and these are not our children to reap."""
    import psutil

    deadline = time.monotonic() + limit
    while True:
        alive = []
        for process in processes:
            with contextlib.suppress(psutil.Error):
                if process.status() != psutil.STATUS_ZOMBIE:
                    alive.append(process)
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.02)
