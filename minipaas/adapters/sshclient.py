"""The ssh adapter (client side): connecting to a minipaas host with paramiko and running a command.

It honours ~/.ssh/config (host aliases, HostName, Port, User, IdentityFile, UserKnownHostsFile),
the ssh agent and the usual key files, and verifies host keys against known_hosts: an unknown
host is refused with its fingerprint, never trusted silently.
"""

from __future__ import annotations

import base64
import hashlib
import os
import select
import sys
import termios
import threading
from pathlib import Path

import paramiko

from minipaas.errors import MinipaasError


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


def execute(client: paramiko.SSHClient, command: str, *, tty: bool) -> int:
    """Run a command remotely with our stdin/stdout/stderr; returns its exit status."""
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
