"""SSH keys: who may reach minipaas over ssh, with which role, on which apps.

Keys live in SQLite; the authorized_keys file of the `paas` user is regenerated from them on every
change, each line forcing `minipaas ssh-command --home HOME --user NAME --fingerprint SHA256:...` with
`restrict` (no forwarding of any kind; a pty only when the client asks for one). The line names its
instance (the home: sudo passes no MINIPAAS_HOME on, and several instances share the one file) and the
key's fingerprint, which ssh-command checks against the key of that name in that instance.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import errno
import hashlib
import os
import re
import secrets
import stat
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from minipaas.errors import Conflict, InvalidInput, NotFound
from minipaas.state import apps, locks
from minipaas.state import keys as records
from minipaas.state.host import Host
from minipaas.state.names import check_app, check_plain_path

ROLES = ("admin", "deployer")
KEY_TYPES = frozenset({
    "ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com",
})
KEY_NAME = re.compile(r"[a-z][a-z0-9._-]{0,31}")
# `ssh-keygen -l`'s form of a SHA256 fingerprint: 32 bytes, unpadded base64.
FINGERPRINT = re.compile(r"SHA256:[A-Za-z0-9+/]{43}")
MAX_KEY_LINE = 16 * 1024
MAX_AUTHORIZED_KEYS = 16 * 1024 * 1024
AUTHORIZED_KEYS_LOCK = "authorized-keys.lock"


@dataclass(frozen=True)
class PublicKey:
    key_type: str
    data: str  # base64 of the key blob

    @property
    def fingerprint(self) -> str:
        """As `ssh-keygen -l` prints it: SHA256 of the blob, unpadded base64."""
        digest = hashlib.sha256(base64.b64decode(self.data)).digest()
        return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


@dataclass(frozen=True)
class KeyRecord:
    name: str
    role: str
    fingerprint: str
    key_type: str
    apps: tuple[str, ...]


def check_name(name: str) -> str:
    if not KEY_NAME.fullmatch(name):
        raise InvalidInput(f"invalid key name {name[:40]!r}: use up to 32 lowercase letters, digits, dots, "
                           "dashes and underscores, starting with a letter")
    return name


def parse_public_key(text: str) -> PublicKey:
    """One OpenSSH public key line: `TYPE BASE64 [comment]`, no options, nothing else."""
    if len(text) > MAX_KEY_LINE:
        raise InvalidInput("that is not a public key: too long")
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if len(lines) != 1:
        raise InvalidInput(f"expected exactly one public key line, got {len(lines)}")
    fields = lines[0].split()
    if len(fields) < 2:
        raise InvalidInput("expected `TYPE BASE64 [comment]`")
    key_type, data = fields[0], fields[1]
    if key_type not in KEY_TYPES:
        if "=" in key_type or "," in key_type or key_type.startswith(("command", "from", "no-", "restrict")):
            raise InvalidInput("authorized_keys options (command=, from=, ...) are not allowed in a key")
        raise InvalidInput(f"unknown key type {key_type[:40]!r}; use one of {', '.join(sorted(KEY_TYPES))}")
    try:
        blob = base64.b64decode(data, validate=True)
        (length,) = struct.unpack(">I", blob[:4])
        embedded = blob[4:4 + length].decode("ascii")
    except (binascii.Error, struct.error, UnicodeDecodeError, ValueError):
        raise InvalidInput("the key's base64 data is damaged") from None
    if embedded != key_type:
        raise InvalidInput(f"the key data says {embedded[:40]!r} but the line says {key_type!r}")
    _check_with_paramiko(key_type, blob)
    return PublicKey(key_type, data)


def _check_with_paramiko(key_type: str, blob: bytes) -> None:
    """Let a real SSH implementation parse the key, so that a truncated or bogus one is refused."""
    import paramiko

    try:
        paramiko.PKey.from_type_string(key_type, blob)
    except paramiko.UnknownKeyType:
        return  # security-key types paramiko does not model; the structure was checked above
    except (paramiko.SSHException, ValueError, TypeError, IndexError, struct.error):
        raise InvalidInput("the key's data is not a valid public key") from None


def add(host: Host, name: str, role: str, text: str) -> KeyRecord:
    check_name(name)
    if role not in ROLES:
        raise InvalidInput(f"role must be one of {', '.join(ROLES)}")
    key = parse_public_key(text)
    forced_command(host.settings.ssh_entry, str(host.settings.home), name, key.fingerprint)  # a home it can name
    # In the transaction: a file that cannot be written adds no key.
    records.insert(host, records.KeyRow(name, role, key.fingerprint, key.key_type, key.data),
                   then=lambda: write_authorized_keys(host))
    return get(host, name)


def remove(host: Host, name: str) -> None:
    get(host, check_name(name))
    records.delete(host, name, then=lambda: write_authorized_keys(host))


def get(host: Host, name: str) -> KeyRecord:
    row = records.find(host, name)
    if row is None:
        raise NotFound(f"no ssh key named {name}")
    return KeyRecord(row.name, row.role, row.fingerprint, row.key_type, records.grants(host, name))


def listing(host: Host) -> list[KeyRecord]:
    return [get(host, name) for name in records.names(host)]


def grant(host: Host, name: str, app: str) -> None:
    record = get(host, check_name(name))
    apps.require(host, app)
    if record.role == "admin":
        raise Conflict(f"{name} is an admin and may reach every app already")
    records.grant(host, name, app)


def revoke(host: Host, name: str, app: str) -> None:
    get(host, check_name(name))
    check_app(app)
    if not records.revoke(host, name, app):
        raise NotFound(f"{name} has no grant on {app}")


LEGACY_HEADER = "# Managed by minipaas (`minipaas ssh-keys:*`); edits here are overwritten."


def forced_command(entry: str, home: str, name: str, fingerprint: str) -> str:
    """What a key's line makes sshd run: the instance, the key and its fingerprint, each checked to be of the
    plain form that sudoers.rule lets through (nothing there needs quoting, in the shell or in the line)."""
    check_plain_path(home, what="MINIPAAS_HOME (named in every ssh key's line)")
    if not KEY_NAME.fullmatch(name) or not FINGERPRINT.fullmatch(fingerprint):
        raise InvalidInput(f"not a key name and fingerprint: {name[:40]!r} {fingerprint[:60]!r}")
    return f"{entry} ssh-command --home {home} --user {name} --fingerprint {fingerprint}"


def authorized_keys_lines(host: Host) -> list[str]:
    entry, home = host.settings.ssh_entry, str(host.settings.home)
    lines = []
    for row in records.every(host):
        command = forced_command(entry, home, row.name, row.fingerprint)
        # restrict: no port, agent or X11 forwarding; pty: only when the client asks (ssh -t).
        lines.append(f'command="{command}",restrict,pty {row.key_type} {row.key_data} minipaas:{row.name}')
    return lines


def merge_block(existing: str, instance: str, home: str, lines: list[str]) -> str:
    """The authorized_keys text with this instance's block replaced by `lines`; everything else is kept.

    Several minipaas instances (and lines an administrator added by hand) can share one file: each
    instance owns only the lines between its own BEGIN and END markers.
    """
    begin = f"# BEGIN minipaas {instance} ({home}): managed by `minipaas ssh-keys:*`; edits here are overwritten"
    end = f"# END minipaas {instance}"
    kept: list[str] = []
    inside = False
    for line in existing.splitlines():
        if line.startswith(f"# BEGIN minipaas {instance} ("):
            inside = True
        elif inside and line == end:
            inside = False
        elif not inside:
            kept.append(line)
    if kept and kept[0] == LEGACY_HEADER:
        # Written by a version that owned the whole file: those lines were all this instance's.
        kept = []
    while kept and not kept[-1].strip():
        kept.pop()
    while kept and not kept[0].strip():  # the blank line before a block moved to the top
        kept.pop(0)
    block = [begin, *lines, end]
    return "\n".join([*kept, *([""] if kept else []), *block]) + "\n"


def write_authorized_keys(host: Host) -> None:
    """This instance's block of the shared authorized_keys, written again from its keys.

    The file and its folder belong to the ssh account (sshd wants that), which may have put a symlink in
    place of either: nothing there is followed. The folder is opened O_NOFOLLOW and everything else is done
    relative to it: the file is read O_NOFOLLOW, the new text goes to a fresh file (O_EXCL|O_NOFOLLOW, a
    random name) owned through its descriptor, then renamed over the file. The lock that instances writing
    the same file share lives in root's folder of host locks (state/locks.py): one for every authorized_keys
    file on the host, each written in a moment.
    """
    path = host.settings.authorized_keys
    if not os.path.lexists(path.parent):
        path.parent.mkdir(parents=True, exist_ok=True)
    lines = authorized_keys_lines(host)
    with locks.held(locks.host_lock(AUTHORIZED_KEYS_LOCK)), _folder(path.parent) as folder:
        existing = _read_own(path, folder)
        text = merge_block(existing, host.settings.instance, str(host.settings.home), lines)
        tmp = f".{path.name}.{secrets.token_hex(8)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=folder)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                if os.geteuid() == 0:
                    owner = os.fstat(folder)
                    os.fchown(handle.fileno(), owner.st_uid, owner.st_gid)  # sshd wants the account's own file
                handle.write(text)
            os.replace(tmp, path.name, src_dir_fd=folder, dst_dir_fd=folder)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=folder)
            raise


@contextlib.contextmanager
def _folder(path: Path) -> Iterator[int]:
    """The folder of authorized_keys, opened as itself: a symlink in its place is one line."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno in (errno.ENOTDIR, errno.ELOOP):
            raise Conflict(f"{path} must be a folder, not a symlink or a file") from None
        raise Conflict(f"cannot open {path}: {exc.strerror}") from None
    try:
        yield fd
    finally:
        os.close(fd)


def _read_own(path: Path, folder: int) -> str:
    """The authorized_keys text, or "" when there is none; a symlink or anything but a file is one line."""
    try:
        fd = os.open(path.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=folder)
    except FileNotFoundError:
        return ""
    except OSError as exc:
        raise Conflict(f"cannot read {path} ({exc.strerror}): it must be a file, not a symlink") from None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise Conflict(f"{path} must be a file")
        data = handle.read(MAX_AUTHORIZED_KEYS + 1)
    if len(data) > MAX_AUTHORIZED_KEYS:
        raise Conflict(f"{path} is larger than {MAX_AUTHORIZED_KEYS // (1024 * 1024)} MiB: not an authorized_keys file")
    return data.decode("utf-8", errors="replace")


def rewrite_on_upgrade(host: Host) -> bool:
    """`init`: this instance's lines again in today's form (an install from before the lines named their
    instance and fingerprint); an instance without keys leaves the file alone. True when written."""
    if not records.any_key(host):
        return False
    write_authorized_keys(host)
    return True
