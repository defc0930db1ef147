"""A Postgres service's roles as the commands meet them: a service secured (at `create`, at each link, at
`minipaas init`), the links an earlier version made upgraded (their apps had the superuser's URL), and the
roles of apps that are gone dropped. The SQL is run by pgaccess.py; this module decides when, and rolls the
apps whose URL changes out through the same path as `config:set`.

An upgrade, per service: the owner role made and given what the superuser owned; each app linked by the
earlier version gets a role of its own and its `DATABASE_URL` rewritten, rolled out without downtime (its
review apps restarted, so they read the new URL); what the old containers made meanwhile given to the owner
role too; then `pg_hba.conf` rejects the superuser over TCP, its sessions there are ended and its password
is made anew. An app whose release fails, or that is stopped, keeps the new URL stored for its next start:
the superuser is taken away whatever a release does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from minipaas.addons import containers, pgaccess
from minipaas.errors import MinipaasError
from minipaas.progress import Progress
from minipaas.state import apps, config, releaselog, reviews
from minipaas.state import services as records
from minipaas.state.host import Host
from minipaas.state.releaselog import Serving
from minipaas.state.services import Service


class Releases(Protocol):
    """The deploy path's releases (deploy/rollout.py, which the commands pass down: addons/ is below deploy/, which
    attaches an app's addons to its network): an app's config changed and rolled out, an app restarted."""

    def change_config(self, host: Host, app: str, change: Callable[[], bool], progress: Progress, *,
                      restart: bool = True) -> object: ...

    def restart(self, host: Host, app: str, progress: Progress) -> object: ...


def secure(host: Host, service: Service, progress: Progress, *, releases: Releases) -> list[str]:
    """The service's roles and login rules as they must be, its earlier links upgraded first; returns what
    could not be done as one line each (the rest is done)."""
    container = containers.ensure_running(host, service, progress).id
    pgaccess.prepare(container, service)
    legacy = records.superuser_links(host, service.kind, service.name)
    problems: list[str] = []
    if legacy:
        progress(f"-----> postgres service {service.name}: giving {', '.join(legacy)} a role of its own "
                 "(an earlier version gave them the superuser)")
        pgaccess.adopt(container, service)
        for app in legacy:
            problems += _upgrade_link(host, service, container, app, progress, releases)
        pgaccess.adopt(container, service)  # what the old containers made meanwhile, as the superuser
        for stranger in pgaccess.strangers(container, service):
            problems.append(f"{stranger} was not made by minipaas (an app that had the superuser may have made "
                            "it); check it with `postgres:connect --superuser`")
    if pgaccess.harden(host, container, service):
        progress(f"-----> postgres service {service.name}: its superuser only inside its container; apps log in "
                 "as their own roles (scram-sha-256)")
    return problems


def _upgrade_link(host: Host, service: Service, container: str, app: str, progress: Progress,
                  releases: Releases) -> list[str]:
    """One app of an earlier link: its own role, its URL rewritten and rolled out (its review apps too)."""
    password = records.new_password()
    pgaccess.add_app(container, service, app, password)
    key = records.link_key(host, service.kind, service.name, app) or service.spec.env_key
    value = records.url(service.spec, service.name, password, app)
    problems = []
    try:
        releases.change_config(host, app, lambda: config.set_many(host, app, {key: value}), progress,
                              restart=not apps.is_stopped(host, app))
    except MinipaasError as exc:
        config.set_many(host, app, {key: value})  # stored all the same: the old URL stops working below
        problems.append(f"{app}: its new {key} is stored, but its release failed ({exc}); it gets it at its "
                        f"next deploy or `ps:restart {app}`")
    records.set_link_password(host, service.kind, service.name, app, password)
    for review in reviews.of(host, app):
        live = releaselog.live(host, review.name)
        if live is None or live.serving == Serving.STATIC or apps.is_stopped(host, review.name):
            continue
        try:
            releases.restart(host, review.name, progress)
        except MinipaasError as exc:
            problems.append(f"review app {review.name} did not restart with the new {key} ({exc})")
    return problems


def upgrade_all(host: Host, progress: Progress, *, releases: Releases) -> list[str]:
    """`minipaas init`: every Postgres service secured, its earlier links upgraded, the roles of apps no
    longer linked (destroyed while the service was down) dropped. Returns the problems, one line each."""
    problems = []
    for service in records.all_of(host, "postgres"):
        try:
            problems += secure(host, service, progress, releases=releases)
            container = containers.ensure_running(host, service, progress).id
            linked = {records.app_role(app) for app in records.links(host, service.kind, service.name)}
            for role in pgaccess.app_roles(container, service):
                if role not in linked:
                    pgaccess.remove_role(container, service, role)
                    progress(f"       postgres service {service.name}: dropped role {role} (its app is gone)")
        except MinipaasError as exc:
            problems.append(f"postgres service {service.name}: {exc}")
    return problems


def forget_app(host: Host, app: str, progress: Progress) -> None:
    """The roles of an app that is being destroyed dropped from the services it is linked to. A service that
    is down keeps the role until `minipaas init` (its password went with the app's config)."""
    for service in records.all_of(host, "postgres"):
        if app not in records.links(host, service.kind, service.name):
            continue
        container = containers.find(host, service)
        try:
            if container is None or container.status != "running":
                raise MinipaasError("its container is not running")
            pgaccess.remove_app(container.id, service, app)
        except MinipaasError as exc:
            progress(f"       postgres service {service.name} keeps role {records.app_role(app)} until "
                     f"`minipaas init` ({exc})")
