"""A Postgres service's roles and login rules, applied in its container: the owner role and the database it
owns, a role per linked app, `pg_hba.conf` and `pg_ident.conf`, and what an earlier version left (apps with
the superuser's URL, tables the superuser owns). The SQL and the files are pgroles.py's (pure).

Everything here runs as the container's postgres user through `docker exec` and the local socket, with the
scripts on psql's stdin (never on a command line) in one transaction each (`--single-transaction`,
`ON_ERROR_STOP`): a script that fails changes nothing. Passwords reach the server as SCRAM verifiers only.
"""

from __future__ import annotations

from minipaas.adapters import engine
from minipaas.addons import pgroles
from minipaas.build import hostimages
from minipaas.errors import MinipaasError
from minipaas.state import services as records
from minipaas.state.host import Host
from minipaas.state.services import Service

PGDATA = "/var/lib/postgresql/data"  # the entrypoint's (build/hostimages.POSTGRES_ENTRYPOINT)
_PG_CTL = "/usr/lib/postgresql/15/bin/pg_ctl"
_USER = hostimages.POSTGRES.user


def psql(container: str, service: Service, script: str, *, role: str = records.SUPERUSER) -> str:
    """Run an SQL script as `role` in the service's database, in one transaction; its rows, one a line."""
    command = ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "--single-transaction",
               "-U", role, "-d", records.database(service.name)]
    code, out, errors = engine.exec_script(container, command, user=_USER, script=script.encode())
    if code != 0:
        raise MinipaasError(f"postgres service {service.name}: {_last(errors)}", detail=errors)
    return out


def psql_statements(container: str, service: Service, script: str, *, database: str = "postgres") -> str:
    """Run an SQL script as the superuser, each statement in a transaction of its own (CREATE and DROP DATABASE
    run in none); its rows, one a line."""
    command = ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-U", records.SUPERUSER, "-d", database]
    code, out, errors = engine.exec_script(container, command, user=_USER, script=script.encode())
    if code != 0:
        raise MinipaasError(f"postgres service {service.name}: {_last(errors)}", detail=errors)
    return out


def add_review(container: str, service: Service, review: str, password: str, database: str, *,
               copy_from: str | None) -> None:
    """A review app's role and its own database (`copy_from`: with that database's data, dumped and restored as
    the review app's role, so that all it gets is its own: pg_dump, not CREATE DATABASE ... TEMPLATE, which fails
    while the parent's containers are connected)."""
    role = records.app_role(review)
    psql(container, service, pgroles.review_grant(role, pgroles.verifier(password)))
    psql_statements(container, service, pgroles.review_database(database, role))
    if copy_from is None:
        return
    script = ('set -e; f="/tmp/minipaas-copy-$$.dump"; trap \'rm -f "$f"\' EXIT; '
              'pg_dump -Fc -U "$1" -d "$2" -f "$f"; '
              'pg_restore --no-owner --no-acl --exit-on-error --single-transaction -U "$1" --role="$3" -d "$4" "$f"')
    code, _out, errors = engine.exec_script(
        container, ["sh", "-c", script, "sh", records.SUPERUSER, copy_from, role, database], user=_USER, script=b"")
    if code != 0:
        raise MinipaasError(f"postgres service {service.name}: the copy of {copy_from} for {review} failed: "
                            f"{_last(errors)}", detail=errors)


def remove_review(container: str, service: Service, review: str, database: str) -> None:
    """A review app's database (its sessions ended) and then its role gone."""
    psql_statements(container, service, pgroles.drop_database(database))
    remove_role(container, service, records.app_role(review))


def database_exists(container: str, service: Service, database: str) -> bool:
    return bool(psql(container, service, pgroles.database_exists(database)).strip())


def prepare(container: str, service: Service) -> None:
    """The owner role as it must be, owning the database (made on first use; idempotent)."""
    psql(container, service, pgroles.prepare(records.database(service.name)))


def adopt(container: str, service: Service, app_roles: tuple[str, ...] = ()) -> None:
    """What a superuser (or one of `app_roles`) owns in the database given to the owner role."""
    psql(container, service, pgroles.adopt(app_roles))


def add_app(container: str, service: Service, app: str, password: str) -> None:
    """The app's own role, logging in with `password` (made again when it exists)."""
    psql(container, service, pgroles.grant(records.database(service.name), records.app_role(app),
                                           pgroles.verifier(password)))


def remove_app(container: str, service: Service, app: str) -> None:
    """The app's role gone, with its sessions; what it owned goes to the owner role (absent: nothing)."""
    remove_role(container, service, records.app_role(app))


def remove_role(container: str, service: Service, role: str) -> None:
    psql(container, service, pgroles.revoke(records.database(service.name), role))


def app_roles(container: str, service: Service) -> list[str]:
    return psql(container, service, pgroles.app_roles_query()).split()


def strangers(container: str, service: Service) -> list[str]:
    """Roles and event triggers minipaas did not make (an earlier version's apps had the superuser)."""
    return [line for line in psql(container, service, pgroles.STRANGERS).splitlines() if line.strip()]


def harden(host: Host, container: str, service: Service) -> bool:
    """`pg_hba.conf` and `pg_ident.conf` as pgroles.py renders them. When they are written (the first time:
    at `create`, or at the upgrade of a service an earlier version made; again after an edit by hand), the
    server reloads them, the superuser's sessions over TCP are ended and its password is made anew (an
    earlier version's apps had it). Returns whether they were written. Files the server reports an error
    in are put back as they were."""
    wanted = {f"{PGDATA}/pg_hba.conf": pgroles.hba(records.database(service.name)),
              f"{PGDATA}/pg_ident.conf": pgroles.ident_map()}
    before = _read(container, list(wanted))
    if before == wanted:
        return False  # as written before: the superuser's TCP sessions were ended then
    for path, text in wanted.items():
        _write(container, path, text)
    problems = psql(container, service, pgroles.CHECK_HBA).strip()
    if problems:
        for path, text in before.items():
            _write(container, path, text)
        raise MinipaasError(f"postgres service {service.name}: pg_hba.conf was refused ({_last(problems)}); "
                            "it was left as it was", detail=problems)
    _reload(container, service)
    password = records.new_password()
    psql(container, service, pgroles.set_superuser_password(pgroles.verifier(password))
         + pgroles.end_superuser_sessions())
    records.set_password(host, service.kind, service.name, password)
    return True


def _read(container: str, paths: list[str]) -> dict[str, str]:
    """The files' texts, read in one `docker exec` (a NUL after each: no text file holds one)."""
    script = 'for f in "$@"; do cat "$f" && printf "\\0" || exit 1; done'
    code, out, errors = engine.exec_script(container, ["sh", "-c", script, "sh", *paths], user=_USER, script=b"")
    texts = out.split("\0")[:-1]
    if code != 0 or len(texts) != len(paths):
        raise MinipaasError(f"cannot read {', '.join(paths)} in the service's container: {_last(errors)}",
                            detail=errors)
    return dict(zip(paths, texts, strict=True))


def put_file(container: str, path: str, text: str) -> None:
    """A file of the container's postgres user (0600) with `text`."""
    _write(container, path, text)


def _write(container: str, path: str, text: str) -> None:
    """The file replaced whole (a new file renamed over it: the server never reads half of one)."""
    code, _out, errors = engine.exec_script(
        container, ["sh", "-c", 'umask 077 && cat > "$1.minipaas" && mv "$1.minipaas" "$1"', "sh", path],
        user=_USER, script=text.encode())
    if code != 0:
        raise MinipaasError(f"cannot write {path} in the service's container: {_last(errors)}", detail=errors)


def _reload(container: str, service: Service) -> None:
    code, _out, errors = engine.exec_script(container, [_PG_CTL, "reload", "-s", "-D", PGDATA], user=_USER,
                                            script=b"")
    if code != 0:
        raise MinipaasError(f"postgres service {service.name}: the server did not reload: {_last(errors)}",
                            detail=errors)


def _last(errors: str) -> str:
    lines = [line for line in errors.splitlines() if line.strip()]
    return lines[-1][:200] if lines else "no output"
