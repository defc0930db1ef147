"""The log drains' shipper: one rsyslogd (Debian's `rsyslog`) per home, run from the home's own config and pid
file (never the host's rsyslog service or its /run/rsyslogd.pid). rsyslogd reads its config only when it starts,
so a changed config is a restart: the records sent to its UDP port in those few milliseconds are lost to the
drains (never to `logs APP`: the engine keeps its own copy)."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from minipaas.errors import EngineError

PROGRAM = "/usr/sbin/rsyslogd"


def installed() -> bool:
    return Path(PROGRAM).is_file()


def check(config: Path) -> None:
    """rsyslogd's own validation of the config (a rendered config that fails it is a bug: said in one line)."""
    done = subprocess.run([PROGRAM, "-N1", "-f", str(config)], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["(no output)"])[0]
        raise EngineError(f"rsyslogd refused the drains' config: {reason}")


def running(pid_file: Path, config: Path) -> int | None:
    """The pid of the rsyslogd running this config, by its pid file (checked: a pid reused since is not it)."""
    try:
        pid = int(pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    return pid if cmdline[:1] == [PROGRAM.encode()] and str(config).encode() in cmdline else None


def start(config: Path, pid_file: Path, log: Path, port: int, *, within: float = 10.0) -> int:
    """rsyslogd in the foreground of a session of its own (it outlives the command that starts it), its own
    messages (a drain it cannot reach) in `log`; returns once it listens on 127.0.0.1:`port`."""
    with open(log, "ab") as out:
        process = subprocess.Popen([PROGRAM, "-n", "-f", str(config), "-i", str(pid_file)],
                                   stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True)
    deadline = time.monotonic() + within
    while not _bound(port):
        if process.poll() is not None or time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            raise EngineError(f"the drains' shipper (rsyslogd) did not start listening on 127.0.0.1:{port}; "
                              f"see {log}")
        time.sleep(0.02)
    pid_file.write_text(f"{process.pid}\n")  # rsyslogd writes it too, once its start is done
    return process.pid


def _bound(port: int) -> bool:
    """Whether something listens on 127.0.0.1:`port` (UDP): binding it ourselves fails then."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def stop(pid_file: Path, config: Path, *, within: float = 10.0) -> None:
    """SIGTERM (rsyslogd sends what its queues hold for up to its shutdown timeout), then SIGKILL."""
    pid = running(pid_file, config)
    deadline = time.monotonic() + within
    while pid is not None and running(pid_file, config) == pid:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM if time.monotonic() < deadline else signal.SIGKILL)
        time.sleep(0.05)
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)  # our own child when we started it in this process
    with contextlib.suppress(FileNotFoundError):
        pid_file.unlink()
