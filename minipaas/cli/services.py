"""Services apps link: `postgres:*` and `redis:*` (dokku's names), made for each kind by `commands_for`,
and `services:backup-due`, which the daily timer runs."""

from __future__ import annotations

import sys
import time

import click

from minipaas.cli.common import current_host, iso, print_json, say, table


def _err(line: str) -> None:
    """Progress of a command whose stdout is data (export): on stderr."""
    click.echo(line, err=True)


def commands_for(kind: str) -> list[click.Command]:
    """The commands of one kind of service, in the order `--help` lists them."""
    from minipaas.state.services import KINDS

    spec = KINDS[kind]
    label = "PostgreSQL" if kind == "postgres" else "Redis"

    @click.command(f"{kind}:create")
    @click.argument("name")
    @click.option("--version", default=spec.versions[-1], show_default=True, help=f"{label} major version")
    def create(name: str, version: str) -> None:
        from minipaas.addons import addons
        from minipaas.deploy import rollout

        addons.create(current_host(), kind, name, version, say, releases=rollout)

    create.help = f"Create a {label} service (its image is built on first use)."

    @click.command(f"{kind}:link")
    @click.argument("name")
    @click.argument("app")
    def link(name: str, app: str) -> None:
        from minipaas.addons import addons
        from minipaas.deploy import rollout

        addons.link(current_host(), kind, name, app, say, releases=rollout)

    link.help = f"Give APP the service's {spec.env_key} and roll it out (no downtime)."

    @click.command(f"{kind}:unlink")
    @click.argument("name")
    @click.argument("app")
    def unlink(name: str, app: str) -> None:
        from minipaas.addons import addons
        from minipaas.deploy import rollout

        addons.unlink(current_host(), kind, name, app, say, releases=rollout)

    unlink.help = f"Remove {spec.env_key} from APP and roll it out."

    @click.command(f"{kind}:info")
    @click.argument("name")
    @click.option("--show-secrets", is_flag=True, help="The password and URL too (admins only)")
    @click.option("--json", "as_json", is_flag=True)
    def info(name: str, show_secrets: bool, as_json: bool) -> None:
        from minipaas.access import access
        from minipaas.addons import addons

        if show_secrets and access.hides_config_values():
            raise access.PermissionDenied("only an admin may see a service's secrets")
        data = addons.info(current_host(), kind, name, show_secrets=show_secrets)
        if kind == "postgres":
            from minipaas.addons import offsite

            data.update(offsite.info(current_host(), kind, name))
        if as_json:
            print_json(data)
            return
        say(f"=====> {kind} service {name}")
        data["links"] = ", ".join(data["links"]) or "-"  # type: ignore[arg-type]
        data["created"] = iso(float(data["created"]))  # type: ignore[arg-type]
        for key, value in data.items():
            if isinstance(value, dict):  # per linked app: its role, its URL
                value = ", ".join(f"{app} {item}" for app, item in value.items()) or "-"
            say(f"{key + ':':<18} {value}")

    info.help = (f"A {label} service: status, links, settings (--show-secrets: its password and "
                 f"{'each linked app' if kind == 'postgres' else 'the'} URL).")

    @click.command(f"{kind}:list")
    @click.option("--json", "as_json", is_flag=True)
    def listing(as_json: bool) -> None:
        from minipaas.access import access
        from minipaas.addons import addons

        rows = addons.listing(current_host(), kind)
        for row in rows:  # a deployer sees the services' names, and links to its own apps only
            row["links"] = [app for app in row["links"] if access.visible(app)]  # type: ignore[attr-defined]
        if as_json:
            print_json(rows)
            return
        table(([r["name"], r["version"], r["status"], ", ".join(r["links"]) or "-"] for r in rows),  # type: ignore[arg-type]
              ["NAME", "VERSION", "STATUS", "LINKED APPS"])

    listing.help = f"{label} services."

    @click.command(f"{kind}:logs")
    @click.argument("name")
    @click.option("-n", "--num", "lines", type=click.IntRange(0, 1_000_000), default=100, show_default=True)
    def logs(name: str, lines: int) -> None:
        from minipaas.adapters import engine
        from minipaas.addons import containers as addon_containers
        from minipaas.errors import NotFound
        from minipaas.state import services

        host = current_host()
        container = addon_containers.find(host, services.require(host, kind, name))
        if container is None:
            raise NotFound(f"{kind} service {name} has no container; `ps:restore` starts it again")
        for chunk in engine.logs(container.id, tail=lines):
            sys.stdout.buffer.write(chunk)
        sys.stdout.buffer.flush()

    logs.help = "The server's output."

    @click.command(f"{kind}:connect")
    @click.argument("name")
    @click.option("--superuser", is_flag=True, hidden=kind != "postgres",
                  help="psql as the superuser (the apps' own functions and triggers then run with its rights)")
    def connect(name: str, superuser: bool) -> None:
        from minipaas.adapters import engine
        from minipaas.addons import containers as addon_containers
        from minipaas.errors import InvalidInput
        from minipaas.state import services

        if superuser and kind != "postgres":
            raise InvalidInput("--superuser is for postgres:connect")
        host = current_host()
        service = services.require(host, kind, name)
        container = addon_containers.ensure_running(host, service, _err)
        if kind == "postgres":
            from minipaas.addons import pgaccess

            pgaccess.prepare(container.id, service)  # the owner role there (a service not upgraded yet)
        # psql as the role that owns the apps' data (what it makes, their apps can use); --superuser: as the
        # superuser, whom no object of an app should meet (docs/security.md, "Postgres: a role per app").
        role = services.SUPERUSER if superuser else services.OWNER_ROLE
        client = ["psql", "-U", role, "-d", services.database(name)] if kind == "postgres" else \
            ["minipaas-redis-cli"]
        code, _ = engine.exec_io(container.id, client, user=kind, interactive=True, tty=sys.stdin.isatty())
        sys.exit(code)

    client_name = "psql as the role that owns the apps' data" if kind == "postgres" else "redis-cli"
    connect.help = f"{client_name} in the service (a tty when there is one)."

    @click.command(f"{kind}:destroy")
    @click.argument("name")
    @click.option("--force", is_flag=True, help="Unlink its apps first")
    def destroy(name: str, force: bool) -> None:
        from minipaas.addons import addons
        from minipaas.deploy import rollout

        addons.destroy(current_host(), kind, name, force=force, progress=say, releases=rollout)

    destroy.help = "Remove the service with its data and backups (refused while linked, unless --force)."

    @click.command(f"{kind}:backup")
    @click.argument("name")
    def backup(name: str) -> None:
        from minipaas.addons import offsite

        offsite.backup(current_host(), kind, name, say)

    backup.help = f"Keep a backup ({'pg_dump -Fc' if kind == 'postgres' else 'an RDB snapshot'}, checksummed)."

    @click.command(f"{kind}:backups")
    @click.argument("name")
    def backups(name: str) -> None:
        from minipaas.addons import backups as addon_backups
        from minipaas.state import services

        host = current_host()
        kept = addon_backups.listing(host, services.require(host, kind, name))
        table(([b.name, iso(b.taken_at), f"{b.size / 1e3:.0f} kB"] for b in reversed(kept)),
              ["BACKUP", "TAKEN", "SIZE"])

    backups.help = "The service's kept backups, newest first."

    @click.command(f"{kind}:export")
    @click.argument("name")
    def export(name: str) -> None:
        from minipaas.addons import backups as addon_backups

        addon_backups.export(current_host(), kind, name, sys.stdout.buffer, _err)
        sys.stdout.buffer.flush()

    export.help = "Write a dump to stdout (`ssh paas@host postgres:export db > db.dump`)."

    @click.command(f"{kind}:backup-schedule")
    @click.argument("name")
    @click.argument("schedule", type=click.Choice(["daily", "off"]))
    def backup_schedule(name: str, schedule: str) -> None:
        _setting(kind, name, "backup-schedule", schedule)

    backup_schedule.help = "Back the service up daily (run by the host's daily timer), or not."

    @click.command(f"{kind}:backup-retention")
    @click.argument("name")
    @click.argument("count")
    def backup_retention(name: str, count: str) -> None:
        _setting(kind, name, "backup-retention", count)

    backup_retention.help = "How many backups the schedule keeps (the oldest go)."

    found = [create, link, unlink, info, listing, logs, connect, destroy, backup, backups, export,
             backup_schedule, backup_retention]
    if kind == "postgres":
        found += [_restore_cmd(kind), _import_cmd(kind), *_offsite_cmds(kind)]
    return found


def _setting(kind: str, name: str, key: str, value: str) -> None:
    from minipaas.state import services

    host = current_host()
    services.require(host, kind, name)
    services.set_setting(host, kind, name, key, value)
    say(f"-----> {kind} service {name}: {key} {value}")


def _restore_cmd(kind: str) -> click.Command:
    @click.command(f"{kind}:restore")
    @click.argument("name")
    @click.argument("backup")
    @click.option("--force", is_flag=True, help="also while apps are linked (what they write meanwhile is lost)")
    def restore(name: str, backup: str, force: bool) -> None:
        """Put a kept backup back, or one from the store (s3://BUCKET/PREFIX/SERVICE/STAMP.dump; a folder
        s3://BUCKET/PREFIX/SERVICE: its newest): checksum checked first; one transaction."""
        from minipaas.addons import backups as addon_backups
        from minipaas.addons import offsite

        if backup.startswith("s3://"):
            offsite.restore(current_host(), kind, name, backup, say, force=force)
        else:
            addon_backups.restore(current_host(), kind, name, backup, say, force=force)

    return restore


def _offsite_cmds(kind: str) -> list[click.Command]:
    @click.command(f"{kind}:backup-auth")
    @click.argument("name")
    @click.argument("access_key", metavar="ACCESS_KEY")
    @click.argument("secret_key", metavar="SECRET_KEY")
    @click.option("--region", default="", help="the store's region (default us-east-1)")
    @click.option("--endpoint", default="", help="an S3-compatible store's URL (default AWS)")
    def backup_auth(name: str, access_key: str, secret_key: str, region: str, endpoint: str) -> None:
        """Keys for the backup target's S3-compatible store (kept root-only, never printed; SECRET_KEY `-`:
        read from stdin)."""
        from minipaas.addons import offsite
        from minipaas.state.offsite import Auth

        if secret_key == "-":  # noqa: S105 (stdin's, not a password)
            secret_key = sys.stdin.readline().strip()
        offsite.set_auth(current_host(), kind, name, Auth(access_key, secret_key, region, endpoint), say)

    @click.command(f"{kind}:backup-deauth")
    @click.argument("name")
    def backup_deauth(name: str) -> None:
        """Forget the store's keys."""
        from minipaas.addons import offsite

        offsite.clear_auth(current_host(), kind, name, say)

    @click.command(f"{kind}:backup-target")
    @click.argument("name")
    @click.argument("url", required=False, metavar="s3://BUCKET/PREFIX")
    @click.option("--unset", is_flag=True, help="no target: backups stay on this host only")
    def backup_target(name: str, url: str | None, unset: bool) -> None:
        """Also upload each backup (scheduled or by hand) to s3://BUCKET/PREFIX/NAME/, with its sha256, under
        the same retention."""
        from minipaas.addons import offsite
        from minipaas.errors import InvalidInput

        if bool(url) == unset:
            raise InvalidInput(f"give either s3://BUCKET/PREFIX or --unset (`{kind}:backup-target {name} URL`)")
        offsite.set_target(current_host(), kind, name, None if unset else url, say)

    @click.command(f"{kind}:backup-verify")
    @click.argument("name")
    def backup_verify(name: str) -> None:
        """Test-restore the newest backup into a scratch database now (the daily timer does it monthly)."""
        from minipaas.addons import offsite
        from minipaas.errors import MinipaasError

        if not offsite.verify(current_host(), kind, name, say, now=time.time()):
            raise MinipaasError(f"the test restore of {kind} service {name} failed")

    return [backup_auth, backup_deauth, backup_target, backup_verify]


def _import_cmd(kind: str) -> click.Command:
    @click.command(f"{kind}:import")
    @click.argument("name")
    @click.option("--force", is_flag=True, help="also while apps are linked (what they write meanwhile is lost)")
    def import_cmd(name: str, force: bool) -> None:
        """Restore a dump read from stdin (refused whole when corrupt or truncated)."""
        from minipaas.addons import backups as addon_backups

        addon_backups.import_(current_host(), kind, name, sys.stdin.buffer, say, force=force)

    return import_cmd


@click.command("services:backup-due")
def backup_due() -> None:
    """Back up every service whose schedule says so (and ship it to its target), apply retention, and test a
    restore of each Postgres service monthly (the daily timer runs it)."""
    from minipaas.addons import offsite
    from minipaas.errors import MinipaasError

    failed = offsite.run_due(current_host(), say, time.time())
    if failed:
        raise MinipaasError(f"backups failed: {', '.join(failed)}")


def all_commands() -> list[click.Command]:
    return [*commands_for("postgres"), *commands_for("redis"), backup_due]
