"""The `minipaas` command: parses arguments, calls the library, prints results.

Commands follow dokku's `noun:verb` style, one module per noun (apps, config, ps, releases, domains,
keys, stack, admin). Every user error is a MinipaasError, turned into one line on stderr and exit code
1 in `main`; nothing here decides anything the library should.

Commands import the library inside their body: `minipaas` loads only what the command it runs needs
(the docker SDK, paramiko, acme and cryptography each take 50-250 ms to import, on every command).
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from minipaas.cli import (
    admin,
    apps,
    cluster,
    config,
    cron,
    dashboard,
    domains,
    drains,
    keys,
    metrics,
    notify,
    ps,
    releases,
    services,
    stack,
)
from minipaas.cli.common import CONTEXT, ColonGroup
from minipaas.errors import MinipaasError, disk_full


@click.group(cls=ColonGroup, context_settings=CONTEXT)
@click.version_option(package_name="minipaas")
def cli() -> None:
    """minipaas: git push to deploy, on one host."""


@click.command("ssh-command", hidden=True)
@click.option("--home", "homes", multiple=True)
@click.option("--user", "users", multiple=True, required=True)
@click.option("--fingerprint", "fingerprints", multiple=True)
def ssh_command(homes: tuple[str, ...], users: tuple[str, ...], fingerprints: tuple[str, ...]) -> None:
    """Entry point forced by authorized_keys: runs SSH_ORIGINAL_COMMAND as that key's user of that instance."""
    from minipaas.ssh import sshentry

    # Exactly the shape authorized_keys gives (and sudoers lets through): click alone would keep the
    # last of several --user, which a looser sudo rule once let a deployer add after its own.
    if len(users) != 1:
        raise MinipaasError("ssh-command takes exactly one --user NAME")
    if not homes and not fingerprints:
        raise MinipaasError("this key's line in authorized_keys was written by an older minipaas: it names no "
                            "instance; run `minipaas init` on the host to write it again")
    if len(homes) != 1 or len(fingerprints) != 1:
        raise MinipaasError("ssh-command takes exactly one --home HOME, --user NAME and --fingerprint SHA256:...")
    # The entry sits below the CLI: it gets the commands and their runner from here.
    sshentry.run(homes[0], users[0], fingerprints[0], cli, main)


def _remote_for(args: list[str]) -> Any:
    """The ssh remote to send this command to, when run from an app's checkout on a laptop."""
    if not args or args[0] in ("ssh-command", "sudoers-rule", "host-units", "retire", "init", "dashboard", "--help",
                               "-h", "--version"):
        return None
    from minipaas.ssh import remote
    from minipaas.state.settings import load

    return remote.should_use(local_state_exists=load().db_path.exists())


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; the one place where errors become messages and exit codes."""
    from minipaas.state import perms

    # Before anything is written: what this process creates is root's alone (the retirer, the
    # ssh entry and every command come through here; files nginx reads get explicit modes).
    perms.restrict_umask()
    try:
        args = sys.argv[1:] if argv is None else argv
        remote = _remote_for(args)
        if remote is not None:
            from minipaas.ssh import remote as remote_client

            sys.exit(remote_client.run(remote, args, cli.commands))
        cli.main(args=args, prog_name="minipaas", standalone_mode=False)
    except MinipaasError as exc:
        click.echo(f"error: {exc.message}", err=True)
        if exc.detail:
            click.echo(exc.detail.rstrip(), err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.UsageError as exc:
        command = exc.ctx.command_path if exc.ctx else "minipaas"
        click.echo(f"error: {exc.format_message()} (see `{command} --help`)", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        click.echo(f"error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # a bug: say so in one line; the traceback only on request
        from minipaas.adapters import engine

        known = disk_full(exc) or engine.dropped(exc)
        if known is not None:  # not a bug: a write anywhere found no room, the engine went away under a call
            click.echo(f"error: {known.message}", err=True)
            sys.exit(known.exit_code)
        if os.environ.get("MINIPAAS_DEBUG"):
            raise
        click.echo(f"internal error: {type(exc).__name__}: {exc} (set MINIPAAS_DEBUG=1 for details)", err=True)
        sys.exit(70)
    sys.exit(0)


# In the order `minipaas --help` lists them (dokku's: by noun, as they were always listed).
for _command in (
    admin.init_cmd,
    stack.stack_build,
    stack.stack_list,
    apps.apps_create,
    apps.apps_list,
    apps.apps_destroy,
    apps.settings_show,
    apps.settings_set,
    config.config_show,
    config.config_get,
    config.config_set,
    config.config_unset,
    domains.domains_list,
    domains.domains_add,
    domains.domains_remove,
    ps.ps_show,
    metrics.metrics_show,
    ps.ps_scale,
    ps.resource_limit,
    ps.ps_restart,
    ps.ps_stop,
    ps.ps_start,
    admin.ps_restore,
    ps.logs_cmd,
    releases.releases_list,
    releases.releases_info,
    releases.releases_rollback,
    releases.releases_promote,
    releases.releases_abort,
    admin.gc_cmd,
    admin.review_apps_expire,
    admin.report_cmd,
    releases.deploy_cmd,
    ps.run_cmd,
    ps.enter_cmd,
    *cron.all_commands(),
    domains.certs_show,
    domains.certs_add,
    domains.certs_generate,
    domains.certs_remove,
    domains.letsencrypt_enable,
    domains.letsencrypt_disable,
    domains.letsencrypt_renew,
    *services.all_commands(),
    *cluster.all_commands(),
    keys.ssh_keys_add,
    keys.ssh_keys_remove,
    keys.ssh_keys_list,
    keys.ssh_keys_grant,
    keys.ssh_keys_revoke,
    keys.events_cmd,
    *notify.all_commands(),
    *drains.all_commands(),
    *dashboard.all_commands(),
    ssh_command,
    keys.sudoers_rule,
    admin.host_units_cmd,
    admin.watch_cmd,
    admin.retire_cmd,
):
    cli.add_command(_command)
