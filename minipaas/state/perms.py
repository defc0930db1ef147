"""File modes and owners under MINIPAAS_HOME: which local account may read what.

The home holds every app's config (and the config of each past release), the ssh keys, the apps'
source, logs and TLS private keys: no account but root may read them. nginx's *worker processes*,
which run as MINIPAAS_NGINX_USER (www-data), must still reach three things: the static sites' files,
the ACME webroot and nginx's temp folders. (nginx's control socket is bound by its master, as root,
in a root-only folder: the workers serve it on the socket they inherit.) So:

- the home and the folders on the way to those four are 0710 root:<the workers' group>: the
  workers may pass through them (not even list them); every other account stops at the home;
- nginx makes its unix sockets 0666 itself, so the folders above them are the only gate;
- what the workers serve (release folders of static sites, ACME challenges) is 0755/0644, which is
  safe only because it sits inside a gated folder;
- everything else is 0700/0600, owned by root.

`POLICY` is that table and `target_mode` reads it (pure, unit-tested); `secure_home` applies it
(`minipaas init` repairs the whole tree, for an install made before this policy). Files written
later keep it because every minipaas process runs with umask 077 (`restrict_umask`, at each entry
point) and the few files nginx's workers read are written with explicit modes (`publish`,
`write_file`). Without root (a developer's laptop) groups and owners are left alone: nginx's workers
then run as the same user, and only the modes are applied.
"""

from __future__ import annotations

import enum
import grp
import os
import pwd
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from minipaas.errors import InvalidInput
from minipaas.state.settings import Settings

UMASK = 0o077  # what a minipaas process creates is root's only, unless written with a mode on purpose
PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
GATE_DIR = 0o710  # root:<workers' group>: nginx's workers pass through, nobody else enters
SERVED_DIR = 0o755  # only inside a gate: what nginx's workers read
SERVED_FILE = 0o644


class Below(enum.Enum):
    """What the policy says about the entries inside a folder of the table that have no rule."""

    PRIVATE = "private"  # no group or other bits (the owner's are kept: hooks stay executable)
    SERVED = "served"  # folders 0755, files 0644: nginx's workers serve them
    UNTOUCHED = "untouched"  # nginx's own (the 0666 socket, temp folders it chowns), the build cache


@dataclass(frozen=True)
class Rule:
    """The mode of one path under the home ("" is the home itself), and of what is inside it."""

    path: str
    mode: int
    folder: bool = True
    workers_group: bool = False  # root:<nginx workers' group> rather than root:root
    below: Below = Below.PRIVATE


POLICY: tuple[Rule, ...] = (
    Rule("", GATE_DIR, workers_group=True),
    Rule("settings.toml", PRIVATE_FILE, folder=False),
    Rule("minipaas.db", PRIVATE_FILE, folder=False),
    # SQLite gives these the database's mode when it creates them; an old install has them 0644.
    Rule("minipaas.db-wal", PRIVATE_FILE, folder=False),
    Rule("minipaas.db-shm", PRIVATE_FILE, folder=False),
    Rule("minipaas.db-journal", PRIVATE_FILE, folder=False),
    Rule("repos", PRIVATE_DIR),
    Rule("logs", PRIVATE_DIR),
    Rule("locks", PRIVATE_DIR),
    Rule("drains", PRIVATE_DIR),  # the drains' addresses, in the shipper's config
    Rule("certs", PRIVATE_DIR),
    Rule("services", PRIVATE_DIR),  # services' backups (database dumps): root's alone
    # the cluster's CA and the registry's files (docs/cluster-design.md): the registry's user owns its storage and key
    Rule("cluster", PRIVATE_DIR, below=Below.UNTOUCHED),
    # Base image builds unpack a Debian root filesystem in here, whose modes must survive into the
    # image: this folder alone is the gate.
    Rule("cache", PRIVATE_DIR, below=Below.UNTOUCHED),
    # Build contexts (buildcontext.py): the apps' source with git's modes, which the images get.
    Rule("build", PRIVATE_DIR, below=Below.UNTOUCHED),
    Rule("nginx", GATE_DIR, workers_group=True),
    Rule("nginx/run", PRIVATE_DIR, below=Below.UNTOUCHED),  # pid files
    Rule("nginx/control", PRIVATE_DIR, below=Below.UNTOUCHED),  # control.sock (0666 by nginx: the folder gates)
    Rule("nginx/tmp", GATE_DIR, workers_group=True, below=Below.UNTOUCHED),  # chowned to the workers by nginx
    # the dashboard's socket (0666: the folder gates), which nginx's workers connect to
    Rule("nginx/dashboard", GATE_DIR, workers_group=True, below=Below.UNTOUCHED),
    Rule("nginx/sites", PRIVATE_DIR),
    Rule("nginx/routes", PRIVATE_FILE, folder=False),
    Rule("nginx/http.conf", PRIVATE_FILE, folder=False),
    Rule("nginx/front.conf", PRIVATE_FILE, folder=False),
    Rule("static", GATE_DIR, workers_group=True, below=Below.SERVED),
    Rule("acme", GATE_DIR, workers_group=True),
    Rule("acme/webroot", SERVED_DIR, below=Below.SERVED),
)
_RULES = {rule.path: rule for rule in POLICY}


def rule_for(relative: str) -> Rule | None:
    """The table's own rule for a path relative to the home (`nginx/run`), if it has one."""
    return _RULES.get(relative.strip("/"))


def enclosing_rule(relative: str) -> Rule:
    """The rule of the nearest folder of the table that contains the path (at least the home's)."""
    parts = relative.strip("/").split("/")
    for depth in range(len(parts) - 1, 0, -1):
        rule = _RULES.get("/".join(parts[:depth]))
        if rule is not None and rule.folder:
            return rule
    return _RULES[""]


def target_mode(relative: str, mode: int, *, is_folder: bool) -> int | None:
    """The mode the policy wants for a path under the home that now has `mode` (permission bits).

    None: the policy leaves the path alone (inside nginx's run and temp folders, the build cache).
    """
    rule = rule_for(relative)
    if rule is not None:
        return rule.mode
    parent = enclosing_rule(relative)
    if parent.below is Below.UNTOUCHED:
        return None
    if parent.below is Below.SERVED:
        return SERVED_DIR if is_folder else SERVED_FILE
    return mode & ~0o077


# -- nginx's workers -------------------------------------------------------------------------

def workers_gid(settings: Settings) -> int | None:
    """The group of nginx's workers: MINIPAAS_NGINX_USER's primary group. None without root, where
    owners are not ours to change and the workers run as whoever runs minipaas."""
    if os.geteuid() != 0 or not settings.nginx_user:
        return None
    return _account(settings).pw_gid


def workers_group_name(settings: Settings) -> str:
    """The group for nginx's `user USER GROUP;` (alone, nginx looks for a group named like the user,
    which Debian's `nobody` lacks)."""
    gid = workers_gid(settings)
    if gid is None:
        return ""
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        raise InvalidInput(f"the primary group ({gid}) of MINIPAAS_NGINX_USER {settings.nginx_user} "
                           "does not exist") from None


def _account(settings: Settings) -> pwd.struct_passwd:
    return pwd.getpwnam(settings.nginx_user)  # settings.load checked that it exists


def can_pass(info: os.stat_result, uid: int, gids: set[int]) -> bool:
    """Whether an account (uid, gids) may pass through a folder with this stat (the x bit that applies)."""
    if uid == 0:
        return True
    if info.st_uid == uid:
        return bool(info.st_mode & stat.S_IXUSR)
    if info.st_gid in gids:
        return bool(info.st_mode & stat.S_IXGRP)
    return bool(info.st_mode & stat.S_IXOTH)


def workers_blocked_at(settings: Settings) -> Path | None:
    """The first folder above the home that nginx's workers may not pass through, if any.

    They reach static files through every folder above the home too: a home
    inside a private folder (pytest's tmp_path, someone's 0700 home) gives 403s and 502s.
    """
    if workers_gid(settings) is None:
        return None
    account = _account(settings)
    gids = {account.pw_gid, *(g.gr_gid for g in grp.getgrall() if account.pw_name in g.gr_mem)}
    for folder in reversed(settings.home.parents):
        try:
            if not can_pass(folder.stat(), account.pw_uid, gids):
                return folder
        except OSError:
            return folder
    return None


# -- applying the table ----------------------------------------------------------------------

def secure_home(settings: Settings, *, repair: bool = False) -> list[str]:
    """Create the table's folders and give each path of the table its mode and owner.

    With `repair`, walk the whole home too (an install from before this policy has 0755/0644
    everywhere). Returns what could not be fixed, one line each (without root, a file someone else
    owns); it never raises for that.
    """
    gid = workers_gid(settings)
    root = os.geteuid() == 0
    problems: list[str] = []
    for rule in POLICY:
        path = settings.home / rule.path if rule.path else settings.home
        try:
            if rule.folder:
                path.mkdir(parents=True, exist_ok=True)
            info = path.lstat()
        except FileNotFoundError:
            continue  # a file of the table this home does not have (yet)
        except OSError as exc:
            problems.append(f"{path}: {exc.strerror}")
            continue
        if stat.S_ISLNK(info.st_mode):
            problems.append(f"{path} is a symlink; left alone")
            continue
        if root:
            owner = (0, gid if rule.workers_group and gid is not None else 0)
            if (info.st_uid, info.st_gid) != owner:
                problems += _fix(os.chown, path, *owner, follow_symlinks=False)
        if stat.S_IMODE(info.st_mode) != rule.mode:
            problems += _fix(os.chmod, path, rule.mode)
    if repair:
        problems += _repair_tree(settings.home)
    return problems


def _repair_tree(home: Path) -> list[str]:
    """Give everything under the home the mode `target_mode` says; never follows a symlink."""
    problems: list[str] = []
    for folder, dirs, files in os.walk(home):
        for name in (*dirs, *files):
            path = Path(folder, name)
            relative = path.relative_to(home).as_posix()
            try:
                info = path.lstat()
            except OSError:
                continue
            if not (stat.S_ISDIR(info.st_mode) or stat.S_ISREG(info.st_mode)):
                continue  # symlinks (`current`), sockets
            wanted = target_mode(relative, stat.S_IMODE(info.st_mode), is_folder=stat.S_ISDIR(info.st_mode))
            if wanted is not None and wanted != stat.S_IMODE(info.st_mode):
                problems += _fix(os.chmod, path, wanted)
        # nginx's and the build cache's own files: their folder is the gate, their modes are theirs
        dirs[:] = [d for d in dirs if _descend(home, Path(folder, d))]
    return problems


def _descend(home: Path, folder: Path) -> bool:
    relative = folder.relative_to(home).as_posix()
    rule = rule_for(relative)
    return rule is None or rule.below is not Below.UNTOUCHED


def _fix(change: Callable[..., None], path: Path, *args: int, **options: bool) -> list[str]:
    """Apply one chmod or chown; a failure is a line for the caller, not an exception."""
    try:
        change(path, *args, **options)
    except OSError as exc:
        return [f"{path}: cannot {change.__name__}: {exc.strerror}"]
    return []


# -- writing files ---------------------------------------------------------------------------

def restrict_umask() -> None:
    """At each entry point: whatever minipaas creates is 0600/0700 unless written with a mode."""
    os.umask(UMASK)


def publish(top: Path) -> None:
    """Make a tree nginx's workers serve readable: folders 0755, files 0644 (symlinks untouched).

    Only ever below a gated folder (static/, acme/): the gate keeps every other account out.
    """
    for folder, _dirs, files in os.walk(top):
        _chmod_if(Path(folder), SERVED_DIR)
        for name in files:
            path = Path(folder, name)
            if not path.is_symlink():
                _chmod_if(path, SERVED_FILE)


def served_folder(path: Path) -> Path:
    """Create (or fix) one folder nginx's workers pass through inside a gated one: 0755."""
    path.mkdir(parents=True, exist_ok=True)
    _chmod_if(path, SERVED_DIR)
    return path


def _chmod_if(path: Path, mode: int) -> None:
    if stat.S_IMODE(path.lstat().st_mode) != mode:
        os.chmod(path, mode)


def write_file(path: Path, data: bytes, mode: int) -> None:
    """Replace `path` atomically with `data`, with exactly `mode` whatever the umask."""
    temp = path.with_name(f".{path.name}.tmp")
    temp.unlink(missing_ok=True)
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as handle:  # closes fd, also when fchmod or write fails
            os.fchmod(handle.fileno(), mode)  # open() applied the umask to `mode`
            handle.write(data)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    os.replace(temp, path)
