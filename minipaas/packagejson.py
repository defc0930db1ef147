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
# Corepack's form: name@version, optionally +sha<bits>.<hex digest> (pnpm@9.1.0+sha512.0123...).
_MANAGER_NAME = re.compile(r"(?P<name>[A-Za-z0-9][A-Za-z0-9._-]{0,60})@(?P<rest>.*)", re.DOTALL)
_MANAGER_VERSION = re.compile(
    r"(?P<version>(?:0|[1-9]\d*)\.(?:0|[1-9]\d*)\.(?:0|[1-9]\d*)(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?)"
    r"(?:\+sha(?:1|224|256|384|512)\.[0-9a-fA-F]+)?"
)


@dataclass(frozen=True)
class PackageManager:
    name: str  # one of MANAGERS
    version: str  # an exact semver version, without corepack's hash

    @property
    def spec(self) -> str:
        """What `npm install --global` is given: name@version."""
        return f"{self.name}@{self.version}"


@dataclass(frozen=True)
class Package:
    """What builds use of package.json; the empty default is an app without one."""

    engines_node: str | None = None  # the engines.node range as written (stacks checks it is a range)
    scripts: Mapping[str, str] = field(default_factory=dict)
    package_manager: PackageManager | None = None
    # Names in dependencies and devDependencies (versions are npm's business): framework presets read them.
    dependencies: frozenset[str] = frozenset()


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
                   package_manager=_package_manager(data), dependencies=_dependency_names(data))


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


def _dependency_names(data: dict[str, Any]) -> frozenset[str]:
    names: set[str] = set()
    for key in ("dependencies", "devDependencies"):
        if key not in data:
            continue
        deps = data[key]
        if not isinstance(deps, dict):
            raise BuildFailed(f"{key} in package.json must be an object, not {_kind(deps)}")
        names.update(deps)
    return frozenset(names)


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
    return PackageManager(named["name"], version["version"])


def _short(value: str) -> str:
    """A value as it can be shown on one line: quoted, escaped, cut."""
    return repr(value if len(value) <= 60 else value[:57] + "...")
