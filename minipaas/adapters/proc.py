"""The subprocess adapter: every external program minipaas runs goes through `run` here.

Argument lists only, never a shell; output captured as text for error messages.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import select
import signal
import subprocess
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO

from minipaas.errors import MinipaasError, no_space


def run(
    args: Sequence[str | Path],
    *,
    input: bytes | None = None,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    check: bool = True,
    timeout: float | None = 600,
) -> subprocess.CompletedProcess[bytes]:
    argv = [str(a) for a in args]
    try:
        result = subprocess.run(argv, input=input, cwd=cwd, env=env, capture_output=True, timeout=timeout)
    except FileNotFoundError:
        raise MinipaasError(f"{argv[0]} is not installed (needed for: {' '.join(argv[:3])})") from None
    except subprocess.TimeoutExpired:
        raise MinipaasError(f"{argv[0]} did not finish within {timeout:.0f} s") from None
    if check and result.returncode != 0:
        if NO_SPACE in result.stderr:  # what the program wrote could not be written: its disk is full
            raise no_space(f"({argv[0]} said: {last_line(result.stderr)})")
        raise MinipaasError(f"{' '.join(argv[:3])} failed: {last_line(result.stderr or result.stdout)}",
                            detail=result.stderr.decode(errors="replace"))
    return result


PR_SET_PDEATHSIG = 1  # linux/prctl.h
NO_SPACE = os.strerror(errno.ENOSPC).encode()  # "No space left on device", as programs print it


def dies_with_caller() -> Callable[[], None]:
    """A `preexec_fn` that makes the child SIGKILLed when the thread that started it dies: a program that must not
    outlive the deploy that runs it (a builder, whose build would go on and tag an image nobody records).

    The thread, not the process, is what the kernel watches: start the child from the thread that waits for it.
    prctl is looked up here, in the parent; the child only calls it (and checks that its parent did not die
    before it could: the signal is not sent for a death that already happened)."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def in_child() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGKILL)

    return in_child


def start_detached(args: Sequence[str | Path], *, env: dict[str, str], pass_fds: Sequence[int],
                   stderr: IO[bytes]) -> None:
    """Start a program that stays in the foreground as a daemon of its own: `setsid --fork` starts it in a session of
    its own, as no child of ours (nothing to reap, it outlives us), with `pass_fds` open in it, no input, no output
    but its errors, into `stderr`. Returns at once: whether it runs is the caller's to see."""
    argv = ["setsid", "--fork", *(str(a) for a in args)]
    try:
        result = subprocess.run(argv, env=env, pass_fds=tuple(pass_fds), stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=stderr, timeout=60)
    except FileNotFoundError:
        raise MinipaasError("setsid is not installed (util-linux; needed to start nginx on its sockets)") from None
    if result.returncode != 0:
        raise MinipaasError(f"setsid could not start {argv[2]} (exit {result.returncode})")


def wait_exit(pid: int, timeout: float) -> bool:
    """Whether process `pid` (any process, not only a child of ours) ended within `timeout` seconds.

    Waits on a pidfd, which becomes readable when the process ends: no polling, and woken at once. An ended
    process that nobody reaped yet (a zombie) counts as ended."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([fd], [], [], timeout)[0])
    finally:
        os.close(fd)


def last_line(output: bytes) -> str:
    lines = [line for line in output.decode(errors="replace").splitlines() if line.strip()]
    return lines[-1].strip() if lines else "no output"


@contextlib.contextmanager
def public_umask() -> Iterator[None]:
    """For building a root filesystem, whose files must be readable by the image's users, and for starting
    the host's own nginx as its init system would (perms.restrict_umask is minipaas' own, 0077)."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def children(pid: int) -> set[int]:
    """The pids of the process' children (none when it is gone)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return set()
    return {int(p) for p in text.split()}


def title(pid: int) -> str:
    """The process' command line as `ps` shows it (a daemon may have retitled itself); empty when it is gone."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""
