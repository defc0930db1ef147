"""Domains: the server names an app's vhost answers to."""

from __future__ import annotations

from collections.abc import Callable

from minipaas.errors import Conflict, NotFound
from minipaas.routing import proxy
from minipaas.state import store
from minipaas.state.host import Host
from minipaas.state.names import check_domain


def of(host: Host, app: str) -> list[str]:
    rows = host.db.execute("SELECT domain FROM domains WHERE app = ? ORDER BY domain", (app,))
    return [row["domain"] for row in rows]


def add(host: Host, app: str, domain: str) -> None:
    domain = check_domain(domain)
    row = host.db.execute("SELECT app FROM domains WHERE domain = ?", (domain,)).fetchone()
    if row:
        owner = row["app"]
        raise Conflict(f"domain {domain} already belongs to {'this app' if owner == app else owner}")
    with store.transaction(host.db) as db:
        db.execute("INSERT INTO domains (domain, app) VALUES (?, ?)", (domain, app))
    _apply(host, app, rollback=lambda: _delete(host, domain))


def remove(host: Host, app: str, domain: str) -> None:
    domain = check_domain(domain)
    if domain not in of(host, app):
        raise NotFound(f"{app} has no domain {domain}")
    if len(of(host, app)) == 1:
        raise Conflict(f"{domain} is the last domain of {app}; add another one first")
    _delete(host, domain)
    _apply(host, app, rollback=lambda: _insert(host, app, domain))


def _delete(host: Host, domain: str) -> None:
    with store.transaction(host.db) as db:
        db.execute("DELETE FROM domains WHERE domain = ?", (domain,))


def _insert(host: Host, app: str, domain: str) -> None:
    with store.transaction(host.db) as db:
        db.execute("INSERT INTO domains (domain, app) VALUES (?, ?)", (domain, app))


def _apply(host: Host, app: str, rollback: Callable[[], None]) -> None:
    try:
        proxy.write_site(host, app, of(host, app))
    except BaseException:
        rollback()
        raise
