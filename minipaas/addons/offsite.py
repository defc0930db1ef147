"""Postgres backups off the host, in an S3-compatible store (dokku-postgres' `backup-auth`, `backup-target`):
each kept backup also uploaded, with its sha256 as the object's metadata (`x-amz-meta-sha256`); the store's
copies under the same retention as the local ones; `restore NAME s3://...` checked against that sha256 before
anything is changed; and the monthly test restore into a scratch database, reported as an event.

Objects are `PREFIX/<service>/<stamp>.dump`: one folder a service, so retention never counts another
service's backups. The keys are records (state/offsite.py); nothing here prints the secret key, and `info`
shows the access key's first 4 characters only. The store itself is adapters/s3.py's (boto3).
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from minipaas.access import events
from minipaas.adapters import engine, s3
from minipaas.addons import backups, containers, pgaccess, pgroles
from minipaas.errors import InvalidInput, MinipaasError, NotFound
from minipaas.progress import Progress
from minipaas.state import offsite as records
from minipaas.state import services
from minipaas.state.host import Host
from minipaas.state.services import Service

BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")  # S3's bucket names (and every compatible store's)
CHECK_EVERY = 30 * 24 * 3600  # the test restore: monthly
SCRATCH = "_minipaas_verify"  # no service's database (nor a review app's, `<db>_<slug>`) starts with `_`
_MAX_PREFIX = 512


@dataclass(frozen=True)
class Target:
    bucket: str
    prefix: str  # "" or "a/b" (no leading or trailing slash)

    def url(self, key: str = "") -> str:
        return f"s3://{self.bucket}/{key}" if key else f"s3://{self.bucket}/{self.prefix}".rstrip("/")


# -- pure ----------------------------------------------------------------------------------

def parse_target(url: str) -> Target:
    """`s3://BUCKET/PREFIX` (a prefix optional, slashes at its ends ignored)."""
    shown = url if len(url) <= 80 else url[:77] + "..."
    if not url.startswith("s3://") or any(c.isspace() or ord(c) < 32 for c in url):
        raise InvalidInput(f"invalid backup target {shown!r}: use s3://BUCKET/PREFIX")
    bucket, _, prefix = url[len("s3://"):].partition("/")
    prefix = prefix.strip("/")
    if not BUCKET.fullmatch(bucket) or ".." in bucket:
        raise InvalidInput(f"invalid bucket name {bucket[:70]!r}: 3 to 63 lowercase letters, digits, dots and dashes")
    if len(prefix) > _MAX_PREFIX or "//" in prefix or any(p in (".", "..") for p in prefix.split("/")):
        raise InvalidInput(f"invalid backup target {shown!r}: the prefix has an empty, . or .. part, or is too long")
    return Target(bucket, prefix)


def folder_key(target: Target, service: str) -> str:
    """Where a service's objects are: `PREFIX/<service>/`."""
    return f"{target.prefix}/{service}/" if target.prefix else f"{service}/"


def stored_backups(keys: list[str], folder: str) -> list[backups.Backup]:
    """The objects of `folder` that are Postgres backups (by name), oldest first; names are keys' last parts."""
    found = []
    for key in keys:
        name = key[len(folder):] if key.startswith(folder) else ""
        taken = backups.parse_name(name)
        if taken is not None and name.endswith(".dump"):
            found.append(backups.Backup(name, taken, 0))
    return sorted(found, key=lambda b: b.taken_at)


def check_keys(access_key: str, secret_key: str, endpoint: str) -> None:
    for label, value in (("access key", access_key), ("secret key", secret_key)):
        if not value or len(value) > 256 or any(c.isspace() or ord(c) < 32 for c in value):
            raise InvalidInput(f"invalid {label}: one word of at most 256 characters")
    if endpoint and (not re.fullmatch(r"https?://[A-Za-z0-9.:\[\]-]+(/\S*)?", endpoint) or len(endpoint) > 512):
        raise InvalidInput(f"invalid endpoint {endpoint[:80]!r}: use http(s)://HOST[:PORT]")


def shown_key(access_key: str) -> str:
    """The access key as `info` shows it: its first 4 characters."""
    return access_key[:4] + "…"


def due_for_check(last: float, now: float) -> bool:
    return now - last > CHECK_EVERY


# -- settings ------------------------------------------------------------------------------

def _creds(auth: records.Auth) -> s3.Credentials:
    return s3.Credentials(auth.access_key, auth.secret_key, auth.region, auth.endpoint)


def _postgres(host: Host, kind: str, name: str) -> Service:
    service = services.require(host, kind, name)
    if kind != "postgres":
        raise InvalidInput(f"{kind}:backup-auth and backup-target are for Postgres services")
    return service


def set_auth(host: Host, kind: str, name: str, given: records.Auth, progress: Progress) -> None:
    """The keys kept; checked against the target first when there is one (refused: nothing changed)."""
    _postgres(host, kind, name)
    check_keys(given.access_key, given.secret_key, given.endpoint)
    url = records.target(host, kind, name)
    if url:
        target = parse_target(url)
        s3.check(_creds(given), target.bucket, folder_key(target, name))
    records.set_auth(host, kind, name, given)
    progress(f"-----> {kind} service {name}: backup-auth set (access key {shown_key(given.access_key)}"
             + (f", endpoint {given.endpoint}" if given.endpoint else "") + ")")


def clear_auth(host: Host, kind: str, name: str, progress: Progress) -> None:
    _postgres(host, kind, name)
    records.set_auth(host, kind, name, None)
    progress(f"-----> {kind} service {name}: backup-auth removed")


def set_target(host: Host, kind: str, name: str, url: str | None, progress: Progress) -> None:
    """The target (None: none); checked with the keys first (refused: nothing changed)."""
    _postgres(host, kind, name)
    if url is None:
        records.set_target(host, kind, name, "")
        progress(f"-----> {kind} service {name}: no backup target (backups are kept on this host only)")
        return
    target = parse_target(url)
    auth = records.auth(host, kind, name)
    if auth is None:
        raise InvalidInput(f"{kind} service {name} has no keys for the store: `{kind}:backup-auth {name} "
                           "ACCESS_KEY SECRET_KEY` first")
    s3.check(_creds(auth), target.bucket, folder_key(target, name))
    records.set_target(host, kind, name, target.url())
    progress(f"-----> {kind} service {name}: backups also go to {target.url()}/{name}/")


def info(host: Host, kind: str, name: str) -> dict[str, object]:
    """What `info` adds: the target, whether keys are set (4 characters of the access key), the last check."""
    auth = records.auth(host, kind, name)
    at, outcome = records.last_check(host, kind, name)
    return {"backup-target": records.target(host, kind, name) or "-",
            "backup-auth": f"set (access key {shown_key(auth.access_key)})" if auth else "-",
            "backup-verified": f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(at))} {outcome}" if at
            else "never (the daily timer tests a restore monthly)"}


# -- shipping ------------------------------------------------------------------------------

def _configured(host: Host, service: Service) -> tuple[s3.Credentials, Target] | None:
    url = records.target(host, service.kind, service.name)
    auth = records.auth(host, service.kind, service.name)
    return (_creds(auth), parse_target(url)) if url and auth else None


def ship(host: Host, service: Service, taken: backups.Backup, progress: Progress) -> None:
    """A kept backup uploaded (streamed from its file) with its sha256, then the store's retention. A store
    that refuses is one line; the local backup stays."""
    configured = _configured(host, service)
    if configured is None:
        return
    creds, target = configured
    folder = folder_key(target, service.name)
    local = backups.folder(host, service) / taken.name
    digest = (local.with_name(f"{taken.name}.sha256")).read_text(encoding="utf-8").split()[0]
    try:
        with open(local, "rb") as source:
            s3.upload(creds, target.bucket, folder + taken.name, source, {"sha256": digest})
        progress(f"       Uploaded to {target.url(folder + taken.name)} (sha256 {digest[:12]})")
        keep = int(services.get_setting(host, service.kind, service.name, "backup-retention"))
        stored = stored_backups([o.key for o in s3.listing(creds, target.bucket, folder)], folder)
        for old in backups.beyond_retention(stored, keep):
            s3.delete(creds, target.bucket, folder + old.name)
            progress(f"       Removed {target.url(folder + old.name)} (beyond the retention of {keep})")
    except s3.StoreRefused as exc:
        raise s3.StoreRefused(f"{exc.message}; the local backup {taken.name} is kept") from None


def backup(host: Host, kind: str, name: str, progress: Progress) -> None:
    """`backup` by hand: kept, then shipped when a target is set."""
    taken = backups.backup(host, kind, name, progress)
    ship(host, services.require(host, kind, name), taken, progress)


def run_due(host: Host, progress: Progress, now: float) -> list[str]:
    """The daily timer's: due backups (shipped), then the monthly test restores. The ones that failed."""
    failed = backups.run_due(host, progress, now, then=ship)
    for service in services.all_of(host, "postgres"):
        at, _ = records.last_check(host, service.kind, service.name)
        if not due_for_check(at, now) or not (_configured(host, service) or backups.listing(host, service)):
            continue
        if not verify(host, service.kind, service.name, progress, now=now):
            failed.append(f"{service.kind}:{service.name} (test restore)")
    return failed


# -- taking back ---------------------------------------------------------------------------

def _fetch(host: Host, service: Service, url: str, spool: Path, progress: Progress) -> tuple[Path, str]:
    """The object `url` names (or the newest backup under it, when it names a folder) downloaded into `spool`
    and checked against its sha256; its file and its URL."""
    auth = records.auth(host, service.kind, service.name)
    if auth is None:
        raise InvalidInput(f"{service.kind} service {service.name} has no keys for the store: "
                           f"`{service.kind}:backup-auth {service.name} ACCESS_KEY SECRET_KEY` first")
    creds, target = _creds(auth), parse_target(url)
    last = target.prefix.rsplit("/", 1)[-1]
    if backups.parse_name(last) is not None:
        key = target.prefix
    else:
        folder = f"{target.prefix}/" if target.prefix else ""
        stored = stored_backups([o.key for o in s3.listing(creds, target.bucket, folder)], folder)
        if not stored:
            raise NotFound(f"no backup in {target.url()}/ (objects named like 20261208T020000Z.dump)")
        key = folder + stored[-1].name
        progress(f"-----> The newest backup in {target.url()}/ is {stored[-1].name}")
    expected = s3.metadata(creds, target.bucket, key).get("sha256", "")
    path = spool / "download.dump"
    with open(path, "wb") as out:
        s3.download(creds, target.bucket, key, out)
    if not expected or expected != backups.sha256(path):
        why = "none is stored" if not expected else "it differs"
        raise InvalidInput(f"{target.url(key)} does not match its sha256 ({why}); it was not restored")
    return path, target.url(key)


def restore(host: Host, kind: str, name: str, url: str, progress: Progress, *, force: bool = False) -> None:
    service = services.require(host, kind, name)
    backups.postgres_only(service, "restore")
    backups.refuse_linked(host, service, "a restore", force)
    with tempfile.TemporaryDirectory(dir=backups.folder(host, service)) as spool:
        path, source = _fetch(host, service, url, Path(spool), progress)
        with open(path, "rb") as dump:
            backups.restore_file(host, service, dump, progress)
    progress(f"-----> Restored {kind} service {name} from {source} (sha256 checked)")


def verify(host: Host, kind: str, name: str, progress: Progress, *, now: float) -> bool:
    """The test restore: the newest backup (from the store when a target is set, else this host's) restored
    into a scratch database of the service, its tables counted, the database dropped; recorded and reported as
    the event `backup-verified NAME` or `backup-failed NAME`."""
    service = services.require(host, kind, name)
    backups.postgres_only(service, "backup-verify")
    try:
        with tempfile.TemporaryDirectory(dir=backups.folder(host, service)) as spool:
            configured = _configured(host, service)
            if configured is not None:
                path, source = _fetch(host, service, configured[1].url() + f"/{name}/", Path(spool), progress)
            else:
                kept = backups.listing(host, service)
                if not kept:
                    raise NotFound(f"{kind} service {name} has no backup to test")
                path, source = backups.folder(host, service) / kept[-1].name, kept[-1].name
            tables = _scratch_restore(host, service, path)
        outcome = f"{source} restored into a scratch database: {tables} table{'' if tables == 1 else 's'}"
        progress(f"-----> Test restore of {kind} service {name}: {outcome}")
        event = "backup-verified"
    except MinipaasError as exc:
        outcome = f"test restore failed: {exc.message}"
        progress(f" !     {kind} service {name}: {outcome}")
        event = "backup-failed"
    records.set_check(host, kind, name, now, f"ok ({outcome})" if event == "backup-verified" else outcome)
    events.announce(host, event, app="", command=f"{event} {name}", outcome=outcome, user="minipaas")
    return event == "backup-verified"


def _scratch_restore(host: Host, service: Service, path: Path) -> int:
    """The dump restored into SCRATCH as the owner role (no function in it runs as the superuser); its tables
    counted; SCRATCH dropped whatever happened."""
    container = containers.ensure_running(host, service, lambda _line: None).id
    owner = pgroles.ident(services.OWNER_ROLE)
    pgaccess.prepare(container, service)
    pgaccess.psql_statements(container, service, pgroles.drop_database(SCRATCH)
                             + f"CREATE DATABASE {pgroles.ident(SCRATCH)} OWNER {owner} TEMPLATE template0;\n")
    list_file = f"/tmp/minipaas-verify-{os.getpid()}.list"
    try:
        # The extensions a superuser made in the service's database (the owner role could not) made alike in the
        # scratch one, and left out of the restore, as a restore does (backups.restore_file).
        foreign = sorted(set(pgaccess.psql(container, service, pgroles.FOREIGN_EXTENSIONS).split()))
        if foreign:
            pgaccess.psql_statements(container, service, "".join(
                f"CREATE EXTENSION IF NOT EXISTS {pgroles.ident(name)};\n" for name in foreign), database=SCRATCH)
        with tempfile.TemporaryFile() as listing, open(path, "rb") as dump:
            code, errors = engine.exec_io(container, ["pg_restore", "--list"], user="postgres", stdin=dump,
                                          stdout=listing)
            if code != 0:
                raise MinipaasError(f"not a dump pg_restore can read: {_last(errors, code)}")
            listing.seek(0)
            entries = listing.read().decode("utf-8", "replace")
        pgaccess.put_file(container, list_file, pgroles.restore_list(entries, set(foreign)))
        with open(path, "rb") as dump:
            code, errors = engine.exec_io(
                container, ["pg_restore", "--no-owner", "--no-acl", "--exit-on-error", "--single-transaction",
                            "-L", list_file, "-U", services.SUPERUSER, f"--role={services.OWNER_ROLE}",
                            "-d", SCRATCH], user="postgres", stdin=dump)
        if code != 0:
            raise MinipaasError(f"pg_restore failed: {_last(errors, code)}")
        out = pgaccess.psql_statements(container, service, "SELECT count(*) FROM pg_tables WHERE schemaname "
                                       "NOT IN ('pg_catalog', 'information_schema');\n", database=SCRATCH)
        return int(out.split()[0]) if out.split() else 0
    finally:
        engine.exec_io(container, ["rm", "-f", list_file], user="postgres")
        pgaccess.psql_statements(container, service, pgroles.drop_database(SCRATCH))


def _last(errors: str, code: int) -> str:
    lines = [line for line in errors.splitlines() if line.strip()]
    return lines[-1][:200] if lines else f"exit {code}"
