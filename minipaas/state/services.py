"""Services apps link (PostgreSQL, Redis) as records: which exist, their password, the apps linked to
each (with a Postgres link's own role password), their settings; and the pure parts: names, the URL an
app gets, the names on the engine and in Postgres.

Passwords are generated here and kept in the database only (root's alone, like every app's config).
The containers, volumes, roles and backups are addons/addons*.py's and addons/pgaccess.py's.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import urllib.parse
from dataclasses import dataclass

from minipaas.errors import Conflict, InvalidInput, NotFound
from minipaas.state import store
from minipaas.state.host import Host
from minipaas.state.names import is_count, is_cpus, is_size
from minipaas.state.settings import Settings


@dataclass(frozen=True)
class Kind:
    """What one kind of service is to an app."""

    name: str  # postgres, redis
    versions: tuple[str, ...]
    port: int
    env_key: str  # the config key a link sets
    scheme: str


POSTGRES = Kind("postgres", ("15",), 5432, "DATABASE_URL", "postgres")
REDIS = Kind("redis", ("7",), 6379, "REDIS_URL", "redis")
KINDS = {kind.name: kind for kind in (POSTGRES, REDIS)}

# Like an app's (names.py), and no `--`: one DNS label, a container name part, a database name.
SERVICE_NAME = re.compile(r"[a-z][a-z0-9-]{0,62}")


def check_name(name: str) -> str:
    if not SERVICE_NAME.fullmatch(name) or name.endswith("-") or "--" in name:
        shown = name if len(name) <= 80 else name[:77] + "..."
        raise InvalidInput(f"invalid service name {shown!r}: use 1 to 63 lowercase letters, digits and dashes, "
                           "starting with a letter")
    return name


def kind_of(name: str) -> Kind:
    try:
        return KINDS[name]
    except KeyError:
        raise InvalidInput(f"unknown service kind {name!r}; known: {', '.join(KINDS)}") from None


# -- names on the engine and URLs ----------------------------------------------------------

def container_base(kind: str, name: str) -> str:
    """`svc.postgres.db`: app containers are `<app>.<process>.<n>` (n a number), so no app's can take it."""
    return f"svc.{kind}.{name}"


def container_name(settings: Settings, kind: str, name: str) -> str:
    return settings.container_name(container_base(kind, name))


def volume_name(settings: Settings, kind: str, name: str) -> str:
    return f"{settings.instance}.{kind}.{name}.data"


def own_network(settings: Settings, kind: str, name: str) -> str:
    """The service's own network, where it lives when no app is linked (app networks have no dots)."""
    return f"{settings.instance}.{kind}.{name}"


def alias(kind: str, name: str) -> str:
    """The host name a linked app's containers reach the service by, on the app's network."""
    return f"{kind}-{name}"


def database(name: str) -> str:
    """A Postgres service's database: named like the service."""
    return name


# A Postgres service's roles: the superuser (minipaas' own, inside the container only), the role that owns
# the database and everything in it (`OWNER_ROLE`, no app logs in as it), and one login role per linked app
# (`app_role`). App names have no `_`, so no app's role can be named like the other two.
SUPERUSER = "postgres"
OWNER_ROLE = "owner"
_ROLE_MAX = 63  # Postgres' NAMEDATALEN - 1: a longer name would be cut short by the server


def app_role(app: str) -> str:
    """The Postgres role a linked app logs in as: `app_<app>`, shortened with a hash when too long."""
    role = f"app_{app}"
    if len(role) > _ROLE_MAX:
        role = f"app_{app[:50]}_{hashlib.sha256(app.encode()).hexdigest()[:8]}"
    return role


def url(kind: Kind, name: str, password: str, app: str = "", *, db: str = "", number: int = 0) -> str:
    """What a linked app's `DATABASE_URL` / `REDIS_URL` says: for Postgres, the app's own role (its password) and
    the service's database (or a review app's own, `db`); for Redis, the database `number` (0: none said)."""
    if kind.name == "postgres" and not app:
        raise ValueError("a Postgres URL names the app whose role it is")
    secret = urllib.parse.quote(password, safe="")
    host = alias(kind.name, name)
    if kind.name == "postgres":
        return (f"{kind.scheme}://{app_role(app)}:{secret}@{host}:{kind.port}/"
                f"{urllib.parse.quote(db or database(name))}")
    return f"{kind.scheme}://:{secret}@{host}:{kind.port}" + (f"/{number}" if number else "")


# A review app's own database, in its parent's Postgres service: `<db>_<slug>`, within Postgres' 63 bytes.
# Review apps' login roles are members of this group role (and of nothing else): pg_hba.conf lets its members
# in by password to any database, where CONNECT (each review database's owner's alone) decides.
REVIEW_GROUP = "review_apps"
REDIS_DATABASES = 16  # redis.conf's default `databases`: 0 is the linked apps', 1 to 15 review apps'


def review_database(service: str, slug: str, *, distinct: str = "") -> str:
    """`<db>_<slug>`; when that is longer than 63 bytes, or `distinct` (another parent's review app of the same
    slug has it: the review app's name), cut and ended with a hash of the whole (and of `distinct`)."""
    plain = f"{database(service)}_{slug}"
    if len(plain) <= _ROLE_MAX and not distinct:
        return plain
    digest = hashlib.sha256(f"{plain}\0{distinct}".encode()).hexdigest()[:8]
    return f"{plain[:_ROLE_MAX - 9].rstrip('-_')}_{digest}"


def url_database(value: str) -> str | None:
    """The database a Postgres URL names (a review app's own, read back from its config); None: none."""
    path = urllib.parse.urlsplit(value).path.lstrip("/")
    return urllib.parse.unquote(path) or None


def url_number(value: str) -> int:
    """The Redis database a URL names (0 when it names none)."""
    path = urllib.parse.urlsplit(value).path.lstrip("/")
    return int(path) if path.isdigit() else 0


def free_redis_number(used: set[int]) -> int | None:
    """The lowest Redis database no review app of the service has (1 to 15); None: all 16 are taken."""
    return next((n for n in range(1, REDIS_DATABASES) if n not in used), None)


def new_password() -> str:
    # URL-safe: it goes into URLs as it is; 32 bytes of randomness.
    return secrets.token_urlsafe(32)


# -- records -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Service:
    kind: str
    name: str
    version: str
    password: str
    created_at: float

    @property
    def spec(self) -> Kind:
        return KINDS[self.kind]


def _service(row: object) -> Service:
    return Service(row["kind"], row["name"], row["version"], row["password"], row["created_at"])  # type: ignore[index]


def find(host: Host, kind: str, name: str) -> Service | None:
    row = host.db.execute("SELECT * FROM services WHERE kind = ? AND name = ?", (kind, name)).fetchone()
    return _service(row) if row else None


def require(host: Host, kind: str, name: str) -> Service:
    check_name(name)
    found = find(host, kind, name)
    if found is None:
        raise NotFound(f"{kind} service {name} does not exist (`{kind}:create {name}` makes it)")
    return found


def all_of(host: Host, kind: str | None = None) -> list[Service]:
    rows = host.db.execute("SELECT * FROM services WHERE ? IS NULL OR kind = ? ORDER BY kind, name", (kind, kind))
    return [_service(row) for row in rows]


def insert(host: Host, kind: Kind, name: str, version: str) -> Service:
    check_name(name)
    if version not in kind.versions:
        raise InvalidInput(f"{kind.name} {version} is not available; this host builds {', '.join(kind.versions)}")
    with store.transaction(host.db) as db:
        if db.execute("SELECT 1 FROM services WHERE kind = ? AND name = ?", (kind.name, name)).fetchone():
            raise Conflict(f"{kind.name} service {name} already exists")
        db.execute("INSERT INTO services (kind, name, version, password, created_at) VALUES (?, ?, ?, ?, ?)",
                   (kind.name, name, version, new_password(), store.now()))
    return require(host, kind.name, name)


def delete(host: Host, kind: str, name: str) -> None:
    with store.transaction(host.db) as db:  # its links and settings go with it
        db.execute("DELETE FROM services WHERE kind = ? AND name = ?", (kind, name))


# -- links ---------------------------------------------------------------------------------

def linked_services(host: Host, app: str) -> list[Service]:
    """The services an app itself is linked to (not through its parent)."""
    rows = host.db.execute("SELECT s.* FROM services s JOIN service_links l ON l.kind = s.kind AND l.name = s.name "
                           "WHERE l.app = ? ORDER BY s.kind, s.name", (app,))
    return [_service(row) for row in rows]


def links(host: Host, kind: str, name: str) -> list[str]:
    rows = host.db.execute("SELECT app FROM service_links WHERE kind = ? AND name = ? ORDER BY app", (kind, name))
    return [row["app"] for row in rows]


def linked_to(host: Host, app: str) -> list[Service]:
    """The services linked to an app; a review app's are its parent's (it inherits their URLs), except once a
    deployer pushed its branch (it gets no secret config, so neither their URLs nor their network)."""
    rows = host.db.execute(
        "SELECT s.* FROM services s JOIN service_links l ON l.kind = s.kind AND l.name = s.name "
        "WHERE l.app = ? OR l.app = (SELECT parent FROM apps WHERE name = ? AND deployer_pushed = 0) "
        "ORDER BY s.kind, s.name", (app, app))
    return [_service(row) for row in rows]


def add_link(host: Host, kind: str, name: str, app: str, env_key: str, password: str = "") -> None:
    """A link; `password` is a Postgres link's own role's ("" for Redis, whose apps share the service's)."""
    with store.transaction(host.db) as db:
        db.execute("INSERT INTO service_links (kind, name, app, env_key, password) VALUES (?, ?, ?, ?, ?)",
                   (kind, name, app, env_key, password))


def link_password(host: Host, kind: str, name: str, app: str) -> str:
    """A Postgres link's role password; "" for a link made before roles (its app has the superuser's URL)."""
    row = host.db.execute("SELECT password FROM service_links WHERE kind = ? AND name = ? AND app = ?",
                          (kind, name, app)).fetchone()
    return row["password"] if row else ""


def set_link_password(host: Host, kind: str, name: str, app: str, password: str) -> None:
    with store.transaction(host.db) as db:
        db.execute("UPDATE service_links SET password = ? WHERE kind = ? AND name = ? AND app = ?",
                   (password, kind, name, app))


def superuser_links(host: Host, kind: str, name: str) -> list[str]:
    """The apps of a Postgres service linked by an earlier version: their URL names the superuser."""
    rows = host.db.execute("SELECT app FROM service_links WHERE kind = ? AND name = ? AND kind = 'postgres' "
                           "AND password = '' ORDER BY app", (kind, name))
    return [row["app"] for row in rows]


def set_password(host: Host, kind: str, name: str, password: str) -> None:
    """The service's own password, changed (the superuser's, once an app had it)."""
    with store.transaction(host.db) as db:
        db.execute("UPDATE services SET password = ? WHERE kind = ? AND name = ?", (password, kind, name))


def remove_link(host: Host, kind: str, name: str, app: str) -> None:
    with store.transaction(host.db) as db:
        db.execute("DELETE FROM service_links WHERE kind = ? AND name = ? AND app = ?", (kind, name, app))


def link_key(host: Host, kind: str, name: str, app: str) -> str | None:
    row = host.db.execute("SELECT env_key FROM service_links WHERE kind = ? AND name = ? AND app = ?",
                          (kind, name, app)).fetchone()
    return row["env_key"] if row else None


# -- settings ------------------------------------------------------------------------------

SETTINGS = {
    "memory": ("256m", lambda v: is_size(v, at_least="6m")),  # the engine's least
    "cpus": ("", lambda v: v == "" or is_cpus(v)),
    "pids": ("256", lambda v: is_count(v, 16, 100_000)),
    "backup-schedule": ("off", lambda v: v in ("daily", "off")),
    "backup-retention": ("7", lambda v: is_count(v, 1, 10_000)),
}


def get_setting(host: Host, kind: str, name: str, key: str) -> str:
    row = host.db.execute("SELECT value FROM service_settings WHERE kind = ? AND name = ? AND key = ?",
                          (kind, name, key)).fetchone()
    return row["value"] if row else SETTINGS[key][0]


def check_setting(kind: str, name: str, key: str, value: str) -> None:
    _default, check = SETTINGS[key]
    if not check(value):
        raise InvalidInput(f"invalid value {value!r} for {kind}:{name}'s {key}")


def set_setting(host: Host, kind: str, name: str, key: str, value: str) -> None:
    check_setting(kind, name, key, value)
    with store.transaction(host.db) as db:
        db.execute("INSERT INTO service_settings (kind, name, key, value) VALUES (?, ?, ?, ?) "
                   "ON CONFLICT (kind, name, key) DO UPDATE SET value = excluded.value", (kind, name, key, value))
