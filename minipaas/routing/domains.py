"""Domains: the server names an app's vhost answers to."""

from __future__ import annotations

from collections.abc import Callable

from minipaas.errors import Conflict, NotFound
from minipaas.routing import proxy
from minipaas.state import domains as records
from minipaas.state.host import Host
from minipaas.state.names import check_domain


def of(host: Host, app: str) -> list[str]:
    return records.of(host, app)


def add(host: Host, app: str, domain: str) -> None:
    domain = check_domain(domain)
    owner = records.owner(host, domain)
    if owner is not None:
        raise Conflict(f"domain {domain} already belongs to {'this app' if owner == app else owner}")
    records.insert(host, app, domain)
    _apply(host, app, rollback=lambda: records.delete(host, domain))


def remove(host: Host, app: str, domain: str) -> None:
    domain = check_domain(domain)
    if domain not in of(host, app):
        raise NotFound(f"{app} has no domain {domain}")
    if len(of(host, app)) == 1:
        raise Conflict(f"{domain} is the last domain of {app}; add another one first")
    records.delete(host, domain)
    _apply(host, app, rollback=lambda: records.insert(host, app, domain))


def _apply(host: Host, app: str, rollback: Callable[[], None]) -> None:
    try:
        proxy.write_site(host.settings, app, of(host, app))
    except BaseException:
        rollback()
        raise
