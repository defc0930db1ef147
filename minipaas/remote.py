"""The remote client: `minipaas CMD ...` on a laptop, inside an app's git checkout.

When the checkout has a `paas` remote (another name with MINIPAAS_REMOTE) pointing at a host over
ssh, and this machine is not itself a minipaas host, the command is sent to that host over ssh, with
the app's name filled in from the remote's path (`--app NAME` picks another app).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from dataclasses import dataclass

from minipaas.errors import InvalidInput

# user@host:path (scp-like) and ssh://[user@]host[:port]/path
SCP_LIKE = re.compile(r"(?:(?P<user>[^@/:]+)@)?(?P<host>[^@/:\[\]]+):(?P<path>[^/].*|/.*)")
SSH_URL = re.compile(r"ssh://(?:(?P<user>[^@/]+)@)?(?P<host>[^/:]+)(?::(?P<port>\d+))?/(?P<path>.+)")


@dataclass(frozen=True)
class Target:
    host: str  # as written in the remote URL: may be an alias from ~/.ssh/config
    user: str | None
    port: int | None


@dataclass(frozen=True)
class Remote:
    target: Target
    app: str


def parse_url(url: str) -> Remote | None:
    """The ssh target and app of a git remote URL, or None when it is not an ssh URL."""
    match = SSH_URL.fullmatch(url) or (None if "://" in url else SCP_LIKE.fullmatch(url))
    if not match:
        return None
    groups = match.groupdict()
    app = groups["path"].strip("/").removeprefix("~/").removesuffix(".git")
    port = int(groups["port"]) if groups.get("port") else None
    return Remote(Target(host=groups["host"], user=groups["user"], port=port), app)


def find(remote_name: str | None = None) -> Remote | None:
    """The ssh remote of the checkout we are in, if any."""
    name = remote_name or os.environ.get("MINIPAAS_REMOTE", "paas")
    result = subprocess.run(["git", "remote", "get-url", name], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        return None
    return parse_url(result.stdout.strip())


def should_use(local_state_exists: bool) -> Remote | None:
    """Remote mode: forced by MINIPAAS_CLIENT=remote, or automatic when there is no local host."""
    mode = os.environ.get("MINIPAAS_CLIENT", "auto")
    if mode == "local" or (mode == "auto" and local_state_exists):
        return None
    found = find()
    if found is None and mode == "remote":
        raise InvalidInput("MINIPAAS_CLIENT=remote, but this checkout has no ssh `paas` remote")
    return found


def command_line(argv: list[str], app: str, takes_app: set[str]) -> list[str]:
    """Fill in the app: `config:set K=V` → `config:set APP K=V`; `--app NAME` overrides the remote's."""
    args = list(argv)
    for flag in ("--app", "-a"):
        if flag in args[1:]:
            index = args.index(flag, 1)
            if index + 1 >= len(args):
                raise InvalidInput(f"{flag} needs an app name")
            app = args[index + 1]
            del args[index:index + 2]
    if args and args[0] in takes_app:
        args.insert(1, app)
    return args


def run(remote: Remote, argv: list[str], takes_app: set[str]) -> int:
    args = command_line(argv, remote.app, takes_app)
    from minipaas import ssh  # paramiko is loaded only when a command really goes remote

    tty = bool(args) and args[0] in ("run", "enter")
    client = ssh.connect(remote.target.host, user=remote.target.user, port=remote.target.port)
    try:
        return ssh.execute(client, shlex.join(args), tty=tty)
    finally:
        client.close()
