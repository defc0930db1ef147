"""Backups of services: kept ones (`backup`, `backups`, `restore`, retention and the daily schedule) and
streamed ones (`export` to stdout, `import` from stdin, through ssh as well).

A Postgres backup is `pg_dump -Fc` (the custom format, zlib-compressed) of the service's database, taken by
the superuser without owners (pg_dump reads every object whoever owns it, and runs none of an app's code);
a restore runs as the owner role (docs/security.md, "Postgres: a role per app"), so what it makes belongs
to the role the linked apps act as, and no function in a dump runs with the superuser's rights. A Redis
one is the RDB snapshot `redis-cli --rdb` transfers. Each is a file under `services/<kind>/<name>/backups/`
(root's alone, like the whole home) with a `.sha256` file beside it; a restore checks it first. An import
or a restore never leaves a database half-written: the dump is read whole first, `pg_restore --list`
must accept it, and it is restored in one transaction (`--single-transaction --exit-on-error`), so a
truncated or corrupt dump changes nothing, even while the app writes.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

from minipaas.adapters import engine
from minipaas.addons import addons, containers, pgaccess, pgroles
from minipaas.build import hostimages
from minipaas.errors import Conflict, InvalidInput, MinipaasError, NotFound
from minipaas.progress import Progress
from minipaas.state import services as records
from minipaas.state.host import Host
from minipaas.state.services import Service

EXTENSIONS = {"postgres": "dump", "redis": "rdb"}
BACKUP_NAME = re.compile(r"(?P<stamp>\d{8}T\d{6}Z)\.(?P<ext>dump|rdb)")
STAMP = "%Y%m%dT%H%M%SZ"
DAILY = 24 * 3600 - 15 * 60  # a timer that runs a little early still finds yesterday's backup due
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Backup:
    name: str
    taken_at: float
    size: int


class Shipper(Protocol):
    def __call__(self, host: Host, service: Service, taken: Backup, progress: Progress) -> None: ...


# -- pure: names, listing, retention -------------------------------------------------------

def backup_name(kind: str, when: datetime.datetime) -> str:
    return f"{when.astimezone(datetime.UTC).strftime(STAMP)}.{EXTENSIONS[kind]}"


def parse_name(name: str) -> float | None:
    """When a backup was taken, from its name (None: not a backup's name)."""
    match = BACKUP_NAME.fullmatch(name)
    if not match:
        return None
    return datetime.datetime.strptime(match.group("stamp"), STAMP).replace(tzinfo=datetime.UTC).timestamp()


def beyond_retention(backups: list[Backup], keep: int) -> list[Backup]:
    """The backups retention removes: all but the newest `keep`."""
    return sorted(backups, key=lambda b: b.taken_at, reverse=True)[keep:]


def is_due(backups: list[Backup], now: float, schedule: str) -> bool:
    if schedule != "daily":
        return False
    newest = max((b.taken_at for b in backups), default=None)
    return newest is None or now - newest >= DAILY


def sha256_line(digest: str, name: str) -> str:
    """The `.sha256` file's text, as `sha256sum -c` reads it."""
    return f"{digest}  {name}\n"


# -- kept backups --------------------------------------------------------------------------

def folder(host: Host, service: Service) -> Path:
    path = Path(addons.folder(host, service)) / "backups"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    for part in (path, path.parent, path.parent.parent, path.parent.parent.parent):
        part.chmod(0o700)  # services/ and below: root's alone, whatever made them
    return path


def listing(host: Host, service: Service) -> list[Backup]:
    """The service's backups, oldest first."""
    found = []
    for entry in folder(host, service).iterdir():
        taken = parse_name(entry.name)
        if taken is not None and entry.is_file():
            found.append(Backup(entry.name, taken, entry.stat().st_size))
    return sorted(found, key=lambda b: b.taken_at)


def backup(host: Host, kind: str, name: str, progress: Progress) -> Backup:
    """A new kept backup, checksummed."""
    service = records.require(host, kind, name)
    container = containers.ensure_running(host, service, progress)
    target_dir = folder(host, service)
    file_name = backup_name(kind, datetime.datetime.now(datetime.UTC))
    target = target_dir / file_name
    if target.exists():
        raise Conflict(f"a backup {file_name} was taken this second already")
    partial = target_dir / f".{file_name}.partial"
    with open(partial, "wb") as out:
        _dump(container.id, service, out)
    digest = sha256(partial)
    (target_dir / f"{file_name}.sha256").write_text(sha256_line(digest, file_name), encoding="utf-8")
    os.replace(partial, target)
    size = target.stat().st_size
    progress(f"-----> Backed up {kind} service {name}: {file_name} ({size / 1e3:.0f} kB, sha256 {digest[:12]})")
    return Backup(file_name, parse_name(file_name) or 0.0, size)


def prune(host: Host, kind: str, name: str, progress: Progress) -> list[str]:
    service = records.require(host, kind, name)
    keep = int(records.get_setting(host, kind, name, "backup-retention"))
    removed = []
    for old in beyond_retention(listing(host, service), keep):
        (folder(host, service) / old.name).unlink(missing_ok=True)
        (folder(host, service) / f"{old.name}.sha256").unlink(missing_ok=True)
        removed.append(old.name)
        progress(f"       Removed {old.name} (beyond the retention of {keep})")
    return removed


def run_due(host: Host, progress: Progress, now: float, then: Shipper | None = None) -> list[str]:
    """The periodic entry point: a backup of each service whose schedule says one is due, then retention.
    `then` is given each new backup (addons/offsite.py ships it off the host; the local one is kept whatever it
    says). One service failing does not stop the others; the ones that failed are returned."""
    failed = []
    for service in records.all_of(host):
        schedule = records.get_setting(host, service.kind, service.name, "backup-schedule")
        if not is_due(listing(host, service), now, schedule):
            continue
        try:
            taken = backup(host, service.kind, service.name, progress)
            prune(host, service.kind, service.name, progress)
            if then is not None:
                then(host, service, taken, progress)
        except MinipaasError as exc:
            progress(f" !     {service.kind} service {service.name}: {exc}")
            failed.append(f"{service.kind}:{service.name}")
    return failed


def refuse_linked(host: Host, service: Service, what: str, force: bool) -> None:
    """Replacing a database its apps write to loses what they write meanwhile: said, unless --force."""
    apps = records.links(host, service.kind, service.name)
    if apps and not force:
        raise Conflict(f"{service.kind} service {service.name} is linked to {', '.join(apps)}: {what} replaces "
                       f"what they write meanwhile; unlink them first, or add --force")


def restore(host: Host, kind: str, name: str, backup_file: str, progress: Progress, *, force: bool = False) -> None:
    """A kept backup back into the service, after checking its checksum."""
    service = records.require(host, kind, name)
    postgres_only(service, "restore")
    refuse_linked(host, service, "a restore", force)
    if parse_name(backup_file) is None:
        raise InvalidInput(f"invalid backup name {backup_file[:80]!r}; `{kind}:backups {name}` lists them")
    path = folder(host, service) / backup_file
    if not path.is_file():
        raise NotFound(f"{kind} service {name} has no backup {backup_file}")
    sums = path.with_name(f"{backup_file}.sha256")
    expected = sums.read_text(encoding="utf-8").split()[0] if sums.is_file() else ""
    if expected != sha256(path):
        raise InvalidInput(f"backup {backup_file} does not match its checksum; it was not restored")
    with open(path, "rb") as dump:
        restore_file(host, service, dump, progress)
    progress(f"-----> Restored {kind} service {name} from {backup_file}")


# -- streamed ------------------------------------------------------------------------------

def export(host: Host, kind: str, name: str, out: IO[bytes], progress: Progress) -> None:
    service = records.require(host, kind, name)
    container = containers.ensure_running(host, service, progress)
    _dump(container.id, service, out)


def import_(host: Host, kind: str, name: str, source: IO[bytes], progress: Progress, *, force: bool = False) -> None:
    """A dump from `source` (stdin) into the service: read whole first, checked, then one transaction."""
    service = records.require(host, kind, name)
    postgres_only(service, "import")
    refuse_linked(host, service, "an import", force)
    spool = folder(host, service).parent
    with tempfile.TemporaryFile(dir=spool) as copy:
        shutil.copyfileobj(source, copy, _CHUNK)
        if copy.tell() == 0:
            raise InvalidInput("no dump on stdin (`postgres:import NAME < file.dump`)")
        copy.seek(0)
        restore_file(host, service, copy, progress)
    progress(f"-----> Imported the dump into {kind} service {name}")


# -- the servers' own tools ----------------------------------------------------------------

def _dump(container: str, service: Service, out: IO[bytes]) -> None:
    if service.kind == "postgres":
        command = ["pg_dump", "-Fc", "-Z", "6", "--no-owner", "-d", records.database(service.name)]
    else:
        # redis-cli writes the RDB to a file only; the user's /tmp in the container, then out.
        command = ["sh", "-c", "minipaas-redis-cli --rdb /tmp/minipaas-backup.rdb >/dev/null "
                   "&& cat /tmp/minipaas-backup.rdb; code=$?; rm -f /tmp/minipaas-backup.rdb; exit $code"]
    code, errors = engine.exec_io(container, command, user=hostimages.SPECS[service.kind].user, stdout=out)
    if code != 0:
        raise MinipaasError(f"the dump of {service.kind} service {service.name} failed (exit {code}): "
                            f"{_last(errors)}", detail=errors)


def restore_file(host: Host, service: Service, dump: IO[bytes], progress: Progress) -> None:
    container = containers.ensure_running(host, service, progress)
    start = dump.tell()
    with tempfile.TemporaryFile() as listing:
        code, errors = engine.exec_io(container.id, ["pg_restore", "--list"], user="postgres", stdin=dump,
                                      stdout=listing)
        if code != 0:
            raise InvalidInput(f"not a dump pg_restore can read ({_last(errors)}); the database was not changed")
        listing.seek(0)
        entries = listing.read().decode("utf-8", "replace")
    # Every object of the database the owner role's first (one a superuser or an app role owns could not be
    # replaced by it), then the dump restored by the owner role itself; extensions it cannot drop are kept.
    pgaccess.prepare(container.id, service)
    pgaccess.adopt(container.id, service,
                   tuple(records.app_role(app) for app in records.links(host, service.kind, service.name)))
    kept = set(pgaccess.psql(container.id, service, pgroles.FOREIGN_EXTENSIONS).split())
    list_file = f"/tmp/minipaas-restore-{os.getpid()}.list"
    pgaccess.put_file(container.id, list_file, pgroles.restore_list(entries, kept))
    dump.seek(start)
    try:
        code, errors = engine.exec_io(
            container.id,
            ["pg_restore", "--single-transaction", "--exit-on-error", "--clean", "--if-exists", "--no-owner",
             "--no-privileges", "-L", list_file, "-U", records.OWNER_ROLE, "-d", records.database(service.name)],
            user="postgres", stdin=dump)
    finally:
        engine.exec_io(container.id, ["rm", "-f", list_file], user="postgres")
    if code != 0:
        raise InvalidInput(f"the dump could not be restored ({_last(errors)}); the database was not changed")


def postgres_only(service: Service, what: str) -> None:
    if service.kind != "postgres":
        raise InvalidInput(f"{service.kind}:{what} is not available: Redis backups are kept and exported only "
                           "(put the .rdb file in place of the service's by hand)")


def _last(errors: str) -> str:
    lines = [line for line in errors.splitlines() if line.strip()]
    return lines[-1][:200] if lines else "no output"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()
