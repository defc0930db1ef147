"""Releases: releases, releases:info, releases:rollback, deploy."""

from __future__ import annotations

import click

from minipaas.cli.common import current_host, existing_app, iso, print_json, say, table, when


@click.command("releases")
@click.argument("app")
@click.option("--json", "as_json", is_flag=True)
def releases_list(app: str, as_json: bool) -> None:
    """An app's releases, newest first."""
    from minipaas.deploy import canaryguard
    from minipaas.state import canaries, releaselog

    host = current_host()
    found = releaselog.listing(host, existing_app(app))
    running = canaries.of(host, app)
    if as_json:
        print_json([{**r.as_dict(), **({"canary": running.as_dict()} if running and running.release == r.number
                                       else {})} for r in found])
        return

    def status(r: releaselog.Release) -> str:
        return f"canary {running.weight}%" if running is not None and running.release == r.number else r.status

    table(([r.number, r.kind, r.sha[:7], r.buildpack or "-", status(r), r.tests_text, r.pusher, when(r.created_at),
             r.message[:60]] for r in found),
           ["RELEASE", "KIND", "SHA", "BUILDPACK", "STATUS", "TESTS", "BY", "CREATED", "MESSAGE"])
    if running is not None:
        for line in canaryguard.describe(host, running):
            say(line)


@click.command("releases:info")
@click.argument("app")
@click.argument("number", type=int)
def releases_info(app: str, number: int) -> None:
    """One release, with its build log."""
    from minipaas.state import releaselog

    host = current_host()
    rel = releaselog.get(host, existing_app(app), number)
    for key, value in rel.as_dict().items():
        if key in ("created_at", "finished_at"):
            value = iso(value)  # type: ignore[arg-type]
        elif key == "tests":
            value = rel.tests_text
        elif key == "tests_seconds":
            continue  # in `tests`
        say(f"{key + ':':<13} {value}")
    log = releaselog.build_log(host, app, number)
    if log:
        say("build log:")
        say(log)


@click.command("releases:rollback")
@click.argument("app")
@click.argument("number", type=int, required=False)
def releases_rollback(app: str, number: int | None) -> None:
    """Go back to an earlier release (default: the previous one), with its config of that time."""
    from minipaas.deploy import rollback

    rollback.rollback(current_host(), existing_app(app), number, say)


@click.command("deploy")
@click.argument("app")
@click.argument("rev", required=False)
@click.option("--verbose", is_flag=True, help="Show every line the builder prints")
@click.option("--canary", "canary", type=click.IntRange(0, 99), default=None, metavar="PERCENT",
              help="Start it as a canary taking PERCENT of new clients beside the live release (0: no canary)")
def deploy_cmd(app: str, rev: str | None, verbose: bool, canary: int | None) -> None:
    """Build and deploy a commit of the app's repository (default: the last one pushed, even if rejected)."""
    from minipaas.adapters import gitrepo
    from minipaas.build import builds
    from minipaas.deploy import rollout
    from minipaas.state import releaselog

    host = current_host()
    repo = host.settings.repo_path(existing_app(app))
    sha = gitrepo.resolve(repo, rev) if rev else releaselog.last_pushed(host, app) or gitrepo.resolve(repo, "HEAD")
    rollout.deploy_commit(host, app, sha, say, builds.Options(verbose=verbose), canary_share=canary)


@click.command("releases:promote")
@click.argument("app")
def releases_promote(app: str) -> None:
    """Give the app's canary release all traffic: it becomes the live release, the one before it retires."""
    from minipaas.deploy import canary

    canary.promote(current_host(), existing_app(app), say)


@click.command("releases:abort")
@click.argument("app")
def releases_abort(app: str) -> None:
    """Send all traffic back to the live release and remove the app's canary release."""
    from minipaas.deploy import canary

    canary.abort(current_host(), existing_app(app), say)
