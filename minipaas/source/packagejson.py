"""The facts of an app's package.json that builds use, parsed and checked once.

package.json comes from the pushed repository: every value minipaas reads from it is checked here for
type and form, and anything else is one line naming the field. Buildpack templates see only these
facts, never the raw document, so nothing of package.json reaches a generated Dockerfile unchecked.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from minipaas.errors import BuildFailed

MAX_SIZE = 1024 * 1024
MANAGERS = ("npm", "yarn", "pnpm")
MAX_CACHE_DIRECTORIES = 10
_LOCAL_SPECS = ("file:", "link:", "portal:", "workspace:", "./", "../", "/", "~/")
_CACHE_FOLDER = re.compile(r"[A-Za-z0-9._@+-]{1,100}(?:/[A-Za-z0-9._@+-]{1,100}){0,9}")
# Corepack's form: name@version, optionally +sha<bits>.<hex digest> (pnpm@9.1.0+sha512.0123...).
_MANAGER_NAME = re.compile(r"(?P<name>[A-Za-z0-9][A-Za-z0-9._-]{0,60})@(?P<rest>.*)", re.DOTALL)
# SemVer's pre-release identifiers: a number without a leading zero, or alphanumerics with a letter or dash.
_PRERELEASE_ID = r"(?:0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)"
_MANAGER_VERSION = re.compile(
    r"(?P<version>(?:0|[1-9][0-9]*)\.(?:0|[1-9][0-9]*)\.(?:0|[1-9][0-9]*)"
    rf"(?:-{_PRERELEASE_ID}(?:\.{_PRERELEASE_ID})*)?)"
    r"(?:\+(?P<hash>sha(?:1|224|256|384|512)\.[0-9a-fA-F]{1,128}))?"
)


@dataclass(frozen=True)
class PackageManager:
    name: str  # one of MANAGERS
    version: str  # an exact semver version, without corepack's hash
    hash: str = ""  # corepack's `sha512.<hex>` of the download when given; corepack then checks it

    @property
    def spec(self) -> str:
        """name@version, as a human reads it."""
        return f"{self.name}@{self.version}"

    @property
    def corepack_spec(self) -> str:
        """What corepack installs: name@version, with the hash the app pinned, if any."""
        return f"{self.spec}+{self.hash}" if self.hash else self.spec

    @property
    def major(self) -> int:
        return int(self.version.split(".", 1)[0])


@dataclass(frozen=True)
class Package:
    """What builds use of package.json; the empty default is an app without one."""

    engines_node: str | None = None  # the engines.node range as written (stacks checks it is a range)
    scripts: Mapping[str, str] = field(default_factory=dict)
    package_manager: PackageManager | None = None
    dependencies: frozenset[str] = frozenset()  # names in `dependencies` (and optionalDependencies)
    dev_dependencies: frozenset[str] = frozenset()
    workspaces: bool = False  # a monorepo root: installing it needs every workspace's package.json
    local_dependencies: bool = False  # a dependency from the repository itself (file:, link:, ./...)
    # Heroku's `cacheDirectories`: build caches kept between builds (checked relative folder paths).
    cache_directories: tuple[str, ...] = ()


def parse(raw: bytes | None) -> Package:
    """Package facts from package.json's bytes (None: no package.json); BuildFailed with one line if odd."""
    if raw is None:
        return Package()
    if len(raw) > MAX_SIZE:
        raise BuildFailed(f"package.json is larger than {MAX_SIZE // 1024} KiB")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BuildFailed(f"package.json is not valid JSON: {exc}") from None
    except RecursionError:
        raise BuildFailed("package.json is nested too deeply") from None
    if not isinstance(data, dict):
        raise BuildFailed("package.json must hold a JSON object")
    return Package(engines_node=_engines_node(data), scripts=_scripts(data),
                   package_manager=_package_manager(data),
                   dependencies=_names(data, "dependencies") | _names(data, "optionalDependencies"),
                   dev_dependencies=_names(data, "devDependencies"),
                   workspaces=bool(data.get("workspaces")), local_dependencies=_local_dependencies(data),
                   cache_directories=_cache_directories(data))


def _kind(value: Any) -> str:
    """How a JSON value is called in a message."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return {str: "a string", int: "a number", float: "a number", list: "an array", dict: "an object"}.get(
        type(value), type(value).__name__)


def _engines_node(data: dict[str, Any]) -> str | None:
    if "engines" not in data:
        return None
    engines = data["engines"]
    if not isinstance(engines, dict):
        raise BuildFailed(f"engines in package.json must be an object, not {_kind(engines)}")
    if "node" not in engines:
        return None
    node = engines["node"]
    if not isinstance(node, str):
        raise BuildFailed(f'engines.node in package.json must be a string (a version range such as "20" '
                          f'or ">=20 <23"), not {_kind(node)}')
    return node


def _scripts(data: dict[str, Any]) -> dict[str, str]:
    if "scripts" not in data:
        return {}
    scripts = data["scripts"]
    if not isinstance(scripts, dict):
        raise BuildFailed(f"scripts in package.json must be an object, not {_kind(scripts)}")
    for name, command in scripts.items():
        if not isinstance(command, str):
            raise BuildFailed(f"scripts.{_short(name)} in package.json must be a string, not {_kind(command)}")
    return dict(scripts)


def _package_manager(data: dict[str, Any]) -> PackageManager | None:
    if "packageManager" not in data:
        return None
    value = data["packageManager"]
    if not isinstance(value, str):
        raise BuildFailed(f"packageManager in package.json must be a string, not {_kind(value)}")
    named = _MANAGER_NAME.fullmatch(value)
    if named is None:
        raise BuildFailed(f"packageManager in package.json must be NAME@VERSION (such as pnpm@9.1.0), "
                          f"not {_short(value)}")
    if named["name"] not in MANAGERS:
        raise BuildFailed(f"packageManager in package.json names {_short(named['name'])}, which minipaas does "
                          f"not install (it knows {', '.join(MANAGERS)})")
    # fullmatch, never match with `$`: that would let a trailing newline (and a Dockerfile line) through.
    version = _MANAGER_VERSION.fullmatch(named["rest"])
    if version is None:
        raise BuildFailed(f"packageManager in package.json must name an exact version (such as "
                          f"{named['name']}@9.1.0, optionally +sha512.HASH), not {_short(value)}")
    return PackageManager(named["name"], version["version"], version["hash"] or "")


def _names(data: dict[str, Any], key: str) -> frozenset[str]:
    """The package names of a dependency object (what the hint for a pruned binary needs)."""
    value = data.get(key)
    if value is None:
        return frozenset()
    if not isinstance(value, dict):
        raise BuildFailed(f"{key} in package.json must be an object, not {_kind(value)}")
    return frozenset(str(name) for name in value)


def _local_dependencies(data: dict[str, Any]) -> bool:
    """Whether a dependency comes from the repository itself: installing it needs the source."""
    for key in ("dependencies", "devDependencies", "optionalDependencies"):
        for spec in (data.get(key) or {}).values():
            if isinstance(spec, str) and spec.strip().startswith(_LOCAL_SPECS):
                return True
    return False


def _cache_directories(data: dict[str, Any]) -> tuple[str, ...]:
    value = data.get("cacheDirectories")
    if value is None:
        return ()
    if not isinstance(value, list):
        raise BuildFailed(f"cacheDirectories in package.json must be an array of folder paths, not {_kind(value)}")
    odd = [v for v in value if not isinstance(v, str)]
    if odd:
        raise BuildFailed(f"cacheDirectories in package.json must hold folder paths (strings), not {_kind(odd[0])}")
    if len(value) > MAX_CACHE_DIRECTORIES:
        raise BuildFailed(f"cacheDirectories in package.json names more than {MAX_CACHE_DIRECTORIES} folders")
    folders = []
    for raw in value:
        folder = raw.strip().removeprefix("./").rstrip("/")
        # A cache mount's target in a generated Dockerfile: a plain relative path, nothing that could
        # end the mount option, leave /app or stand for the app's whole folder.
        if not _CACHE_FOLDER.fullmatch(folder) or any(part in (".", "..") for part in folder.split("/")):
            raise BuildFailed(f"cacheDirectories in package.json: {_short(raw)} is not a relative folder path "
                              "(letters, digits, . _ - @ + and /)")
        folders.append(folder)
    return tuple(dict.fromkeys(folders))


def _short(value: str) -> str:
    """A value as it can be shown on one line: quoted, escaped, cut."""
    return repr(value if len(value) <= 60 else value[:57] + "...")
