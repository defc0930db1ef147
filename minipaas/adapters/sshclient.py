"""The ssh adapter (client side), with paramiko: connecting to a minipaas host and running a command there
(`connect`, `execute`), and a cluster's manager logging in to a host it adds (`connect_accept_new`, `run`).

`connect` honours ~/.ssh/config (host aliases, HostName, Port, User, IdentityFile, UserKnownHostsFile),
the ssh agent and the usual key files, and verifies host keys against known_hosts: an unknown
host is refused with its fingerprint, never trusted silently. `connect_accept_new` is ssh's
StrictHostKeyChecking=accept-new with a known_hosts file of its own: a host never seen is trusted and remembered
once logged in, a remembered host whose key changed is refused. `run` sends an argument list, quoted with
shlex.join for the remote shell: no argument is ever read as shell code.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import select
import shlex
import socket
import sys
import termios
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import paramiko

from minipaas.errors import MinipaasError

# paramiko logs its transport thread's failures (a missing banner, a reset) before it raises them here; they
# reach the user once, as an SshError's one line, not also as Python's last-resort log output on stderr.
logging.getLogger("paramiko").addHandler(logging.NullHandler())


class SshError(MinipaasError):
    """The host could not be reached, refused us, or could not be verified."""


def fingerprint(key: paramiko.PKey) -> str:
    return "SHA256:" + base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")


class _RefuseUnknown(paramiko.MissingHostKeyPolicy):
    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        raise SshError(
            f"host {hostname} is not in your known_hosts ({key.get_name()} key {fingerprint(key)}); "
            f"check that fingerprint with the host's administrator, then run `ssh {hostname}` once to accept it")


def _config(host: str) -> dict[str, object]:
    path = Path.home() / ".ssh" / "config"
    if not path.is_file():
        return {"hostname": host}
    return dict(paramiko.SSHConfig.from_path(str(path)).lookup(host))


def connect(host: str, *, user: str | None, port: int | None, timeout: float = 15) -> paramiko.SSHClient:
    """Connect to `host` (an alias in ~/.ssh/config or a host name) as ssh itself would."""
    options = _config(host)
    hostname = str(options.get("hostname", host))
    port = port or int(str(options.get("port", 22)))
    user = user or str(options.get("user") or os.environ.get("USER") or "paas")
    identity = [os.path.expanduser(str(p)) for p in options.get("identityfile", []) or []]  # type: ignore[union-attr]
    client = paramiko.SSHClient()
    client.load_system_host_keys()
    known = [os.path.expanduser(str(p)) for p in
             str(options.get("userknownhostsfile", "~/.ssh/known_hosts")).split()]
    for path in known:
        if os.path.isfile(path):
            client.load_host_keys(path)
    client.set_missing_host_key_policy(_RefuseUnknown())
    where = f"{user}@{hostname}:{port}"
    try:
        client.connect(hostname, port=port, username=user, key_filename=identity or None, timeout=timeout,
                       banner_timeout=timeout, auth_timeout=timeout, allow_agent=True, look_for_keys=True)
    except SshError:
        raise
    except paramiko.BadHostKeyException as exc:
        raise SshError(f"the host key of {hostname} has CHANGED ({fingerprint(exc.key)}, expected "
                       f"{fingerprint(exc.expected_key)}): refusing to connect") from None
    except paramiko.AuthenticationException:
        raise SshError(f"{where} refused your key(s): is it registered with `minipaas ssh-keys:add`?") from None
    except (TimeoutError, OSError, paramiko.SSHException) as exc:
        raise SshError(f"cannot reach {where}: {exc}") from None
    return client


def attached(client: paramiko.SSHClient, command: str, *, tty: bool) -> int:
    """Run a command remotely with our stdin/stdout/stderr attached to it; returns its exit status."""
    channel = client.get_transport().open_session()  # type: ignore[union-attr]
    if tty:
        size = os.get_terminal_size() if sys.stdout.isatty() else os.terminal_size((80, 24))
        channel.get_pty(term=os.environ.get("TERM", "xterm"), width=size.columns, height=size.lines)
    channel.exec_command(command)
    interactive = tty and sys.stdin.isatty()
    saved = termios.tcgetattr(sys.stdin) if interactive else None
    if interactive:
        import tty as tty_mode

        tty_mode.setraw(sys.stdin.fileno())
    try:
        if sys.stdin.isatty() and not tty:
            channel.shutdown_write()  # a plain command: the terminal's typing is not its input
        else:
            threading.Thread(target=_send_stdin, args=(channel,), daemon=True).start()
        return _pump(channel)
    finally:
        if saved is not None:
            termios.tcsetattr(sys.stdin, termios.TCSADRAIN, saved)


def _pump(channel: paramiko.Channel) -> int:
    out, err = sys.stdout.buffer, sys.stderr.buffer
    while True:
        readable, _, _ = select.select([channel], [], [], 0.5)
        if readable:
            while channel.recv_ready():
                out.write(channel.recv(65536))
                out.flush()
            while channel.recv_stderr_ready():
                err.write(channel.recv_stderr(65536))
                err.flush()
        if channel.exit_status_ready() and not channel.recv_ready() and not channel.recv_stderr_ready():
            break
    return channel.recv_exit_status()


def _send_stdin(channel: paramiko.Channel) -> None:
    if sys.stdin is None or sys.stdin.closed:
        channel.shutdown_write()
        return
    fd = sys.stdin.fileno()
    try:
        while True:
            data = os.read(fd, 65536)
            if not data:
                break
            channel.sendall(data)
    except OSError:
        pass
    channel.shutdown_write()


class _AcceptNew(paramiko.MissingHostKeyPolicy):
    """A host never seen: its key is taken (in memory; `connect_accept_new` saves it once logged in)."""

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        client.get_host_keys().add(hostname, key.get_name(), key)


def _unreachable(where: str, exc: BaseException, timeout: float, waited: float) -> SshError:
    if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError):
        return SshError(f"cannot reach {where}: connection refused")
    if isinstance(exc, socket.gaierror):
        return SshError(f"cannot reach {where}: no such host ({exc.strerror})")
    # A host that accepts the connection but says nothing: paramiko's handshake gives up at the timeout and
    # the login then finds "No existing session"; hence the time waited decides, not the words.
    if isinstance(exc, TimeoutError | socket.timeout) or waited >= timeout:
        return SshError(f"cannot reach {where}: no ssh answer within {timeout:g}s")
    return SshError(f"cannot reach {where}: {exc}")


def connect_accept_new(hostname: str, *, port: int, user: str, known_hosts: Path, identity: Path | None,
                       timeout: float) -> paramiko.SSHClient:
    """Log in with a key (`identity`, else the agent and ~/.ssh's usual keys), the host key checked against
    `known_hosts` (made 0600 if missing) and added to it if the host is new; `timeout` bounds the connection,
    the banner and the authentication each."""
    client = paramiko.SSHClient()
    if known_hosts.is_file():
        client.load_host_keys(str(known_hosts))
    client.set_missing_host_key_policy(_AcceptNew())
    where = f"{user}@{hostname}:{port}"
    started = time.monotonic()
    try:
        client.connect(hostname, port=port, username=user, key_filename=str(identity) if identity else None,
                       timeout=timeout, banner_timeout=timeout, auth_timeout=timeout,
                       allow_agent=identity is None, look_for_keys=identity is None)
    except paramiko.BadHostKeyException as exc:
        client.close()
        raise SshError(f"the host key of {hostname} has CHANGED ({fingerprint(exc.key)}, expected "
                       f"{fingerprint(exc.expected_key)}, {known_hosts}): refusing to connect") from None
    except paramiko.AuthenticationException:
        client.close()
        raise SshError(f"{where} refused the key(s) ({identity or 'the ssh agent and ~/.ssh'}): "
                       f"is its public key in {user}'s authorized_keys there?") from None
    except (OSError, paramiko.SSHException) as exc:
        client.close()
        raise _unreachable(where, exc, timeout, time.monotonic() - started) from None
    os.close(os.open(known_hosts, os.O_WRONLY | os.O_CREAT, 0o600))
    client.save_host_keys(str(known_hosts))
    return client


@dataclass(frozen=True)
class Result:
    status: int
    stdout: str
    stderr: str

    def reason(self) -> str:
        """The first line of the command's complaint (stderr, else stdout), for a one-line error."""
        lines = (self.stderr.strip() or self.stdout.strip() or f"exit status {self.status}").splitlines()
        return lines[0].strip()


def run(client: paramiko.SSHClient, argv: Sequence[str], *, input: bytes = b"", timeout: float = 60) -> Result:
    """`argv` on the remote host (shlex.join-quoted for its shell), `input` as its stdin; its output once it
    exits. A command still running after `timeout` seconds is abandoned (SshError)."""
    transport = client.get_transport()
    if transport is None or not transport.is_active():
        raise SshError("the ssh connection is closed")
    channel = transport.open_session(timeout=timeout)
    out, err = bytearray(), bytearray()
    deadline = time.monotonic() + timeout
    try:
        channel.exec_command(shlex.join(argv))
        if input:
            channel.sendall(input)
        channel.shutdown_write()
        while not (channel.exit_status_ready() and not channel.recv_ready() and not channel.recv_stderr_ready()):
            if time.monotonic() > deadline:
                raise SshError(f"`{shlex.join(argv)[:80]}` did not finish within {timeout:g}s")
            select.select([channel], [], [], 0.5)
            while channel.recv_ready():
                out += channel.recv(65536)
            while channel.recv_stderr_ready():
                err += channel.recv_stderr(65536)
        status = channel.recv_exit_status()
    except (OSError, paramiko.SSHException) as exc:
        raise SshError(f"the ssh connection broke during `{argv[0]}`: {exc}") from None
    finally:
        channel.close()
    return Result(status, out.decode(errors="replace"), err.decode(errors="replace"))
