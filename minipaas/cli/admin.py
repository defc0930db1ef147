"""Host administration: init, ps:restore, gc, report and the background commands (watch, retire)."""

from __future__ import annotations

import click

from minipaas.cli.common import current_host, existing_app, print_json, say, table


@click.command("init")
def init_cmd() -> None:
    """Create or upgrade this host's state, nginx and network for the current settings."""
    from minipaas.host import setup

    setup.init(say)


@click.command("host-units", hidden=True)
def host_units_cmd() -> None:
    """Install this instance's systemd units (restore at boot, daily renewal), or its cron job without systemd."""
    from minipaas.host import units
    from minipaas.state.settings import load

    units.install(load(), say)


@click.command("ps:restore")
def ps_restore() -> None:
    """Bring every app back to its recorded state (after a reboot or a dockerd restart)."""
    from minipaas.running import restore

    restore.restore(current_host(), say)


@click.command("gc")
@click.argument("app", required=False)
@click.option("--dry-run", is_flag=True, help="Only say what would be removed")
def gc_cmd(app: str | None, dry_run: bool) -> None:
    """Remove review apps that outlived their branch (review-apps-ttl, or their branch is gone), old release
    images, exited containers, old site directories (keeps the last 5) and unused base images."""
    from minipaas.running import gc

    gc.collect(current_host(), dry_run=dry_run, only=existing_app(app) if app else None, progress=say,
               review_apps=True)


@click.command("review-apps:expire")
@click.option("--dry-run", is_flag=True, help="Only say which would be removed")
def review_apps_expire(dry_run: bool) -> None:
    """Destroy the review apps whose branch got no push for review-apps-ttl, or is no longer in the
    repository (the daily timer runs it)."""
    from minipaas.deploy import reviewexpiry

    gone = reviewexpiry.expire(current_host(), dry_run=dry_run, progress=say)
    say(f"-----> {len(gone)} review apps {'would be ' if dry_run else ''}removed")


@click.command("report")
@click.option("--json", "as_json", is_flag=True)
def report_cmd(as_json: bool) -> None:
    """Disk used per app and in total; the builder and how build limits are enforced."""
    from minipaas.running import diskreport

    host = current_host()
    rows = diskreport.report(host)
    if as_json:
        print_json(rows)
        return
    from minipaas.build import builderchoice  # the table's lines only: --json loads none of these
    from minipaas.deploy import addresspool
    from minipaas.running import dashboardproc
    from minipaas.state import canaries

    for line in builderchoice.describe(host.settings):
        say(line)
    pool = addresspool.usage(host)
    say(pool.summary())
    say(dashboardproc.describe(host.settings))
    if warning := pool.warning():
        say(f"warning: {warning}")
    mb = 1024 * 1024
    table(([r["app"], r["images"], f"{r['image_bytes'] / mb:.1f}", f"{r['site_bytes'] / mb:.1f}",
             f"{r['repo_bytes'] / mb:.1f}"] for r in rows), ["APP", "IMAGES", "IMAGES MB", "SITE MB", "REPO MB"])
    total = sum(int(r["image_bytes"]) + int(r["site_bytes"]) + int(r["repo_bytes"]) for r in rows)  # type: ignore[call-overload]
    say(f"total: {total / mb:.1f} MB (images: what each adds beyond the layers it shares)")
    for running in canaries.every(host):
        from minipaas.deploy import canaryguard  # its figures, only when a canary runs

        for line in canaryguard.describe(host, running):
            say(f"{running.app}: {line.strip()}")


@click.command("watch", hidden=True)
def watch_cmd() -> None:
    """Follow the engine's events: a routed container that goes away leaves its app's route at once."""
    from minipaas.running import watcher

    watcher.run(current_host().settings)


@click.command("retire", hidden=True)
@click.argument("app")
def retire_cmd(app: str) -> None:
    """Retire the app's old containers once drained, then collect the app (run in the background after each
    deploy)."""
    from minipaas.deploy import retirement
    from minipaas.running import gc
    from minipaas.state import apps

    host = current_host()
    with retirement.running(host, app):
        retirement.retire(host, app, wait=True)
        # After every deploy, in the background: the retention rule keeps the disk from filling up (a rejected
        # push's image too), and an app left without containers gives its network back.
        if apps.exists(host, app):
            gc.collect(host, dry_run=False, only=app, progress=say)
