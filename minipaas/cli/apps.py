"""Apps and their settings: apps:*, settings, settings:set."""

from __future__ import annotations

import click

from minipaas.cli.common import current_host, existing_app, print_json, printable, say, table
from minipaas.errors import MinipaasError


@click.command("apps:create")
@click.argument("app")
def apps_create(app: str) -> None:
    """Create an app: its git repository, default domain and vhost."""
    from minipaas.deploy import addresspool, lifecycle
    from minipaas.state import apps

    host = current_host()
    lifecycle.create(host, app)
    say(f"-----> Created {app}")
    say(f"       git remote add paas {host.settings.repo_path(app)}")
    say(f"       served at http://{apps.default_domain(host, app)}/ once pushed")
    if warning := addresspool.warning(host):
        say(f"       warning: {warning}")


@click.command("apps:list")
@click.option("--json", "as_json", is_flag=True)
def apps_list(as_json: bool) -> None:
    """List apps, each with its review apps (a branch's deploy) under it."""
    from minipaas.access import access
    from minipaas.routing import routes
    from minipaas.state import apps

    host = current_host()
    listed = apps.listing(host)
    asleep = routes.sleeping(host.settings)  # idle apps: no container until their next request
    shown = {a.name for a in listed if a.parent is None and access.visible(a.name)}
    suffix = apps.port_suffix(host.settings)
    rows = [{"name": a.name, "parent": a.parent, "branch": a.branch, "release": a.release, "sha": a.sha,
             "url": f"http://{a.domain}{suffix}/", "sleeping": a.name in asleep}
            for a in listed if (a.parent or a.name) in shown]
    if as_json:
        print_json(rows)
        return
    table(([("  " if r["parent"] else "") + str(r["name"]), r["release"] or "-", (r["sha"] or "-")[:7],
            printable(r["branch"] or ""), "sleeping" if r["sleeping"] else "-"] for r in rows),
          ["APP", "RELEASE", "SHA", "BRANCH", "STATE"])


@click.command("apps:destroy")
@click.argument("app")
@click.option("--force", is_flag=True, help="Really destroy: containers, images, repo and vhost")
def apps_destroy(app: str, force: bool) -> None:
    """Destroy an app and everything it owns (asks for --force)."""
    from minipaas.deploy import lifecycle

    existing_app(app)
    if not force:
        raise MinipaasError(f"destroying {app} removes its containers, images, repository and vhost; "
                            f"run `minipaas apps:destroy {app} --force` to do it")
    from minipaas.running import drains
    from minipaas.state import drains as drain_records

    host = current_host()
    drained = bool(drain_records.of(host, app))
    lifecycle.destroy(host, app, lambda line: say(f"       {line}"))
    if drained:  # its drains went with its settings: the shipper forgets them (stops when no app has any)
        drains.apply(host)
    say(f"-----> Destroyed {app}")


@click.command("settings")
@click.argument("app")
@click.option("--json", "as_json", is_flag=True)
def settings_show(app: str, as_json: bool) -> None:
    """Show an app's settings (deploy branch, health check, drain delay, memory)."""
    from minipaas.state import apps

    values = apps.all_settings(current_host(), existing_app(app))
    if as_json:
        print_json(values)
        return
    table(values.items(), ["SETTING", "VALUE"])


@click.command("settings:set")
@click.argument("app")
@click.argument("key")
@click.argument("value")
def settings_set(app: str, key: str, value: str) -> None:
    """Change one of an app's settings."""
    from minipaas.deploy import rollback
    from minipaas.state import apps

    if key == "static-dir":  # checked against the live build, and served from it at once when it can be
        rollback.change_static_dir(current_host(), existing_app(app), value, say)
    else:
        apps.set_setting(current_host(), existing_app(app), key, value)
    say(f"-----> {app}: {key} = {value}")
