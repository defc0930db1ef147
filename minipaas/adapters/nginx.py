"""The nginx adapter: validating configurations, starting masters and reloading them.

A master of ours is identified by its main configuration file and its pid file, and checked to be that
master before it is signalled; minipaas runs its own master in private mode, and signals the host's
nginx in system mode.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import signal
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from minipaas.adapters import nginxorphans, proc
from minipaas.errors import ProxyError

NGINX = os.environ.get("MINIPAAS_NGINX_BIN", "nginx")
SYSTEM_PID = Path("/run/nginx.pid")  # the host nginx's (Debian's --pid-path)


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


@dataclass(frozen=True)
class Master:
    """One nginx master of ours: its main configuration, prefix and pid file, and where it listens."""

    conf: Path
    prefix: Path
    pid_file: Path
    unix_sockets: tuple[Path, ...] = ()
    tcp: tuple[tuple[str, int], ...] = ()  # (address, port) pairs


def running_pid(master: Master) -> int | None:
    """The pid in the master's pid file when it is that master, else None.

    A pid file outlives its master (a crash, a reboot); by then its pid may belong to any other
    process, which must never be taken for our master, nor be sent its signals.
    """
    try:
        pid = int(master.pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid > 0 and is_master_of(pid, master.conf) else None


def died_pid(master: Master) -> int | None:
    """The pid the master's pid file names when that master no longer runs: one that ended without stopping
    (SIGKILL, the OOM killer, a crash). nginx removes its pid file whenever it stops (`nginx -s stop|quit`,
    SIGTERM, SIGQUIT), so a stopped master leaves none; nor is a pid file being written taken for one (empty)."""
    try:
        pid = int(master.pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid > 0 and not is_master_of(pid, master.conf) else None


def is_master_of(pid: int, main_conf: Path) -> bool:
    """Whether `pid` is an nginx master started with `-c main_conf` (as `start` starts them).

    A master retitles itself `nginx: master process <its command line>`, so its title names the
    configuration file: that tells our master from any other process, and from another instance's.
    """
    title = proc.title(pid)
    return title.startswith("nginx: master process ") and f" -c {main_conf} " in f"{title} "


def start(master: Master) -> None:
    """Start a master and wait until its pid file names it (and its workers run).

    A master that died alone left its workers serving on its sockets (adapters/nginxorphans.py): the new master
    takes those sockets over, then the orphans finish their requests and go, so no connection is refused. When
    their sockets cannot be taken, or the master so started does not come up, they are stopped first and a
    master started as usual (it daemonizes) binds once they are gone."""
    orphans = nginxorphans.find(master.unix_sockets, master.tcp)
    inherited = nginxorphans.listening_fds(orphans) if orphans else []
    if inherited:
        try:
            _start_inheriting(master, inherited)
            nginxorphans.stop(orphans, graceful=True)
            return
        except ProxyError:
            pass  # stopped and started the plain way below, which says what nginx says
        finally:
            for fd in inherited:
                os.close(fd)
    nginxorphans.stop(orphans)
    nginxorphans.remove_dead_sockets(master.unix_sockets)
    result = proc.run([NGINX, "-c", str(master.conf), "-p", str(master.prefix)], check=False, timeout=60)
    if result.returncode != 0:
        words = _messages(result.stderr)
        raise ProxyError(f"nginx did not start: {words[0] if words else 'no reason given'}",
                         detail="\n".join(words))
    deadline = time.monotonic() + 10
    while running_pid(master) is None:
        if time.monotonic() > deadline:
            raise ProxyError(f"nginx started but wrote no pid to {master.pid_file}")
        time.sleep(0.02)


def _start_inheriting(master: Master, fds: list[int]) -> None:
    """Start a master on the listening sockets `fds` (nginx's NGINX variable: how its binary upgrade hands them to
    the new binary). So started, nginx does not daemonize: setsid forks it away, a process of no parent of ours."""
    env = {**os.environ, "NGINX": "".join(f"{fd};" for fd in fds)}
    with tempfile.TemporaryFile() as errors:  # what nginx says before its error log is open
        proc.start_detached([NGINX, "-c", str(master.conf), "-p", str(master.prefix)], env=env, pass_fds=fds,
                            stderr=errors)
        deadline = time.monotonic() + 10
        while (pid := running_pid(master)) is None or not proc.children(pid):
            said = os.pread(errors.fileno(), 1 << 16, 0)
            if b"[emerg]" in said or time.monotonic() > deadline:
                words = _messages(said)
                raise ProxyError(f"nginx did not start on the sockets it took over: "
                                 f"{words[0] if words else 'no pid within 10 s'}", detail="\n".join(words))
            time.sleep(0.01)


def reload(master: Master) -> None:
    """Reload a master (SIGHUP: new workers with the new config, old ones finish their requests).

    Returns once the new workers run and the old ones accept no more (nginx waits about 100 ms
    between the two). Starts the master when it is not running, so that a reboot or a killed master
    heals on the next change.
    """
    pid = running_pid(master)
    old_workers = proc.children(pid) if pid is not None else set()
    if pid is None or not _signal_master(pid, master.conf, signal.SIGHUP):
        start(master)
        return
    _wait_switched(pid, old_workers)


def stop(master: Master, limit: float = 30.0) -> None:
    """Stop a master gracefully (SIGQUIT: its workers finish their requests) and wait until it is gone."""
    import psutil

    pid = running_pid(master)
    if pid is None or not _signal_master(pid, master.conf, signal.SIGQUIT):
        return
    with contextlib.suppress(psutil.Error):
        nginxorphans.wait_gone([psutil.Process(pid)], limit=limit)


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


def _wait_switched(master: int, old_workers: set[int], limit: float = 10.0) -> None:
    """Return once no worker of the old configuration accepts connections any more.

    A reload is asynchronous: the master starts new workers, then tells the old ones to stop
    accepting (they finish their requests as "worker process is shutting down"). Only then does
    every new request meet the new configuration.
    """
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        children = proc.children(master)
        if not old_workers:
            return
        new = children - old_workers
        still_accepting = [
            p for p in old_workers & children
            if "worker process" in proc.title(p) and "shutting down" not in proc.title(p)
        ]
        if new and not still_accepting:
            return
        time.sleep(0.005)
    raise ProxyError("nginx did not apply the new configuration within 10 s (see its error log)")


def system_user(main_conf: Path | None = None) -> str | None:
    """The account the host's nginx (or the one of `main_conf`) runs its workers as: its `user`
    directive, from `nginx -T`. None when it cannot say (no nginx, a broken configuration)."""
    args = [NGINX, "-T", "-q"] + (["-c", str(main_conf)] if main_conf is not None else [])
    result = proc.run(args, check=False, timeout=60)
    if result.returncode != 0:
        return None
    match = re.search(rb"^[ \t]*user[ \t]+([^\s;]+)", result.stdout, re.MULTILINE)
    return match.group(1).decode(errors="replace") if match else "nobody"  # nginx's built-in default


@functools.lru_cache(maxsize=8)
def system_sets(directive: str, ours: Path) -> bool:
    """Whether the host's nginx configuration sets `directive` itself, outside the files under `ours`
    (minipaas' own, which include it or not): setting it twice would make `nginx -t` fail. From
    `nginx -T`, once per process (about 10 ms); False when nginx cannot say."""
    result = proc.run([NGINX, "-T", "-q"], check=False, timeout=60)
    if result.returncode != 0:
        return False
    sections = re.split(rb"^# configuration file (.+):$", result.stdout, flags=re.MULTILINE)
    pattern = re.compile(rb"^[ \t]*" + re.escape(directive.encode()) + rb"[ \t]", re.MULTILINE)
    for path, text in zip(sections[1::2], sections[2::2], strict=True):
        if not Path(path.decode(errors="replace")).is_relative_to(ours) and pattern.search(text):
            return True
    return False


def system_master() -> int | None:
    """The host's nginx master when its pid file names a live one (a reboot without systemd, or a
    container host, leaves a stale file or none)."""
    try:
        pid = int(SYSTEM_PID.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid > 0 and proc.title(pid).startswith("nginx: master process") else None


def system_running() -> bool:
    """Whether the host's nginx runs: its pid file names a live nginx master."""
    return system_master() is not None


def system_died_pid() -> int | None:
    """The pid the host nginx's pid file names when no nginx master runs under it (see `died_pid`)."""
    try:
        pid = int(SYSTEM_PID.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid > 0 and system_master() is None else None


def reload_system(unix_sockets: tuple[Path, ...] = ()) -> None:
    """Reload the host's nginx, starting it when it is not running (hosts without systemd).

    Returns once its new workers have taken over, as `reload` does: a static site's push says live only
    when nginx serves it. `unix_sockets`: those its configuration listens on, whose files a master
    that died (a reboot without systemd) left behind in a new one's way."""
    try:
        master: int | None = int(SYSTEM_PID.read_text().strip())
    except (OSError, ValueError):
        master = None
    old_workers = proc.children(master) if master else set()
    result = proc.run([NGINX, "-s", "reload"], check=False, timeout=60)
    if result.returncode == 0 and master:
        _wait_switched(master, old_workers)
    if result.returncode != 0:
        # The host's own service, started as its init system would: with the usual umask, not ours.
        nginxorphans.remove_dead_sockets(unix_sockets)
        with proc.public_umask():
            start_result = proc.run([NGINX], check=False, timeout=60)
        if start_result.returncode != 0:
            words = _messages(start_result.stderr)
            raise ProxyError(f"cannot reload or start the host's nginx: {words[0] if words else ''}")
        _wait_started()


def _wait_started(limit: float = 10.0) -> None:
    """Return once a started nginx's master runs under its name with a worker: `nginx` returns when its
    daemon has forked, before that child writes the pid file and names itself."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        master = system_master()
        if master is not None and proc.children(master):
            return
        time.sleep(0.005)
    raise ProxyError("nginx did not start within 10 s (see its error log)")
