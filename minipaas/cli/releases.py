"""Releases: releases, releases:info, releases:rollback, deploy."""

from __future__ import annotations

import os

import click

from minipaas.cli.common import current_host, existing_app, iso, print_json, say, table, when


@click.command("releases")
@click.argument("app")
@click.option("--json", "as_json", is_flag=True)
def releases_list(app: str, as_json: bool) -> None:
    """An app's releases, newest first."""
    from minipaas.state import releaselog

    found = releaselog.listing(current_host(), existing_app(app))
    if as_json:
        print_json([r.as_dict() for r in found])
        return
    table(([r.number, r.kind, r.sha[:7], r.buildpack or "-", r.status, r.tests_text, r.pusher, when(r.created_at),
             r.message[:60]] for r in found),
           ["RELEASE", "KIND", "SHA", "BUILDPACK", "STATUS", "TESTS", "BY", "CREATED", "MESSAGE"])


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
def deploy_cmd(app: str, rev: str | None, verbose: bool) -> None:
    """Build and deploy a commit of the app's repository (default: the last one pushed, even if rejected)."""
    from minipaas.adapters import gitrepo
    from minipaas.deploy import rollout
    from minipaas.state import releaselog

    host = current_host()
    repo = host.settings.repo_path(existing_app(app))
    sha = gitrepo.resolve(repo, rev) if rev else releaselog.last_pushed(host, app) or gitrepo.resolve(repo, "HEAD")
    if verbose:
        os.environ["MINIPAAS_VERBOSE"] = "1"
    rollout.deploy_commit(host, app, sha, say)
