"""Buildpacks as data: each folder of `buildpacks/` holds a `buildpack.toml` (name, order, detect
rule) and, unless it builds with the app's own Dockerfile, a Jinja2 Dockerfile template.

Adding a buildpack is adding a folder; nothing here knows any particular language.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from minipaas.errors import BuildFailed, MinipaasError


@dataclass(frozen=True)
class Buildpack:
    name: str
    folder: Path
    order: int
    any_of: tuple[str, ...]  # detected when one of these files is at the repo's root
    none_of: tuple[str, ...]  # ... and none of these is
    template: str  # "" for the app's own Dockerfile

    @property
    def uses_app_dockerfile(self) -> bool:
        return not self.template

    def detects(self, files: set[str]) -> bool:
        return any(f in files for f in self.any_of) and not any(f in files for f in self.none_of)


def load_all(folder: Path) -> list[Buildpack]:
    packs = []
    for spec in sorted(folder.glob("*/buildpack.toml")):
        try:
            data = tomllib.loads(spec.read_text(encoding="utf-8"))
            detect = data.get("detect", {})
            pack = Buildpack(
                name=str(data.get("name", spec.parent.name)),
                folder=spec.parent,
                order=int(data.get("order", 100)),
                any_of=tuple(detect.get("any", ())),
                none_of=tuple(detect.get("none", ())),
                template=str(data.get("template", "")),
            )
        except (tomllib.TOMLDecodeError, TypeError, ValueError) as exc:
            raise MinipaasError(f"buildpack {spec} is malformed: {exc}") from None
        packs.append(pack)
    return sorted(packs, key=lambda p: (p.order, p.name))


def detect(packs: list[Buildpack], files: set[str]) -> Buildpack:
    for pack in packs:
        if pack.detects(files):
            return pack
    known = ", ".join(f"{p.name} ({' or '.join(p.any_of)})" for p in packs)
    raise BuildFailed(f"no buildpack recognises this app; minipaas knows: {known}")


def parse_procfile(text: str) -> dict[str, str]:
    procs: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, command = line.partition(":")
        if sep and name.strip() and not name.lstrip().startswith("#") and command.strip():
            procs[name.strip()] = command.strip()
    return procs


def parse_package_json(raw: bytes | None) -> dict[str, Any]:
    if raw is None:
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BuildFailed(f"package.json is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BuildFailed("package.json must hold a JSON object")
    return data


def render(pack: Buildpack, facts: dict[str, Any], stack: Callable[[str, str | None], str]) -> str:
    """The Dockerfile for this app: the template sees the facts and a `stack(kind, range)` function."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(pack.folder)),
        undefined=jinja2.ChainableUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    try:
        return env.get_template(pack.template).render(stack=stack, **facts)
    except jinja2.TemplateError as exc:
        raise BuildFailed(f"buildpack {pack.name}: template {pack.template} failed: {exc}") from None
