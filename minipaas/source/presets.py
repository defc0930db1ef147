"""Framework presets, as the static hosts have them: which tool an app is built with, read from the names in
its package.json, and what that tool needs (its output folder, its build command, its start command).

Presets are data: `buildpacks/presets/*.toml`, one file each; adding one needs no Python change. A preset
of kind `static` makes a site even when the app's `start` script runs the tool's dev server (`eleventy
--serve`, `vite`); one of kind `server` keeps the app a Node server and knows how to start its build output
(`node build` for SvelteKit's adapter-node) when the app has neither a Procfile `web:` line nor a `start`
script. Which buildpack an app gets is still decided by buildpacks.py; this module only says what a
preset says.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from minipaas.errors import MinipaasError

KINDS = ("static", "server")
# `npm run dev`, `yarn dev`, `pnpm run dev`: a start script that runs another script.
_RUNS_SCRIPT = re.compile(r"\s*(?:npm\s+run(?:-script)?|yarn(?:\s+run)?|pnpm(?:\s+run)?)\s+([A-Za-z0-9:._-]+)\s*")


@dataclass(frozen=True)
class Preset:
    name: str  # as people call the tool: "Eleventy", "SvelteKit (adapter-node)"
    key: str  # the file's name, without .toml
    kind: str  # static or server
    order: int  # lower first, when several match (VitePress before Vite)
    dependencies: tuple[str, ...]  # any of these in dependencies or devDependencies...
    requires: tuple[str, ...]  # ... and all of these
    unless: tuple[str, ...]  # ... and none of these
    commands: tuple[str, ...]  # the tool's executables: a `start` script running one runs its dev server
    output: tuple[str, ...]  # static: the folders the build writes the site to, most likely first
    build: str  # the build command when package.json has no build script ("" for none)
    start: str  # server: the start command when there is no Procfile web: line and no start script

    def matches(self, names: frozenset[str]) -> bool:
        return (any(d in names for d in self.dependencies) and all(r in names for r in self.requires)
                and not any(u in names for u in self.unless))

    def runs_dev_server(self, scripts: Mapping[str, str]) -> bool:
        """Whether the `start` script runs this tool (directly, or through one other script)."""
        start = scripts.get("start", "")
        if (called := _RUNS_SCRIPT.fullmatch(start)) and called.group(1) in scripts:
            start = scripts[called.group(1)]
        return any(re.search(rf"(?<![\w@/.-]){re.escape(c)}(?![\w.-])", start) for c in self.commands)

    def decides(self, scripts: Mapping[str, str]) -> bool:
        """Whether the preset, rather than the scripts, says what the app is: a server preset always; a static
        one when there is no `start` script or when `start` only runs the tool's dev server."""
        return self.kind == "server" or "start" not in scripts or self.runs_dev_server(scripts)


def _strings(data: dict[str, object], key: str) -> tuple[str, ...]:
    value = data.get(key, [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise TypeError(f"{key} must be a list of names")
    return tuple(value)


def _folder(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*", value) or ".." in value.split("/"):
        raise ValueError(f"output folder {value!r} must be a relative path inside the app")
    return value


def load_all(folder: Path) -> list[Preset]:
    """Every preset of `folder` (buildpacks/presets), in the order they are tried."""
    presets = []
    for spec in sorted(folder.glob("*.toml")):
        try:
            data = tomllib.loads(spec.read_text(encoding="utf-8"))
            preset = Preset(
                name=str(data.get("name", spec.stem)), key=spec.stem, kind=str(data.get("kind", "")),
                order=int(data.get("order", 100)), dependencies=_strings(data, "dependencies"),
                requires=_strings(data, "requires"), unless=_strings(data, "unless"),
                commands=_strings(data, "commands"),
                output=tuple(_folder(f) for f in _strings(data, "output")),
                build=str(data.get("build", "")), start=str(data.get("start", "")),
            )
        except (tomllib.TOMLDecodeError, TypeError, ValueError) as exc:
            raise MinipaasError(f"preset {spec} is malformed: {exc}") from None
        if preset.kind not in KINDS:
            raise MinipaasError(f"preset {spec}: kind must be one of {', '.join(KINDS)}")
        if not preset.dependencies:
            raise MinipaasError(f"preset {spec}: dependencies must name the package(s) that identify the tool")
        if preset.kind == "static" and not (preset.output and preset.build):
            raise MinipaasError(f"preset {spec}: a static preset needs its output folder(s) and build command")
        if preset.kind == "server" and not preset.start:
            raise MinipaasError(f"preset {spec}: a server preset needs its start command")
        if "\n" in preset.build + preset.start:
            raise MinipaasError(f"preset {spec}: build and start are one line each")
        presets.append(preset)
    return sorted(presets, key=lambda p: (p.order, p.key))


def match(presets: list[Preset], dependencies: frozenset[str]) -> Preset | None:
    """The first preset whose packages the app names, if any."""
    return next((p for p in presets if p.matches(dependencies)), None)
