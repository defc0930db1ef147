"""A real OpenSSH server on a free loopback port for a test, and a minipaas host's keys served by it."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.helpers.host import Paas, free_port


@dataclass
class Sshd:
    """A real OpenSSH server on a free loopback port, with its own host key and authorized_keys."""

    port: int
    dir: Path
    known_hosts: Path
    host_key_pub: str
    process: subprocess.Popen[bytes]

    def key(self, name: str) -> Path:
        path = self.dir / f"{name}_key"
        if not path.exists():
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(path)], check=True)
        return path

    def ssh_args(self, name: str, *, tty: bool = False) -> list[str]:
        return ["ssh", "-F", "/dev/null", "-p", str(self.port), "-i", str(self.key(name)),
                "-o", "IdentitiesOnly=yes", "-o", f"UserKnownHostsFile={self.known_hosts}",
                "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR",
                *(["-tt"] if tty else ["-T"]), "root@127.0.0.1"]

    def ssh(self, name: str, *command: str, input: str | bytes | None = None, tty: bool = False,
            timeout: float = 600) -> subprocess.CompletedProcess[str]:
        data = input.encode() if isinstance(input, str) else input
        result = subprocess.run([*self.ssh_args(name, tty=tty), *command], input=data, capture_output=True,
                                timeout=timeout)
        return subprocess.CompletedProcess(result.args, result.returncode,
                                           result.stdout.decode("utf-8", "replace"),
                                           result.stderr.decode("utf-8", "replace"))

    def git_env(self, base: dict[str, str], name: str) -> dict[str, str]:
        return {**base, "GIT_SSH_COMMAND": " ".join(self.ssh_args(name)[:-2])}

    def url(self, app: str) -> str:
        return f"ssh://root@127.0.0.1:{self.port}/{app}"


@contextlib.contextmanager
def sshd_server(folder: Path) -> Iterator[Sshd]:
    """A real OpenSSH server on a free loopback port, its files (host key, authorized_keys) in `folder`."""
    folder.mkdir()
    host_key = folder / "host_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)], check=True)
    port = free_port()
    keys_file = folder / "authorized_keys"
    config = folder / "sshd_config"
    config.write_text(f"""Port {port}
ListenAddress 127.0.0.1
HostKey {host_key}
PidFile {folder}/sshd.pid
AuthorizedKeysFile {keys_file}
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin forced-commands-only
AllowUsers root
UsePAM no
PermitUserEnvironment no
LogLevel ERROR
""")
    os.makedirs("/run/sshd", exist_ok=True)
    process = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(config)], stderr=subprocess.DEVNULL)
    pub = (folder / "host_ed25519.pub").read_text().split()
    known = folder / "known_hosts"
    known.write_text(f"[127.0.0.1]:{port} {pub[0]} {pub[1]}\n")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.05)
    try:
        yield Sshd(port=port, dir=folder, known_hosts=known, host_key_pub=f"{pub[0]} {pub[1]}", process=process)
    finally:
        process.terminate()
        process.wait(timeout=10)


def ssh_entry() -> str:
    """MINIPAAS_SSH_ENTRY for tests: this checkout's minipaas, with no MINIPAAS_HOME (as under sudo, which passes
    none on: the key's line names its instance). sshd starts the forced command with a clean environment:
    PYTHONPATH is passed on, so that the code under test (a checkout run with PYTHONPATH) answers over ssh
    too, not whatever is installed."""
    python_path = f"PYTHONPATH={os.environ['PYTHONPATH']} " if os.environ.get("PYTHONPATH") else ""
    return f"env {python_path}{sys.executable} -m minipaas"


def serve_ssh(paas: Paas, server: Sshd) -> None:
    """Keys `paas` adds from now on go to `server`'s authorized_keys."""
    paas.env["MINIPAAS_AUTHORIZED_KEYS"] = str(server.dir / "authorized_keys")
    paas.env["MINIPAAS_SSH_ENTRY"] = ssh_entry()


