"""The Debian root filesystem that base images are made of, and the file work of making one.

`base` gives a Debian bookworm root filesystem (minbase, with CA certificates and libatomic1) as a
tarball, made with debootstrap the first time (30-60 s) and kept in the host's cache folder
(`MINIPAAS_HOST_CACHE`, /var/cache/minipaas): every minipaas home and instance on the host shares
it, and one debootstrap runs at a time (the others wait for its tarball). Nothing in it is secret;
the folder is root's alone all the same (0700), as is everything minipaas keeps.
"""

from __future__ import annotations

import datetime
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

from minipaas.errors import BuildFailed
from minipaas.state import locks

DEBIAN_SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
CACHE_NAME = f"rootfs-{DEBIAN_SUITE}.tar"
# ca-certificates for HTTPS from apps; libatomic1 because the Node binaries link against it.
DEBIAN_PACKAGES = ("ca-certificates", "libatomic1")
LOCK_WAIT = 30 * 60  # a debootstrap over a slow mirror; beyond this something is stuck
DETAIL = "       "

# Left out of the root filesystem, and out of what later `apt-get install`s unpack into it.
_DPKG_EXCLUDES = """\
# minipaas stack images: no documentation, manual pages or translations
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
"""


def cache_folder(path: Path) -> Path:
    """The host's cache folder, made root's alone (0700) whatever the umask of the moment."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def base(cache_dir: Path, progress: Callable[[str], None], *, legacy: Path | None = None) -> Path:
    """The cached root filesystem tarball; made with debootstrap the first time, once on the host.

    `legacy` is where earlier versions kept it (a home's cache/): moved here rather than made again."""
    cached = cache_folder(cache_dir) / CACHE_NAME
    if cached.is_file():
        progress(f"{DETAIL}Debian {DEBIAN_SUITE} root filesystem from the cache ({cached})")
        return cached
    # The cache folder is root's alone (0700, cache_folder): the lock is in it.
    with locks.waited(cache_dir / ".rootfs.lock", progress,
                      waiting=f"{DETAIL}Waiting for another build making the Debian root filesystem...",
                      resumed=None, limit=LOCK_WAIT, poll=0.2,
                      stuck=f"another build has been making {cached} for {LOCK_WAIT // 60} minutes"):
        if cached.is_file():  # made by the build we waited for
            progress(f"{DETAIL}Debian {DEBIAN_SUITE} root filesystem from the cache ({cached})")
            return cached
        if legacy is not None and legacy.is_file():
            shutil.move(str(legacy), str(cached))
            progress(f"{DETAIL}Debian {DEBIAN_SUITE} root filesystem moved from {legacy} to {cached}")
            return cached
        _make(cached, progress)
    return cached


def _make(cached: Path, progress: Callable[[str], None]) -> None:
    if shutil.which("debootstrap") is None:
        raise BuildFailed(
            "debootstrap is not installed (`apt-get install debootstrap`); it makes the Debian base of the image"
        )
    mirror = os.environ.get("MINIPAAS_DEBIAN_MIRROR") or DEFAULT_MIRROR
    progress(f"{DETAIL}Making a Debian {DEBIAN_SUITE} root filesystem with debootstrap from {mirror} "
             f"(once per host)")
    work = Path(tempfile.mkdtemp(prefix=".rootfs-", dir=cached.parent))
    try:
        root = work / "rootfs"
        root.mkdir(mode=0o755)
        _debootstrap(root, mirror, progress)
        _slim(root, mirror)
        partial = work / cached.name
        tar(root, partial)
        os.replace(partial, cached)
    finally:
        remove_tree(work)
    progress(f"{DETAIL}Cached as {cached} ({cached.stat().st_size / 1e6:.0f} MB)")


_DEBOOTSTRAP_PHASES = {"Validating": "Retrieving"}  # debootstrap alternates the two per package


def _debootstrap(root: Path, mirror: str, progress: Callable[[str], None]) -> None:
    """Run debootstrap, passing on the first line of each of its phases (Retrieving, Unpacking, ...)."""
    command = [
        "debootstrap",
        "--variant=minbase",
        f"--include={','.join(DEBIAN_PACKAGES)}",
        DEBIAN_SUITE,
        str(root),
        mirror,
    ]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C"}
    tail: list[str] = []
    phase = ""
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        errors="replace",
        env=env,
    )
    try:
        assert process.stdout is not None
        for raw in process.stdout:
            line = raw.rstrip()
            if not line:
                continue
            tail = [*tail[-49:], line]
            words = line.split()
            # One line per phase: "Retrieving apt", "Validating apt", "Retrieving bash", ... is one.
            verb = _DEBOOTSTRAP_PHASES.get(words[1], words[1]) if len(words) > 1 else line
            current = verb if line.startswith("I:") else line
            if current != phase:
                phase = current
                progress(f"{DETAIL}debootstrap: {line[:110]}")
        code = process.wait()
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    if code != 0:
        raise BuildFailed(
            f"debootstrap failed (exit {code}): {tail[-1] if tail else 'no output'}", detail="\n".join(tail)
        )


def _slim(root: Path, mirror: str) -> None:
    """Drop what an image does not need (apt lists, caches, docs, manuals, translations, logs)."""
    for pattern in (
        "var/lib/apt/lists/*",
        "var/cache/apt/*.bin",
        "var/cache/apt/archives/*.deb",
        "usr/share/man/*",
        "usr/share/info/*",
        "usr/share/lintian/*",
        "usr/share/linda/*",
        "var/cache/debconf/*-old",
        "var/lib/dpkg/*-old",
        "var/log/*.log",
        "var/log/apt/*",
        "dev/*",
        "run/*",
        "tmp/*",
        "var/tmp/*",
    ):
        for path in root.glob(pattern):
            _remove_path(path)
    for path in (root / "usr/share/locale").glob("*"):
        if path.name != "locale.alias":
            _remove_path(path)
    for package_doc in (root / "usr/share/doc").glob("*"):
        if package_doc.is_dir() and not package_doc.is_symlink():
            for path in package_doc.iterdir():
                if path.name != "copyright":
                    _remove_path(path)
        else:
            _remove_path(package_doc)
    # Copied from this host by debootstrap: Docker provides its own at run time.
    for name in ("etc/hostname", "etc/resolv.conf"):
        path = root / name
        if path.exists() or path.is_symlink():
            path.unlink()
            path.write_text("", encoding="utf-8")
    excludes = root / "etc/dpkg/dpkg.cfg.d/minipaas-slim"
    excludes.parent.mkdir(parents=True, exist_ok=True)
    excludes.write_text(_DPKG_EXCLUDES, encoding="utf-8")
    sources = [f"deb {mirror} {DEBIAN_SUITE} main", f"deb {mirror} {DEBIAN_SUITE}-updates main"]
    if mirror == DEFAULT_MIRROR:
        sources.append(f"deb http://deb.debian.org/debian-security {DEBIAN_SUITE}-security main")
    (root / "etc/apt/sources.list").write_text("\n".join(sources) + "\n", encoding="utf-8")


def add_user(root: Path, name: str, uid: int, gid: int, *, home: str, login_shell: str) -> None:
    """Add a user and its group to the passwd/group/shadow files of a root filesystem, with a home."""
    etc = root / "etc"
    passwd = _read_lines(etc / "passwd")
    if any(line.split(":")[0] == name for line in passwd):
        return
    if any(line.split(":")[2:3] == [str(uid)] for line in passwd):
        raise BuildFailed(f"uid {uid} is already taken in the root filesystem; cannot add the user {name}")
    days = (datetime.date.today() - datetime.date(1970, 1, 1)).days
    _append_line(etc / "passwd", f"{name}:x:{uid}:{gid}::{home}:{login_shell}")
    if not any(line.split(":")[0] == name for line in _read_lines(etc / "group")):
        _append_line(etc / "group", f"{name}:x:{gid}:")
        if (etc / "gshadow").exists():
            _append_line(etc / "gshadow", f"{name}:!::")
    if (etc / "shadow").exists():
        _append_line(etc / "shadow", f"{name}:!:{days}:0:99999:7:::")
    home_dir = root / home.lstrip("/")
    home_dir.mkdir(parents=True, exist_ok=True)
    skel = etc / "skel"
    if skel.is_dir():
        shutil.copytree(skel, home_dir, symlinks=True, dirs_exist_ok=True)
    home_dir.chmod(0o755)
    for directory, _dirs, files in os.walk(home_dir):
        os.chown(directory, uid, gid, follow_symlinks=False)
        for file in files:
            os.chown(os.path.join(directory, file), uid, gid, follow_symlinks=False)


def _read_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


def _append_line(path: Path, line: str) -> None:
    """Append a line; rewriting in place keeps the file's mode and owner (shadow is not world-readable)."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    if text and not text.endswith("\n"):
        text += "\n"
    path.write_text(text + line + "\n", encoding="utf-8")


# -- files and processes -------------------------------------------------------------------


def run(command: list[str], what: str) -> None:
    result = subprocess.run(
        command, check=False, capture_output=True, text=True, errors="replace", stdin=subprocess.DEVNULL
    )
    if result.returncode != 0:
        output = (result.stderr or result.stdout).strip()
        last = output.splitlines()[-1] if output else f"exit {result.returncode}"
        raise BuildFailed(f"{what} failed: {last}", detail=output[-4000:])


def tar(root: Path, target: Path) -> None:
    run(
        ["tar", "-C", str(root), "--numeric-owner", "--sort=name", "-cf", str(target), "."],
        f"packing {root.name} into {target.name}",
    )


def extract_package(archive: Path, dest: Path, place: Callable[[str], str | None]) -> None:
    """Extract an npm package tarball below `dest`, without its top folder (`package/`).

    `place` maps a path inside the package to where it goes below `dest`, or None to skip it.
    Members that would land outside `dest`, device files and the like are refused.
    """

    def pick(member: tarfile.TarInfo, path: str) -> tarfile.TarInfo | None:
        _top, _, inner = member.name.removeprefix("./").partition("/")
        target = place(inner) if inner else None
        if target is None:
            return None
        return tarfile.data_filter(member.replace(name=target, deep=False), path)

    dest.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive, "r:*") as package:
            package.extractall(dest, filter=pick)  # noqa: S202 (pick applies tarfile.data_filter)
    except (tarfile.TarError, OSError) as exc:
        raise BuildFailed(f"cannot unpack {archive.name}: {exc}") from None


def extract_nested(archive: Path, pattern: re.Pattern[str], dest: Path) -> Path | None:
    """The first regular file of a package whose path (without the top folder) matches `pattern`, written to
    `dest`; None when there is none."""
    try:
        with tarfile.open(archive, "r:*") as package:
            for member in package:
                inner = member.name.removeprefix("./").partition("/")[2]
                if member.isfile() and pattern.fullmatch(inner):
                    source = package.extractfile(member)
                    if source is None:
                        return None
                    with source, open(dest, "wb") as out:
                        shutil.copyfileobj(source, out)
                    return dest
    except (tarfile.TarError, OSError) as exc:
        raise BuildFailed(f"cannot unpack {archive.name}: {exc}") from None
    return None


def normalize_modes(top: Path) -> None:
    """Folders 755, files readable by all (and executable by all when by their owner)."""
    for directory, dirs, files in os.walk(top):
        for name in dirs:
            path = os.path.join(directory, name)
            if not os.path.islink(path):
                os.chmod(path, 0o755)  # noqa: S103 (a system folder of the image: readable by all)
        for name in files:
            path = os.path.join(directory, name)
            if os.path.islink(path):
                continue
            mode = os.stat(path).st_mode & 0o777
            os.chmod(path, 0o755 if mode & 0o100 else 0o644)


def _mounts_under(path: Path) -> list[str]:
    """Mount points at or below `path`, deepest first (debootstrap mounts /proc, /sys, /dev/pts)."""
    prefix = str(path.resolve())
    try:
        lines = Path("/proc/self/mountinfo").read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    points = []
    for line in lines:
        fields = line.split()
        if len(fields) > 4:
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
            if point == prefix or point.startswith(prefix + "/"):
                points.append(point)
    return sorted(set(points), key=len, reverse=True)


def remove_tree(path: Path) -> None:
    """Remove a work folder, after unmounting whatever a failed debootstrap left mounted in it."""
    if not path.exists():
        return
    for point in _mounts_under(path):
        if subprocess.run(["umount", point], check=False, capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", point], check=False, capture_output=True)
    left = _mounts_under(path)
    if left:
        # Never delete through a mount: that would delete the host's own files.
        raise BuildFailed(f"{path} still has mounts ({', '.join(left)}); unmount them and remove it by hand")
    shutil.rmtree(path, ignore_errors=True)


def _remove_path(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)

