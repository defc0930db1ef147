"""logs:drain, logs:drains, logs:drain:remove: where an app's container output is sent as it happens (syslog
over TCP or UDP), besides `logs APP`. Named under `logs:` as dokku names its log commands (`logs`, `logs:failed`,
`logs:set`), all of one app's logs in one place of `help`; Heroku's `drains:add/remove` would split them."""

from __future__ import annotations

import click

from minipaas.cli.common import current_host, existing_app, print_json, say, table


@click.command("logs:drain")
@click.argument("app")
@click.argument("url")
def drain_add(app: str, url: str) -> None:
    """Send APP's container output to URL too: syslog+tcp://HOST:PORT or syslog+udp://HOST:PORT."""
    from minipaas.access import drains as rules
    from minipaas.running import drains, watcher

    rules.parse(url)  # bad input is refused before anything is looked at or changed
    host = current_host()
    drains.add(host, existing_app(app), url, say)
    watcher.ensure_running(host.settings)  # it restarts the shipper after a reboot, or if it dies


@click.command("logs:drains")
@click.argument("app")
@click.option("--json", "as_json", is_flag=True)
def drain_list(app: str, as_json: bool) -> None:
    """APP's log drains (a URL's userinfo, path or query shown as …)."""
    from minipaas.running import drains

    shown = drains.listing(current_host(), existing_app(app))
    if as_json:
        print_json(shown)
    elif shown:
        table(([url] for url in shown), ["DRAIN"])
    else:
        say(f"{app} has no log drains (logs:drain {app} syslog+tcp://HOST:PORT)")


@click.command("logs:drain:remove")
@click.argument("app")
@click.argument("url")
def drain_remove(app: str, url: str) -> None:
    """Stop sending APP's container output to URL."""
    from minipaas.running import drains

    drains.remove(current_host(), existing_app(app), url, say)


def all_commands() -> list[click.Command]:
    return [drain_add, drain_list, drain_remove]
