"""Buildpacks as data: each folder of `buildpacks/` holds a `buildpack.toml` (name, order, detect
rule, how the result is served) and, where it builds an image other than from the app's own
Dockerfile, a Jinja2 Dockerfile template.

Adding a buildpack is adding a folder; nothing here knows any particular language. A detect rule may
defer to the framework presets (`preset = "static"`: see presets.py), and name files or app settings that
choose it outright (a `.static` file, the `static-dir` setting).
"""

from __future__ import annotations

import fnmatch
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from minipaas.errors import BuildFailed, MinipaasError

if TYPE_CHECKING:
    import jinja2

SERVE_KINDS = ("container", "static", "static-build", "markdown")
STACKS = ("", "node")  # the base images a template may build on ("": none)


@dataclass(frozen=True)
class Buildpack:
    name: str
    folder: Path
    order: int
    any_of: tuple[str, ...]  # detected when a path of the repo matches one of these patterns
    none_of: tuple[str, ...]  # ... and none matches these
    scripts: tuple[str, ...]  # ... and package.json has all these scripts
    no_scripts: tuple[str, ...]  # ... and none of these
    template: str  # the Dockerfile template; "" for the app's own Dockerfile (or no image at all)
    serve: str  # container: run the image; static/markdown: nginx serves files; static-build: files from the image
    site_roots: tuple[str, ...]  # where the site's files are: repo folders (static) or image folders (static-build)
    chosen_by: tuple[str, ...] = ()  # any of these paths chooses it (given any/none), whatever the scripts say
    chosen_by_settings: tuple[str, ...] = ()  # ... and so does any of these app settings when it is set
    preset: str = ""  # when a framework preset decides the app's kind: chosen if and only if it is this kind
    stack: str = ""  # node: the template builds on minipaas/node (its facts `base` and `node_version`)

    @property
    def uses_app_dockerfile(self) -> bool:
        return self.serve == "container" and not self.template

    @property
    def is_static(self) -> bool:
        return self.serve != "container"

    def detects(self, paths: set[str], scripts: set[str], facts: DetectFacts | None = None) -> bool:
        facts = facts or DetectFacts()

        def matches(pattern: str) -> bool:
            return pattern in paths or any(fnmatch.fnmatchcase(p, pattern) for p in paths)

        if not any(matches(p) for p in self.any_of) or any(matches(p) for p in self.none_of):
            return False
        if any(matches(p) for p in self.chosen_by) or any(facts.settings.get(s) for s in self.chosen_by_settings):
            return True
        if self.preset and facts.preset_kind:
            return facts.preset_kind == self.preset
        return all(s in scripts for s in self.scripts) and not any(s in scripts for s in self.no_scripts)


@dataclass(frozen=True)
class DetectFacts:
    """What detection knows besides the commit's paths and scripts."""

    preset_kind: str = ""  # the kind of the framework preset that decides the app, if one does
    settings: Mapping[str, str] = field(default_factory=dict)  # the app's settings that detect rules name


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
                scripts=tuple(detect.get("scripts", ())),
                no_scripts=tuple(detect.get("no_scripts", ())),
                template=str(data.get("template", "")),
                serve=str(data.get("serve", "container")),
                site_roots=tuple(data.get("site_roots", ())),
                chosen_by=tuple(detect.get("chosen_by", ())),
                chosen_by_settings=tuple(detect.get("chosen_by_settings", ())),
                preset=str(detect.get("preset", "")),
                stack=str(data.get("stack", "")),
            )
        except (tomllib.TOMLDecodeError, TypeError, ValueError) as exc:
            raise MinipaasError(f"buildpack {spec} is malformed: {exc}") from None
        if pack.serve not in SERVE_KINDS:
            raise MinipaasError(f"buildpack {spec}: serve must be one of {', '.join(SERVE_KINDS)}")
        if pack.stack not in STACKS:
            raise MinipaasError(f"buildpack {spec}: stack must be one of {', '.join(repr(s) for s in STACKS)}")
        packs.append(pack)
    return sorted(packs, key=lambda p: (p.order, p.name))


def detect(packs: list[Buildpack], paths: set[str], scripts: set[str],
           facts: DetectFacts | None = None) -> Buildpack:
    for pack in packs:
        if pack.detects(paths, scripts, facts):
            return pack
    known = ", ".join(f"{p.name} ({' or '.join(p.any_of)})" for p in packs)
    raise BuildFailed(f"no buildpack recognises this app; minipaas knows: {known}")


def template_cache(cache_dir: Path | None) -> jinja2.BytecodeCache | None:
    import jinja2  # here, not at the top: routing reads buildpacks (load_all) on `ps`'s path, renders never

    if cache_dir is None:
        return None
    folder = cache_dir / "templates"
    folder.mkdir(parents=True, exist_ok=True)
    return jinja2.FileSystemBytecodeCache(str(folder))


def render(pack: Buildpack, facts: dict[str, Any], *, cache_dir: Path | None = None) -> str:
    """The Dockerfile for this app: the template sees the facts (and nothing it could call back)."""
    import jinja2  # see template_cache

    from minipaas.source import dockerfile_reading  # its Dockerfile parser (a compiled package): as jinja2

    env = jinja2.Environment(
        # Its own folder first, then the other buildpacks: a template may extend another's.
        loader=jinja2.FileSystemLoader([str(pack.folder), str(pack.folder.parent)]),
        # Compiled templates kept between processes: each push is a new process, on the deploy's hot path.
        bytecode_cache=template_cache(cache_dir),
        undefined=jinja2.ChainableUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    # Exec forms as ASCII JSON: how a value of the app's files reaches a template's Dockerfile (never as syntax).
    env.filters["exec"] = lambda argv: dockerfile_reading.exec_form([str(arg) for arg in argv])
    try:
        return env.get_template(pack.template).render(**facts)
    except jinja2.TemplateError as exc:
        raise BuildFailed(f"buildpack {pack.name}: template {pack.template} failed: {exc}") from None
