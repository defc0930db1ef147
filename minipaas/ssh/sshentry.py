"""The ssh entry point: what `minipaas ssh-command --home HOME --user NAME --fingerprint FP` does with
SSH_ORIGINAL_COMMAND.

Every key in authorized_keys is forced to run that command. Several instances share the file (and sudo
passes no MINIPAAS_HOME on): the line names the key's instance by its home, which is all that decides the
home here, and the key's fingerprint, which must be that of the key of that name in that instance; a line
whose home, name and fingerprint do not match is refused with one line. The client's command line is parsed
here as an argument list (shlex, never a shell): git's receive-pack and upload-pack go to the
app's bare repository; anything else runs through the same click commands as the local CLI, with
the same output and exit codes. Each command is checked against the key's role and grants first
and recorded in the audit log.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import click

from minipaas.access import access, events, keys
from minipaas.deploy import hook, lifecycle
from minipaas.errors import InvalidInput, MinipaasError, NotFound
from minipaas.state import apps, reviews
from minipaas.state.host import Host, current
from minipaas.state.layout import Layout
from minipaas.state.names import APP_NAME, _show, check_plain_path

GIT_COMMANDS = ("git-receive-pack", "git-upload-pack")
MAX_COMMAND = 256 * 1024
# Commands that exist for the host itself and make no sense over ssh.
LOCAL_ONLY = frozenset({"ssh-command", "sudoers-rule", "host-units", "retire", "init", "dashboard"})
# `app`, `app.git`, `/app`, `/app.git`, `~/app.git`: what git clients send for the URL forms we document.
# The CLI's `main`: runs one command line, exits through SystemExit.
RunCli = Callable[[list[str]], None]
REPO_PATH = re.compile(r"(?:~/|/)?(?P<app>[^/]+?)(?:\.git)?/?")


def main(home: str, user: str, fingerprint: str, group: click.Group, run_cli: RunCli) -> int:
    """Run SSH_ORIGINAL_COMMAND as key `user` of the instance at `home`: `group` is the CLI's commands, `run_cli`
    its main (passed down by the CLI, which sits above this layer)."""
    try:
        host = _instance_at(home)
        record = keys.get(host, keys.check_name(user))
    except NotFound:
        _error(f"the key for {user} is no longer registered")
        return 1
    except MinipaasError as exc:
        _error(exc.message)
        return 1
    if record.fingerprint != fingerprint:
        message = f"this key's line names {user} of the instance at {home} with another key's fingerprint"
        _error(message)
        event = events.start(host, user=user, fingerprint=fingerprint[:60], app="",
                             command=os.environ.get("SSH_ORIGINAL_COMMAND", "")[:1000])
        events.finish(host, event, f"refused: {message}")
        return 1
    principal = access.Principal(record.name, record.role, record.fingerprint, frozenset(record.apps))
    access.act_as(principal)
    # This module is the forced command's entry (with cli/__init__.py, the only modules that write the environment:
    # tests/test_channels.py): the key's name is the process' user from here on, for what the commands it runs
    # record (releaselog.pusher, events.record) and for the processes they start.
    os.environ["MINIPAAS_USER"] = principal.name
    try:
        argv = parse_command(os.environ.get("SSH_ORIGINAL_COMMAND", ""))
    except InvalidInput as exc:
        _error(exc.message)
        events.finish(host, _record(host, principal, "", "<unparsable command>"), "refused")
        return 1
    if not argv or argv[0] in ("help", "--help", "-h"):
        click.echo(help_text(principal, group))
        return 0
    if argv[0] in GIT_COMMANDS:
        return _git(host, principal, argv)
    return _cli(host, principal, argv, group, run_cli)


def _instance_at(home: str) -> Host:
    """The instance the key's line names, as this process' own (what it runs, the hook and the retirer it
    starts see that home and nothing the environment said): one line when it is no minipaas home."""
    check_plain_path(home, what="the home a key's line names")
    path = Path(home)
    if not Layout(path).is_instance():
        raise InvalidInput(f"this key's line names {home}, which is no minipaas instance on this host")
    for name in [name for name in os.environ if name.startswith("MINIPAAS_")]:
        del os.environ[name]
    os.environ["MINIPAAS_HOME"] = home
    host = current()
    if host.settings.home != path:
        raise InvalidInput(f"this process serves {host.settings.home} already, not {home}")
    return host


def parse_command(raw: str) -> list[str]:
    if len(raw) > MAX_COMMAND:
        raise InvalidInput(f"command too long ({len(raw)} bytes; the limit is {MAX_COMMAND})")
    try:
        raw.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput("the command is not valid UTF-8") from None
    if "\x00" in raw:
        raise InvalidInput("the command contains a NUL byte")
    try:
        return shlex.split(raw)
    except ValueError as exc:
        raise InvalidInput(f"cannot parse the command: {exc}") from None


def _record(host: Host, principal: access.Principal, app: str, command: str) -> int:
    return events.start(host, user=principal.name, fingerprint=principal.fingerprint, app=app, command=command)


def _error(message: str) -> None:
    click.echo(f"error: {message}", err=True)


def _git(host: Host, principal: access.Principal, argv: list[str]) -> int:
    command = argv[0]
    match = REPO_PATH.fullmatch(argv[1]) if len(argv) == 2 else None
    app = match.group("app") if match else ""
    event = _record(host, principal, app if APP_NAME.fullmatch(app) else "", shlex.join(argv))
    try:
        if not match or not APP_NAME.fullmatch(app):
            raise InvalidInput(f"invalid repository {_show(' '.join(argv[1:]))}: use HOST:APP with a valid app name")
        exists = apps.exists(host, app)
        access.authorize_git(app, exists=exists, push=command == "git-receive-pack")
        parent = reviews.parent(host, app) if exists else None
        if parent is not None:
            raise InvalidInput(f"{app} is a review app of {parent}: its branch is pushed to {parent}'s repository")
        if not exists:
            if command != "git-receive-pack":
                raise NotFound(f"app {app} does not exist")
            lifecycle.create(host, app)
            click.echo(f"-----> Created app {app}", err=True)
    except MinipaasError as exc:
        _error(exc.message)
        events.finish(host, event, f"refused: {exc.message}")
        return 1
    # git's own program speaks the protocol on our stdin/stdout; the hook it runs does the deploy, and learns
    # from here the instance, the pusher (the release's) and their role (deploy/hook.py: push options for admins).
    # Set whatever the environment had: sshd passes no client variables of these names (AcceptEnv), and the key
    # decides, not the client.
    env = {**os.environ, "MINIPAAS_HOME": str(host.settings.home), "MINIPAAS_USER": principal.name,
           hook.ROLE_ENV: principal.role}
    code = subprocess.call([command, str(host.settings.repo_path(app))], env=env)
    events.finish(host, event, "ok" if code == 0 else f"exit {code}")
    return code


def _cli(host: Host, principal: access.Principal, argv: list[str], cli: click.Group, cli_main: RunCli) -> int:
    name = argv[0]
    app = _app_argument(cli, argv)
    # The app column holds app names only: what stands in the app's place may be anything (a config value).
    event = _record(host, principal, app if app and APP_NAME.fullmatch(app) else "", shlex.join(events.redact(argv)))
    command = cli.commands.get(name)
    try:
        if command is None or command.hidden or name in LOCAL_ONLY:
            raise InvalidInput(f"unknown command {name[:60]!r}; `help` lists what you may run")
        access.authorize(name, app)
    except MinipaasError as exc:
        _error(exc.message)
        events.finish(host, event, f"refused: {exc.message}")
        return 1
    try:
        cli_main(argv)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    events.finish(host, event, "ok" if code == 0 else f"exit {code}")
    return code


def _app_argument(group: click.Group, argv: list[str]) -> str | None:
    """The APP argument of a command line, found by click's own parser (no command runs)."""
    command = group.commands.get(argv[0])
    if command is None or not any(p.name == "app" for p in command.params):
        return None
    try:
        ctx = command.make_context(argv[0], list(argv[1:]), resilient_parsing=True)
    except click.ClickException:
        return None
    app = ctx.params.get("app")
    return app if isinstance(app, str) else None


def help_text(principal: access.Principal, cli: click.Group) -> str:
    lines = [f"minipaas over ssh, as {principal.name} ({principal.role})", "", "Commands:"]
    for name, command in cli.commands.items():
        if command.hidden or name in LOCAL_ONLY or not principal.may_run(name):
            continue
        lines.append(f"  {name:<18} {command.get_short_help_str(70)}")
    lines += ["", "git push: git remote add paas paas@HOST:APP && git push paas master"]
    if not principal.is_admin:
        lines.append(f"apps: {', '.join(sorted(principal.apps)) or 'none granted'}")
    return "\n".join(lines)


def run(home: str, user: str, fingerprint: str, group: click.Group, run_cli: RunCli) -> None:
    sys.exit(main(home, user, fingerprint, group, run_cli))
