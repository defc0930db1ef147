"""A review app's own databases in its parent's linked services, by the parent's `review-apps-db`:

- `empty` (the default, as a Heroku review app gets fresh add-ons): a Postgres database of its own, `<db>_<slug>`
  (services.review_database), owned by a role of its own that cannot reach the parent's database; its release
  command migrates it.
- `copy`: the same, with the parent's data at the review app's creation (pgaccess.add_review: pg_dump and
  pg_restore inside the service's container, as the review app's role).
- `shared`: nothing of its own; it inherits the parent's URL, as before.

Redis: `copy` and `empty` give it a database number of its own (1 to 15; 0 is the linked apps'), empty either way
(a Redis holds caches and queues: a copied queue would run its jobs twice); when the 15 are taken, it shares the
parent's and the push says so. Neither Redis database numbers nor key prefixes are a wall (any client may SELECT
another): it keeps review apps' keys apart, not a review app's code from the parent's keys.

Each is a link of the review app's own (a service_links row: the service joins its network, its role is dropped
with it by roles.forget_app) whose URL is the review app's own config, which it gets even when a deployer pushed
it (state/config.py): the parent's secret URL never. `drop` runs in lifecycle.destroy before the roles go.
"""

from __future__ import annotations

import contextlib

from minipaas.adapters import engine
from minipaas.addons import containers, pgaccess
from minipaas.build import hostimages
from minipaas.errors import MinipaasError
from minipaas.progress import Progress
from minipaas.state import apps, config, services
from minipaas.state.host import Host
from minipaas.state.names import review_parts
from minipaas.state.services import Service


def provision(host: Host, parent: str, review: str, progress: Progress, *, by_deployer: bool = False) -> None:
    """The review app's own databases in the services its parent is linked to (on its creation). A deployer's
    push gets no Redis database: Redis has one password for all, the parent's secret."""
    mode = apps.get_setting(host, parent, "review-apps-db")
    if mode == "shared":
        return
    for service in services.linked_services(host, parent):
        key = services.link_key(host, service.kind, service.name, parent) or service.spec.env_key
        if service.kind == "postgres":
            if services.superuser_links(host, service.kind, service.name):
                progress(f"-----> {review} shares {parent}'s database in postgres service {service.name}: an "
                         "earlier version linked the service (`minipaas init` gives its apps roles of their own)")
                continue
            _postgres(host, service, parent, review, key, copy=mode == "copy", progress=progress)
        elif not by_deployer:
            _redis(host, service, parent, review, key, progress)


def withhold(host: Host, review: str, progress: Progress) -> None:
    """A deployer pushed a review app an admin's push made: its Redis databases (their URL holds the service's
    one password) are emptied and unlinked; its Postgres databases, its own role's, stay."""
    for service in services.linked_services(host, review):
        if service.kind == "postgres":
            continue
        key = services.link_key(host, service.kind, service.name, review) or service.spec.env_key
        _drop_one(host, service, review, key, progress)
        services.remove_link(host, service.kind, service.name, review)
        config.unset_many(host, review, [key])


def _postgres(host: Host, service: Service, parent: str, review: str, key: str, *, copy: bool,
              progress: Progress) -> None:
    container = containers.ensure_running(host, service, progress).id
    pgaccess.prepare(container, service)  # the review group, on a service made before it
    pgaccess.harden(host, container, service)  # pg_hba.conf's line for it
    parts = review_parts(review)
    slug = parts[1] if parts else review
    database = services.review_database(service.name, slug)
    if pgaccess.database_exists(container, service, database):  # another app's review app of that slug
        database = services.review_database(service.name, slug, distinct=review)
    password = services.new_password()
    services.add_link(host, service.kind, service.name, review, key, password)
    try:
        source = services.database(service.name) if copy else None
        pgaccess.add_review(container, service, review, password, database, copy_from=source)
        config.set_many(host, review, {key: services.url(service.spec, service.name, password, review,
                                                         db=database)}, secret=True)
    except BaseException:
        with contextlib.suppress(MinipaasError):
            pgaccess.remove_review(container, service, review, database)
        services.remove_link(host, service.kind, service.name, review)
        raise
    what = f"a copy of {parent}'s data" if copy else "empty"
    progress(f"-----> {review} has a database of its own in postgres service {service.name}: {database} "
             f"({what}), as {services.app_role(review)}")


def _redis(host: Host, service: Service, parent: str, review: str, key: str, progress: Progress) -> None:
    used = {services.url_number(config.own(host, other).get(other_key, ""))
            for other, other_key in _review_links(host, service)}
    number = services.free_redis_number(used)
    if number is None:
        progress(f"-----> {review} shares redis service {service.name}'s database 0 with {parent}: its "
                 f"{services.REDIS_DATABASES - 1} review databases are taken")
        return
    services.add_link(host, service.kind, service.name, review, key)
    config.set_many(host, review, {key: services.url(service.spec, service.name, service.password, number=number)},
                    secret=True)
    progress(f"-----> {review} has redis service {service.name}'s database {number} of its own")


def _review_links(host: Host, service: Service) -> list[tuple[str, str]]:
    """The review apps with a link of their own to the service, with the key it sets."""
    found = []
    for app in services.links(host, service.kind, service.name):
        if review_parts(app) is not None:
            found.append((app, services.link_key(host, service.kind, service.name, app) or service.spec.env_key))
    return found


def drop(host: Host, review: str, progress: Progress) -> None:
    """The review app's own databases gone (its Postgres roles go after, with roles.forget_app). A service that
    is down keeps them: said, in one line each."""
    for service in services.linked_services(host, review):
        key = services.link_key(host, service.kind, service.name, review) or service.spec.env_key
        _drop_one(host, service, review, key, progress)


def _drop_one(host: Host, service: Service, review: str, key: str, progress: Progress) -> None:
    value = config.own(host, review).get(key, "")
    found = containers.find(host, service)
    try:
        if found is None or found.status != "running":
            raise MinipaasError("its container is not running")
        if service.kind == "postgres":
            database = services.url_database(value)
            if database and database != services.database(service.name):
                pgaccess.remove_review(found.id, service, review, database)
                progress(f"dropped database {database} of postgres service {service.name}")
        elif (number := services.url_number(value)) > 0:
            _flush(found.id, service, number)
            progress(f"emptied database {number} of redis service {service.name}")
    except MinipaasError as exc:
        progress(f"{service.kind} service {service.name} keeps {review}'s database ({exc})")


def _flush(container: str, service: Service, number: int) -> None:
    code, _out, errors = engine.exec_script(container, ["minipaas-redis-cli", "-n", str(number), "FLUSHDB"],
                                            user=hostimages.SPECS["redis"].user, script=b"")
    if code != 0:
        raise MinipaasError(f"redis service {service.name}: {errors.strip()[-200:] or 'FLUSHDB failed'}")
