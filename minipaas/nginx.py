"""The nginx adapter: validating configurations, starting masters and reloading them.

A master is identified by its main configuration file and its pid file; minipaas runs its own
masters (the router, and in private mode the front), and signals the host's nginx in system mode.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from minipaas import proc
from minipaas.errors import ProxyError

NGINX = os.environ.get("MINIPAAS_NGINX_BIN", "nginx")


def test(main_conf: Path | None, prefix: Path | None = None) -> None:
    """`nginx -t` of a main configuration (None: the host's default one); ProxyError with nginx's words."""
    args = [NGINX, "-t", "-q"]
    if main_conf is not None:
        args += ["-c", str(main_conf)]
    if prefix is not None:
        args += ["-p", str(prefix)]
    result = proc.run(args, check=False, timeout=60)
    if result.returncode != 0:
        words = _messages(result.stderr)
        raise ProxyError(f"nginx rejected the configuration: {words[0] if words else 'no reason given'}",
                         detail="\n".join(words))


def _messages(stderr: bytes) -> list[str]:
    lines = stderr.decode(errors="replace").splitlines()
    return [line.split("] ", 1)[-1] if "[emerg]" in line or "[alert]" in line else line
            for line in lines if line.strip() and "test failed" not in line]


def running_pid(main_conf: Path, pid_file: Path) -> int | None:
    """The pid in `pid_file` when it is the nginx master of `main_conf`, else None.

    A pid file outlives its master (a crash, a reboot); by then its pid may belong to any other
    process, which must never be taken for our master, nor be sent its signals.
    """
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid > 0 and is_master_of(pid, main_conf) else None


def is_master_of(pid: int, main_conf: Path) -> bool:
    """Whether `pid` is an nginx master started with `-c main_conf` (as `start` starts them).

    A master retitles itself `nginx: master process <its command line>`, so its title names the
    configuration file: that tells our master from any other process, and from another instance's.
    """
    title = _title(pid)
    return title.startswith("nginx: master process ") and f" -c {main_conf} " in f"{title} "


def start(main_conf: Path, prefix: Path, pid_file: Path) -> None:
    """Start a master (it daemonizes) and wait until its pid file names it."""
    result = proc.run([NGINX, "-c", str(main_conf), "-p", str(prefix)], check=False, timeout=60)
    if result.returncode != 0:
        words = _messages(result.stderr)
        raise ProxyError(f"nginx did not start: {words[0] if words else 'no reason given'}",
                         detail="\n".join(words))
    deadline = time.monotonic() + 10
    while running_pid(main_conf, pid_file) is None:
        if time.monotonic() > deadline:
            raise ProxyError(f"nginx started but wrote no pid to {pid_file}")
        time.sleep(0.02)


def reload(main_conf: Path, prefix: Path, pid_file: Path) -> None:
    """Reload a master (SIGHUP: new workers with the new config, old ones finish their requests).

    Returns once the new workers run and the old ones accept no more (nginx waits about 100 ms
    between the two). Starts the master when it is not running, so that a reboot or a killed master
    heals on the next change.
    """
    pid = running_pid(main_conf, pid_file)
    old_workers = _children(pid) if pid is not None else set()
    if pid is None or not _signal_master(pid, main_conf, signal.SIGHUP):
        start(main_conf, prefix, pid_file)
        return
    _wait_switched(pid, old_workers)


def _signal_master(pid: int, main_conf: Path, signum: int) -> bool:
    """Signal our master; False (nothing sent) when `pid` is not, or no longer, that master.

    Through a pidfd: once it is open it names that one process, so the check and the signal are
    about the same process even if the master dies and its pid is reused in between.
    """
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return False
    try:
        if not is_master_of(pid, main_conf):
            return False
        signal.pidfd_send_signal(fd, signum)
        return True
    except ProcessLookupError:
        return False
    finally:
        os.close(fd)


def _children(pid: int) -> set[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return set()
    return {int(p) for p in text.split()}


def _title(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _wait_switched(master: int, old_workers: set[int], limit: float = 10.0) -> None:
    """Return once no worker of the old configuration accepts connections any more.

    A reload is asynchronous: the master starts new workers, then tells the old ones to stop
    accepting (they finish their requests as "worker process is shutting down"). Only then does
    every new request meet the new configuration.
    """
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        children = _children(master)
        if not old_workers:
            return
        new = children - old_workers
        still_accepting = [
            p for p in old_workers & children
            if "worker process" in _title(p) and "shutting down" not in _title(p)
        ]
        if new and not still_accepting:
            return
        time.sleep(0.005)
    raise ProxyError("nginx did not apply the new configuration within 10 s (see its error log)")


def reload_system() -> None:
    """Reload the host's nginx, starting it when it is not running (hosts without systemd)."""
    result = proc.run([NGINX, "-s", "reload"], check=False, timeout=60)
    if result.returncode != 0:
        start_result = proc.run([NGINX], check=False, timeout=60)
        if start_result.returncode != 0:
            words = _messages(start_result.stderr)
            raise ProxyError(f"cannot reload or start the host's nginx: {words[0] if words else ''}")
