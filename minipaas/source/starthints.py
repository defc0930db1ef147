"""The hint for a process that died at start for a binary only devDependencies provided.

As on Heroku, a Node build installs devDependencies for its build step and prunes them after it: a
start command running `tsc` or `nest` from a devDependency then dies with `sh: 1: tsc: not found`.
The health check reports the exit and the log's tail; this finds the binary in that tail, the package
that provides it (the lockfile's `bin` entries, else a devDependency of the binary's name or a
well-known one), and, when that package is a devDependency only, says so and how to fix it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

from minipaas.adapters import gitrepo
from minipaas.errors import MinipaasError
from minipaas.source import packagejson

# `sh: 1: tsc: not found` (dash), `bash: line 1: nest: command not found`, `sh: tsc: not found` (busybox).
_NOT_FOUND = re.compile(r"^(?:/bin/|/usr/bin/)?(?:sh|bash|dash)(?::\s*(?:line\s+)?\d+)?:\s*([^\s:]+):\s*"
                        r"(?:command\s+)?not found\s*$", re.M)
_NAME = re.compile(r"(?:@[a-z0-9][a-z0-9._-]*/)?[A-Za-z0-9][A-Za-z0-9._-]{0,100}")
# Binaries whose package has another name, for apps whose lockfile says nothing of binaries.
KNOWN = {"tsc": "typescript", "tsserver": "typescript", "nest": "@nestjs/cli", "ng": "@angular/cli",
         "babel-node": "@babel/node", "babel": "@babel/cli", "sequelize": "sequelize-cli",
         "webpack": "webpack-cli", "vue-cli-service": "@vue/cli-service", "cross-env": "cross-env"}
_BERRY_RESOLUTION = re.compile(r'^\s+resolution: "?((?:@[^@/"]+/)?[^@"]+)@', re.M)


def hint(output: str, package: packagejson.Package, lockfiles: dict[str, bytes], app: str) -> str | None:
    """The hint line for a process whose output is `output`, or None when devDependencies are not the cause."""
    found = _NOT_FOUND.findall(output)
    if not found:
        return None
    binary = found[-1].rsplit("/", 1)[-1]
    if not _NAME.fullmatch(binary):
        return None
    providers = _lock_bins(lockfiles)
    provider, dev_only = providers.get(binary, (None, False))
    if provider is None:
        provider = binary if binary in package.dev_dependencies else KNOWN.get(binary)
    if provider is None or not _NAME.fullmatch(provider) or provider in package.dependencies:
        return None
    if provider not in package.dev_dependencies and not dev_only:
        return None
    keep = "YARN_PRODUCTION=false" if "yarn.lock" in lockfiles else "NPM_CONFIG_PRODUCTION=false"
    where = "is only in devDependencies" if provider in package.dev_dependencies else "only devDependencies bring in"
    return (f"hint: {binary} comes from {provider}, which {where}: the build prunes those after it, as Heroku's "
            f"does. Move {provider} to dependencies, or keep devDependencies with "
            f"`minipaas config:set {app} {keep}`, and push again")


def for_commit(repo: Path, sha: str, app: str, output: str) -> str | None:
    """`hint` for the commit's package.json and lockfiles; None when they cannot be read."""
    try:
        package = packagejson.parse(gitrepo.read_file(repo, sha, "package.json"))
        lockfiles = {name: data for name in ("package-lock.json", "npm-shrinkwrap.json", "yarn.lock")
                     if (data := gitrepo.read_file(repo, sha, name)) is not None}
    except MinipaasError:
        return None
    return hint(output, package, lockfiles, app)


def _lock_bins(lockfiles: dict[str, bytes]) -> dict[str, tuple[str, bool]]:
    """binary -> (the package providing it, whether only devDependencies need it), from npm's v2/v3
    lockfile (`packages`, with `bin` and `dev`) or Yarn 2+'s (`bin:` under each resolution)."""
    readers: dict[str, Callable[[bytes], dict[str, tuple[str, bool]]]] = {
        "npm-shrinkwrap.json": _npm_bins, "package-lock.json": _npm_bins, "yarn.lock": _berry_bins}
    for name, reader in readers.items():
        if name in lockfiles:
            return reader(lockfiles[name])
    return {}


def _npm_bins(raw: bytes) -> dict[str, tuple[str, bool]]:
    try:
        packages = json.loads(raw).get("packages")
    except (ValueError, UnicodeDecodeError, AttributeError, RecursionError):
        return {}
    bins: dict[str, tuple[str, bool]] = {}
    for path, entry in (packages or {}).items() if isinstance(packages, dict) else ():
        if not isinstance(entry, dict) or not isinstance(entry.get("bin"), dict) or "node_modules/" not in path:
            continue
        name = path.rsplit("node_modules/", 1)[1]
        top = path.count("node_modules/") == 1  # the copy the start command's PATH would find
        for binary in entry["bin"]:
            if top or binary not in bins:
                bins[str(binary)] = (name, entry.get("dev") is True)
    return bins


def _berry_bins(raw: bytes) -> dict[str, tuple[str, bool]]:
    text = raw.decode("utf-8", errors="replace")
    if "__metadata:" not in text:
        return {}  # Yarn 1's lockfile records no binaries
    bins: dict[str, tuple[str, bool]] = {}
    for block in re.split(r"\n(?=\S)", text):
        resolution = _BERRY_RESOLUTION.search(block)
        section = re.search(r"^  bin:\n((?:    .+\n?)+)", block, re.M)
        if resolution and section:
            for line in section.group(1).splitlines():
                binary = line.strip().split(":", 1)[0].strip('"')
                bins.setdefault(binary, (resolution.group(1), False))
    return bins
