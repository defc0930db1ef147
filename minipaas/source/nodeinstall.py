"""How a Node.js app's dependencies are installed: which package manager, from which lockfile, and the
facts of Yarn's configuration that change the install (Yarn 1 or 2+, Plug'n'Play or node_modules).

As Heroku decides it: package.json's `packageManager` names the tool; without it the lockfile does
(yarn.lock, Yarn 1's or Berry's with `__metadata:`; pnpm-lock.yaml; package-lock.json or
npm-shrinkwrap.json; none: npm). A `packageManager` that does not match the lockfile is refused with
one line before anything is built. Pure: the commit's files come in through `read`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass

from minipaas.errors import BuildFailed
from minipaas.source.packagejson import Package, PackageManager

# Lockfiles by the tool that reads them, in the order the lockfile decides when packageManager is absent.
LOCKFILES = (("package-lock.json", "npm"), ("npm-shrinkwrap.json", "npm"), ("yarn.lock", "yarn"),
             ("pnpm-lock.yaml", "pnpm"))
_BERRY = re.compile(rb"^__metadata:", re.M)
_PNPM_VERSION = re.compile(rb"^lockfileVersion:\s*['\"]?(\d+)", re.M)
_LINKER = re.compile(r"^nodeLinker:\s*['\"]?([A-Za-z-]+)['\"]?\s*(?:#.*)?$", re.M)
_YARN_PATH = re.compile(r"^yarnPath:\s*\S", re.M)


@dataclass(frozen=True)
class Install:
    """What a template needs to install an app's dependencies."""

    manager: str  # npm, yarn or pnpm
    lockfile: str = ""  # the lockfile installed from; "" for none
    berry: bool = False  # Yarn 2+ (a Berry lockfile, or packageManager yarn@2+)
    pnp: bool = False  # Yarn 2+ with Plug'n'Play: no node_modules; the app runs with .pnp.cjs
    yarn_path: bool = False  # .yarnrc.yml points at a committed Yarn release (yarnPath)
    lock_major: int = 0  # pnpm-lock.yaml's lockfileVersion major (picks pnpm's default version)
    package_manager: PackageManager | None = None  # as package.json pins it
    runtime_tool: bool = False  # the Procfile or the start script runs the package manager itself
    notes: tuple[str, ...] = ()  # warnings for the push output

    @property
    def corepack(self) -> bool:
        """Whether corepack provides the tool (yarn and pnpm always; npm when pinned)."""
        return self.manager != "npm" or self.package_manager is not None


def decide(package: Package, paths: Collection[str], read: Callable[[str], bytes | None], *,
           commands: Collection[str] = ()) -> Install:
    """The install of a commit with this package.json and these files; BuildFailed (one line) on a mismatch.

    `commands`: the Procfile's; if they (or the start script) run yarn or pnpm, the image needs it."""
    install = _decide(package, paths, read)
    runs = [*commands, package.scripts.get("start", "")]
    tool = re.compile(rf"(?<![\w./-]){install.manager}(?![\w./-])|\bcorepack\b")
    if install.manager != "npm" and any(tool.search(command) for command in runs):  # npm: in every image
        install = dataclasses.replace(install, runtime_tool=True)
    return install


def _decide(package: Package, paths: Collection[str], read: Callable[[str], bytes | None]) -> Install:
    found = [(name, tool) for name, tool in LOCKFILES if name in paths]
    pinned = package.package_manager
    notes: list[str] = []
    if pinned is not None:
        mine = [(name, tool) for name, tool in found if tool == pinned.name]
        if found and not mine:
            names = ", ".join(name for name, _ in found)
            raise BuildFailed(f"packageManager in package.json names {pinned.spec}, but the lockfile is {names} "
                              f"({found[0][1]}'s): remove the other lockfile or packageManager, or install "
                              f"with {pinned.name} and commit its lockfile")
        chosen = mine[0] if mine else ("", pinned.name)
    else:
        chosen = found[0] if found else ("", "npm")
    lockfile, manager = chosen
    ignored = [name for name, _ in found if name != lockfile]
    if ignored:
        notes.append(f"{', '.join(ignored)} ignored: {lockfile} decides the install"
                     + (" (packageManager)" if pinned else "") + "; keep one lockfile")
    if manager == "yarn":
        return _yarn(package, lockfile, read, tuple(notes))
    lock_major = 0
    if manager == "pnpm" and lockfile:
        version = _PNPM_VERSION.search(read(lockfile) or b"")
        lock_major = int(version.group(1)) if version else 0
    return Install(manager, lockfile, lock_major=lock_major, package_manager=pinned, notes=tuple(notes))


def _yarn(package: Package, lockfile: str, read: Callable[[str], bytes | None], notes: tuple[str, ...]) -> Install:
    pinned = package.package_manager
    berry_lock = bool(lockfile) and _BERRY.search(read(lockfile) or b"") is not None
    rc = (read(".yarnrc.yml") or b"").decode("utf-8", errors="replace")
    if pinned is not None and lockfile and berry_lock != (pinned.major >= 2):
        kind = "a Yarn 2+ (Berry)" if berry_lock else "a Yarn 1"
        raise BuildFailed(f"packageManager in package.json names {pinned.spec}, but yarn.lock is {kind} lockfile: "
                          f"run `yarn install` with {pinned.spec} and commit yarn.lock")
    berry = berry_lock if lockfile else (pinned is not None and pinned.major >= 2) or bool(rc.strip())
    linker = _LINKER.search(rc)
    pnp = berry and (linker is None or linker.group(1) == "pnp")  # Berry's default linker is pnp
    return Install("yarn", lockfile, berry=berry, pnp=pnp, yarn_path=_YARN_PATH.search(rc) is not None,
                   package_manager=pinned, notes=notes)
