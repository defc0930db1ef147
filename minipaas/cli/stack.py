"""Base images: stack:build, stack:list."""

from __future__ import annotations

import click

from minipaas.cli.common import current_host, print_json, say, table


@click.command("stack:build")
@click.option("--node", "node", default=None, metavar="RANGE",
              help="Node.js version or range: 20, 20.17.x, ^20.3, lts/iron, lts/* (default: the host's major)")
@click.option("--force", is_flag=True, help="Rebuild even when the image exists")
def stack_build(node: str | None, force: bool) -> None:
    """Provide the base image minipaas/node:VERSION for the newest release that satisfies RANGE."""
    from minipaas.build import stacks

    say(stacks.build(current_host().settings, node, say, force=force))


@click.command("stack:list")
@click.option("--json", "as_json", is_flag=True)
def stack_list(as_json: bool) -> None:
    """Base images on this host, and the apps whose kept releases are built on them."""
    from minipaas.build import stacks

    host = current_host()
    rows = stacks.listing(str(host.settings.home))
    if as_json:
        print_json(rows)
        return
    table(([r["image"], " ".join(r["also"]) or "-", f"{int(r['size']) / 1e6:.0f} MB",
             _used_by(r["apps"], int(r["other_apps"]))] for r in rows), ["IMAGE", "ALSO", "SIZE", "USED BY"])


def _used_by(apps: list[str], others: int) -> str:
    text = ", ".join(apps)
    if others:
        text += f"{' + ' if text else ''}{others} app{'s' if others > 1 else ''} of other homes"
    return text or "-"
