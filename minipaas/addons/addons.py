"""Services apps link, as the commands see them: create, link, unlink, destroy, info, list, and bringing
every service back before the apps (`ps:restore`).

Linking sets the service's URL (`DATABASE_URL`, `REDIS_URL`) in the app's config through the same path
as `config:set` (rollout.change_config: a new release with it, zero downtime, undone when it fails; the
commands pass the deploy path's releases down as `releases`, roles.Releases);
unlinking removes it the same way. A Postgres link gives the app a role of its own (pgaccess.py), which
its URL names and unlinking drops. The containers and networks are containers.py's, the roles
roles.py's and pgaccess.py's, the backups backups.py's, the records state/services.py's.
"""

from __future__ import annotations

import contextlib
import shutil

from minipaas.addons import containers, pgaccess, roles
from minipaas.errors import Conflict, MinipaasError
from minipaas.progress import Progress
from minipaas.state import apps, config, services
from minipaas.state.host import Host
from minipaas.state.names import parent_of
from minipaas.state.services import Service


def folder(host: Host, service: Service) -> str:
    """Where the service's files (backups) are kept: `services/<kind>/<name>` under the home."""
    return str(host.settings.layout.services_dir / service.kind / service.name)


def create(host: Host, kind: str, name: str, version: str, progress: Progress, *,
           releases: roles.Releases) -> Service:
    spec = services.kind_of(kind)
    service = services.insert(host, spec, name, version)
    try:
        containers.ensure_running(host, service, progress)
        if kind == "postgres":
            # the owner role, pg_hba.conf (no links: no problems)
            roles.secure(host, service, progress, releases=releases)
    except BaseException:
        # Nothing half-made: a service is there with its container and volume, or not at all.
        containers.remove(host, service)
        services.delete(host, kind, name)
        raise
    progress(f"=====> {kind} service {name} is ready ({kind} {version}); `{kind}:link {name} APP` gives an "
             f"app its {spec.env_key}")
    return service


def link(host: Host, kind: str, name: str, app: str, progress: Progress, *, releases: roles.Releases) -> None:
    service = services.require(host, kind, name)
    apps.require(host, app)
    if parent_of(app) is not None:
        raise Conflict(f"{app} is a review app: link {parent_of(app)}, whose review apps inherit the link")
    key = service.spec.env_key
    if services.link_key(host, kind, name, app) is not None:
        raise Conflict(f"{kind} service {name} is already linked to {app}")
    if key in config.own(host, app):
        raise Conflict(f"{app} already has {key} (another link, or config:set): `config:unset {app} {key}` or "
                       "unlink the other service first")
    container = containers.ensure_running(host, service, progress).id
    postgres = kind == "postgres"
    if postgres:
        # An earlier version's links of this service are upgraded first (their apps had the superuser).
        for problem in roles.secure(host, service, progress, releases=releases):
            progress(f" !     {problem}")
    password = services.new_password() if postgres else ""
    services.add_link(host, kind, name, app, key, password)
    try:
        for reaching in containers.apps_reaching(host, service):
            containers.attach(host, service, reaching)
        if postgres:
            pgaccess.add_app(container, service, app, password)
            progress(f"-----> {app} logs in to {name} as a role of its own, {services.app_role(app)}: the "
                     "service's data and nothing more")
        value = services.url(service.spec, name, password or service.password, app)
        progress(f"-----> Linking {kind} service {name} to {app} as {key}")
        releases.change_config(host, app, lambda: config.set_many(host, app, {key: value}, secret=True),
                               progress)
    except BaseException:
        if postgres:
            with contextlib.suppress(MinipaasError):
                pgaccess.remove_app(container, service, app)
        _forget_link(host, service, app)
        raise
    progress(f"-----> {app} has {key}")


def unlink(host: Host, kind: str, name: str, app: str, progress: Progress, *, releases: roles.Releases,
           secure_after: bool = True) -> None:
    """The URL out of the app's config (rolled out), then its role dropped with its sessions (Postgres).
    Unlinking an earlier version's link (its app had the superuser's URL) secures the service after."""
    service = services.require(host, kind, name)
    apps.require(host, app)
    key = services.link_key(host, kind, name, app)
    if key is None:
        raise Conflict(f"{kind} service {name} is not linked to {app}")
    had_superuser = kind == "postgres" and not services.link_password(host, kind, name, app)
    progress(f"-----> Unlinking {kind} service {name} from {app}")
    releases.change_config(host, app, lambda: config.unset_many(host, app, [key]), progress)
    if kind == "postgres":
        pgaccess.remove_app(containers.ensure_running(host, service, progress).id, service, app)
    _forget_link(host, service, app)
    progress(f"-----> {app} no longer has {key}")
    if had_superuser and secure_after:
        for problem in roles.secure(host, service, progress, releases=releases):
            progress(f" !     {problem}")


def _forget_link(host: Host, service: Service, app: str) -> None:
    """The link's row gone and the service off the app's networks (its review apps' too)."""
    reaching = containers.apps_reaching(host, service)
    services.remove_link(host, service.kind, service.name, app)
    still = set(containers.apps_reaching(host, service))
    for other in reaching:
        if other not in still:
            containers.detach(host, service, other)


def destroy(host: Host, kind: str, name: str, *, force: bool, progress: Progress, releases: roles.Releases) -> None:
    """The service, its data and backups; refused while apps are linked, unless `force` unlinks them first."""
    service = services.require(host, kind, name)
    linked = services.links(host, kind, name)
    if linked and not force:
        raise Conflict(f"{kind} service {name} is linked to {', '.join(linked)}; unlink it, or destroy with --force "
                       "(which unlinks first)")
    for app in linked:
        # its roles go with its data below
        unlink(host, kind, name, app, progress, releases=releases, secure_after=False)
    containers.remove(host, service)
    shutil.rmtree(folder(host, service), ignore_errors=True)
    services.delete(host, kind, name)
    progress(f"-----> Destroyed {kind} service {name} and its data")


def info(host: Host, kind: str, name: str, *, show_secrets: bool) -> dict[str, object]:
    """What `info` prints. The password and the URL only with `show_secrets` (the CLI allows it to admins)."""
    service = services.require(host, kind, name)
    container = containers.find(host, service)
    spec = service.spec
    data: dict[str, object] = {
        "name": name,
        "kind": kind,
        "version": service.version,
        "status": container.status if container else "missing",
        "links": services.links(host, kind, name),
        "env_key": spec.env_key,
        "host": services.alias(kind, name),
        "port": spec.port,
        "container": containers.container_name(host, service),
        "volume": services.volume_name(host.settings, kind, name),
        "backups": folder(host, service) + "/backups",
        "created": service.created_at,
        **{key: services.get_setting(host, kind, name, key) for key in services.SETTINGS},
    }
    linked = services.links(host, kind, name)
    if kind == "postgres":
        data["database"] = services.database(name)
        data["owner"] = services.OWNER_ROLE
        data["roles"] = {app: services.app_role(app) if services.link_password(host, kind, name, app)
                         else f"{services.SUPERUSER} (linked by an earlier version: `minipaas init` upgrades it)"
                         for app in linked}
    if show_secrets:
        # Postgres: the superuser's, which logs in inside the container only (postgres:connect --superuser)
        data["password"] = service.password
        if kind == "postgres":
            # a review app's own database is named in its own config (addons/reviewdbs.py)
            data["urls"] = {app: config.own(host, app).get(services.link_key(host, kind, name, app) or "", "")
                            if parent_of(app) else
                            services.url(spec, name, services.link_password(host, kind, name, app), app)
                            for app in linked if services.link_password(host, kind, name, app)}
        else:
            data["url"] = services.url(spec, name, service.password)
    return data


def listing(host: Host, kind: str) -> list[dict[str, object]]:
    rows = []
    for service in services.all_of(host, kind):
        container = containers.find(host, service)
        rows.append({"name": service.name, "version": service.version,
                     "status": container.status if container else "missing",
                     "links": services.links(host, kind, service.name)})
    return rows


def restore_all(host: Host, progress: Progress) -> list[str]:
    """Every service running and answering again (before the apps that need them); the ones that could not be."""
    failed = []
    for service in services.all_of(host):
        try:
            containers.ensure_running(host, service, progress)
        except MinipaasError as exc:
            progress(f" !     {service.kind} service {service.name}: {exc}")
            failed.append(f"{service.kind}:{service.name}")
            continue
        progress(f"-----> {service.kind} service {service.name} is running")
    return failed


def set_limits(host: Host, kind: str, name: str, changes: dict[str, str], progress: Progress) -> None:
    service = services.require(host, kind, name)
    for key, value in changes.items():  # all checked before any is stored
        services.check_setting(kind, name, key, value)
    for key, value in changes.items():
        services.set_setting(host, kind, name, key, value)
    progress(f"-----> {kind} service {name}: {', '.join(f'{k}={v}' for k, v in changes.items())}")
    containers.replace(host, service, progress)
