"""notify:*: where the host's events are sent (webhooks, Slack), and whether they got there."""

from __future__ import annotations

import click

from minipaas.cli.common import current_host, existing_app, print_json, say, table, when
from minipaas.errors import MinipaasError

EVENT_NAMES = "deploy,deploy-failed,crash,cron-failed,cert-expiring,disk-low,node-down,backup-failed,backup-verified"


@click.command("notify:add")
@click.argument("name")
@click.argument("kind")
@click.argument("url")
@click.option("--app", default="", help="Only this app's events (and its review apps')")
@click.option("--events", "event_list", default=None, metavar="LIST", help=f"Only these events: {EVENT_NAMES}")
def notify_add(name: str, kind: str, url: str, app: str, event_list: str | None) -> None:
    """Send events to a webhook (JSON) or a Slack incoming webhook (URL: https; http to loopback only)."""
    from minipaas.access import notify
    from minipaas.state import notifications
    from minipaas.state.names import check_notification

    check_notification(name)
    notify.parse_kind(kind)
    events = notify.parse_events(event_list)
    notify.check_url(url)
    if app:
        existing_app(app)
    from minipaas.running import watcher

    host = current_host()
    notifications.add(host, notifications.Notification(name=name, kind=kind, url=url, app=app, events=events))
    watcher.ensure_running(host.settings)  # it sends them (every deploy and ps:restore start it too)
    shown = "every event" if events == notify.EVENTS else ",".join(events)
    say(f"-----> {name}: {shown} of {app or 'every app'} to {kind} {notify.redacted(url)}")


@click.command("notify:list")
@click.option("--json", "as_json", is_flag=True)
def notify_list(as_json: bool) -> None:
    """Notifications (URLs redacted), their last delivery and last failure."""
    from minipaas.access import notify
    from minipaas.state import notifications

    host = current_host()
    found = notifications.listing(host)
    if as_json:
        print_json([{"name": n.name, "kind": n.kind, "url": notify.redacted(n.url), "app": n.app or None,
                     "events": list(n.events), "sent_at": n.sent_at, "failed_at": n.failed_at,
                     "failure": n.failure, "waiting": notifications.waiting(host, n.name)} for n in found])
        return
    table(([n.name, n.kind, notify.redacted(n.url), n.app or "*",
            "all" if n.events == notify.EVENTS else ",".join(n.events), when(n.sent_at),
            notifications.waiting(host, n.name), f"{when(n.failed_at)} {n.failure}" if n.failed_at else "-"]
           for n in found), ["NAME", "KIND", "URL", "APP", "EVENTS", "LAST SENT", "WAITING", "LAST FAILURE"])


@click.command("notify:remove")
@click.argument("name")
def notify_remove(name: str) -> None:
    """Stop sending to a notification (what waits in its outbox is dropped)."""
    from minipaas.state import notifications
    from minipaas.state.names import check_notification

    notifications.remove(current_host(), check_notification(name))
    say(f"-----> Removed notification {name}")


@click.command("notify:test")
@click.argument("name")
def notify_test(name: str) -> None:
    """Send a test event now (waits for the receiver, at most 5 s) and say whether it arrived."""
    from minipaas.access import notify
    from minipaas.running import notifywatch
    from minipaas.state import notifications
    from minipaas.state.names import check_notification

    host = current_host()
    n = notifications.get(host, check_notification(name))
    why = notifywatch.test(host, name)
    if why is not None:
        raise MinipaasError(f"{name}: not delivered to {notify.redacted(n.url)}: {why}")
    say(f"-----> {name}: test event delivered to {n.kind} {notify.redacted(n.url)}")


def all_commands() -> list[click.Command]:
    return [notify_add, notify_list, notify_remove, notify_test]
