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
from collections.abc import Mapping
from dataclasses import dataclass

import click

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


APP_OPTIONS = ("-a", "--app")


def command_line(argv: list[str], app: str, commands: Mapping[str, click.Command]) -> list[str]:
    """Fill in the app: `config:set K=V` → `config:set APP K=V`; `--app NAME` overrides the remote's.

    `-a`/`--app` counts only where click would take an option of the command: before `--`, never
    as the value of another option (`logs -n 5`), and for commands that stop at their first argument
    (`run`, `enter`) only before it. What follows belongs to the command: `run -- grep -a x FILE`
    stays a grep.
    """
    if not argv or argv[0] not in commands:
        return list(argv)
    command = commands[argv[0]]
    takes_value = {name for param in command.params
                   if isinstance(param, click.Option) and not param.is_flag and not param.count
                   for name in param.opts}
    # run and enter stop taking options at their first argument (set in their context settings)
    interspersed = command.context_settings.get("allow_interspersed_args", command.allow_interspersed_args)
    kept: list[str] = []
    chosen: str | None = None
    rest = argv[1:]
    i = 0
    while i < len(rest):
        word = rest[i]
        is_argument = word == "-" or not word.startswith("-")
        if word == "--" or (is_argument and not interspersed):
            kept += rest[i:]
            break
        if word in APP_OPTIONS or word.startswith("--app="):
            if word.startswith("--app="):
                value, i = word.removeprefix("--app="), i + 1
            elif i + 1 < len(rest):
                value, i = rest[i + 1], i + 2
            else:
                raise InvalidInput(f"{word} needs an app name")
            if chosen is not None:
                raise InvalidInput("give --app (-a) once")
            chosen = value
            continue
        width = 2 if word in takes_value else 1
        kept += rest[i:i + width]
        i += width
    params = command.params
    if params and params[0].name == "app":
        kept.insert(0, app if chosen is None else chosen)
    elif chosen is not None:
        raise InvalidInput(f"{argv[0]} takes no app")
    return [argv[0], *kept]


def run(remote: Remote, argv: list[str], commands: Mapping[str, click.Command]) -> int:
    args = command_line(argv, remote.app, commands)
    from minipaas.adapters import sshclient as ssh  # paramiko is loaded only when a command really goes remote

    tty = bool(args) and args[0] in ("run", "enter")
    client = ssh.connect(remote.target.host, user=remote.target.user, port=remote.target.port)
    try:
        return ssh.attached(client, shlex.join(args), tty=tty)
    finally:
        client.close()
