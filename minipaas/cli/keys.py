"""ssh access: ssh-keys:*, the audit log (events) and the sudoers rule of the ssh account."""

from __future__ import annotations

import sys

import click

from minipaas.cli.common import current_host, print_json, say, table, when
from minipaas.errors import MinipaasError


@click.command("ssh-keys:add")
@click.argument("name")
@click.option("--role", type=click.Choice(["admin", "deployer"]), default="admin", show_default=True)
def ssh_keys_add(name: str, role: str) -> None:
    """Allow a public key (read from stdin) to reach minipaas over ssh."""
    from minipaas.access import keys

    if sys.stdin.isatty():
        raise MinipaasError(f"pipe the public key in: minipaas ssh-keys:add {name} < {name}.pub")
    # Bytes, decoded here: the locale's own decoding may be strict and raise on a binary file.
    raw = sys.stdin.buffer.read(keys.MAX_KEY_LINE + 1)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        if len(raw) <= keys.MAX_KEY_LINE:
            raise MinipaasError(f"the public key given for {name} is not text (UTF-8)") from None
        text = raw.decode("utf-8", "replace")  # cut inside a character: refused as too long
    record = keys.add(current_host(), name, role, text)
    say(f"-----> Added {record.name} ({record.role}) {record.fingerprint}")


@click.command("ssh-keys:remove")
@click.argument("name")
def ssh_keys_remove(name: str) -> None:
    """Remove a key: it can no longer reach minipaas."""
    from minipaas.access import keys

    keys.remove(current_host(), name)
    say(f"-----> Removed {name}")


@click.command("ssh-keys:list")
@click.option("--json", "as_json", is_flag=True)
def ssh_keys_list(as_json: bool) -> None:
    """Keys, their fingerprints, roles and grants."""
    from minipaas.access import keys

    found = keys.listing(current_host())
    if as_json:
        print_json([r.__dict__ for r in found])
        return
    table(([r.name, r.role, r.fingerprint, ",".join(r.apps) or ("*" if r.role == "admin" else "-")]
            for r in found), ["NAME", "ROLE", "FINGERPRINT", "APPS"])


@click.command("ssh-keys:grant")
@click.argument("name")
@click.argument("app")
def ssh_keys_grant(name: str, app: str) -> None:
    """Let a deployer key push to an app and read its state."""
    from minipaas.access import keys

    keys.grant(current_host(), name, app)
    say(f"-----> {name} may now deploy {app}")


@click.command("ssh-keys:revoke")
@click.argument("name")
@click.argument("app")
def ssh_keys_revoke(name: str, app: str) -> None:
    """Take a deployer's grant on an app away."""
    from minipaas.access import keys

    keys.revoke(current_host(), name, app)
    say(f"-----> {name} may no longer deploy {app}")


@click.command("events")
@click.argument("app", required=False)
@click.option("-n", "--num", "limit", type=click.IntRange(1, 10_000), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def events_cmd(app: str | None, limit: int, as_json: bool) -> None:
    """The audit log of commands received over ssh (config values redacted)."""
    from minipaas.access import events
    from minipaas.state.names import check_app

    if app:
        check_app(app)  # a destroyed app's events stay readable
    found = events.listing(current_host(), app, limit)
    if as_json:
        print_json(found)
        return
    table(([when(e["at"]), e["user"], e["app"] or "-", e["outcome"], str(e["command"])[:80]] for e in found),
           ["WHEN", "USER", "APP", "OUTCOME", "COMMAND"])


@click.command("sudoers-rule", hidden=True)
@click.option("--account", default="paas", show_default=True, help="The ssh account the keys log in as")
@click.option("--program", default="/usr/local/bin/minipaas", show_default=True, help="minipaas, as sudo runs it")
@click.option("--install", is_flag=True, help="Install it (after `visudo -c`) in /etc/sudoers.d/ for this instance")
def sudoers_rule(account: str, program: str, install: bool) -> None:
    """Print (or install) this instance's sudoers rule of the ssh account: exactly its keys' forced commands."""
    from minipaas.access import sudoers
    from minipaas.state.settings import load

    settings = load()
    if not install:
        click.echo(sudoers.rule(account, program, home=str(settings.home)), nl=False)
        return
    written = sudoers.install(settings, account, program)
    say(f"-----> ssh: {sudoers.path_for(settings)} {'installed' if written else 'is up to date'} "
        f"({account} runs `{program} ssh-command` for the keys of {settings.home})")
