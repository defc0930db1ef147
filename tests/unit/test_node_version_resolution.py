"""Which Node.js release a request resolves to (nodeversions.py): every rule and every error line.

Pure: catalogs are made here, the registry is a fake, nothing reaches the network.
"""

from __future__ import annotations

import datetime
import io
import json
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from minipaas.errors import BuildFailed, InvalidInput, MinipaasError, StackMissing
from minipaas.source import nodeversions as nv
from minipaas.source import packagejson

VERSIONS = (
    "26.10.0", "26.9.0", "26.0.0-rc.1", "26.11.0-nightly20261101", "25.9.0", "24.21.0", "24.2.0", "23.11.1",
    "22.22.2", "20.20.2", "20.19.6", "20.17.0", "20.2.0", "18.20.8", "18.20.0", "16.20.2", "0.12.7", "01.2.3",
)
LTS = {"lithium": 26, "krypton": 24, "jod": 22, "iron": 20, "hydrogen": 18, "gallium": 16}
CATALOG = nv.Catalog(VERSIONS, LTS, fetched_at=1000.0)


def resolve(text: str, source: str = "engines.node", catalog: nv.Catalog = CATALOG) -> str:
    return nv.resolve(nv.Wanted(text, source), catalog)


# -- ranges ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "version"),
    [
        ("18.x.x", "18.20.8"),  # dokku's nodejs-express
        ("20.17.x", "20.17.0"),  # dokku's checks-root
        ("^20.3", "20.20.2"),
        (">=18 <21", "20.20.2"),
        (">= 18.0.0 < 21", "20.20.2"),  # npm allows blanks after an operator
        ("20", "20.20.2"),
        ("20.x", "20.20.2"),
        ("~20.17", "20.17.0"),
        ("v20.17.0", "20.17.0"),
        ("=20.17.0", "20.17.0"),
        ("20.17.0", "20.17.0"),
        ("^18 || ^22", "22.22.2"),
        ("18 - 20", "20.20.2"),
        (">=18", "26.10.0"),  # newest wins, and pre-releases or nightlies never do
        ("*", "26.10.0"),
        ("26", "26.10.0"),  # numeric, not lexical: 26.10.0 is newer than 26.9.0
        ("<20", "18.20.8"),
        ("  ^24  ", "24.21.0"),
    ],
)
def test_ranges_resolve_to_the_newest_satisfying_release(text: str, version: str) -> None:
    assert resolve(text) == version


@pytest.mark.parametrize(
    ("text", "version"),
    [
        ("lts/iron", "20.20.2"),
        ("lts/Iron", "20.20.2"),
        ("LTS/HYDROGEN", "18.20.8"),
        ("lts/*", "26.10.0"),  # the newest line whose LTS has begun
        ("lts/-1", "24.21.0"),  # one LTS line before the newest, as nvm reads it
        ("lts/-2", "22.22.2"),
        ("node", "26.10.0"),
        ("latest", "26.10.0"),
        ("current", "26.10.0"),
    ],
)
def test_nvm_names(text: str, version: str) -> None:
    assert resolve(text, ".nvmrc") == version


def test_nothing_satisfies_is_one_line_with_the_newest_of_each_major() -> None:
    with pytest.raises(StackMissing) as caught:
        resolve("^99")
    assert caught.value.message == ("no Node.js release satisfies engines.node '^99'; the newest ones are "
                                    "26.10.0, 25.9.0, 24.21.0, 23.11.1")
    with pytest.raises(StackMissing, match=r"^no Node\.js release satisfies \.node-version '20\.18\.0'; "):
        resolve("20.18.0", ".node-version")
    with pytest.raises(StackMissing, match=r"^no Node\.js release satisfies the host's default Node\.js major \(27\)"):
        nv.resolve(nv.Wanted("27", "default"), CATALOG)
    with pytest.raises(StackMissing, match="the newest ones are unknown"):
        resolve("20", catalog=nv.Catalog(()))


@pytest.mark.parametrize("text", ["lts", "node 18", ">>18", "^^2", "twenty", "system", "iojs", "18.x.y",
                                  "1 - v", "v - v", "1.x || v - 2"])
def test_garbage_is_one_line(text: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        resolve(text, ".nvmrc")
    assert caught.value.message == (f".nvmrc {text!r} is not a Node.js version or range (such as 20, 20.17.x, "
                                    f"^20.3, >=18 <21 or lts/iron)")


def test_an_unknown_lts_name_lists_the_newest_lines() -> None:
    with pytest.raises(InvalidInput) as caught:
        resolve("lts/argon-x", ".nvmrc")
    assert caught.value.message == (".nvmrc 'lts/argon-x' is not a Node.js LTS line (the newest ones: lts/lithium, "
                                    "lts/krypton, lts/jod, lts/iron, lts/hydrogen, lts/gallium)")
    with pytest.raises(InvalidInput, match=r"not a Node\.js LTS line"):
        resolve("lts/-6", ".nvmrc")  # only six lines are known


def test_lts_without_a_schedule_says_so() -> None:
    with pytest.raises(StackMissing) as caught:
        resolve("lts/*", ".nvmrc", nv.Catalog(VERSIONS, {}))
    assert caught.value.message == (".nvmrc 'lts/*' names an LTS line, and none is known (the release schedule "
                                    "could not be read from the npm registry); name a version instead")
    assert resolve("20", catalog=nv.Catalog(VERSIONS, {})) == "20.20.2"  # ranges do not need it


def test_releases_and_newest_per_major() -> None:
    assert [str(v) for v in nv.releases(["1.2", "x", "2.0.0", "1.10.0", "3.0.0-beta", "01.0.0", "v4.0.0"])] == [
        "1.10.0", "2.0.0"]
    assert nv.newest_per_major(VERSIONS, 4) == ["26.10.0", "25.9.0", "24.21.0", "23.11.1"]
    assert nv.newest_per_major(VERSIONS, 100)[-1] == "0.12.7"
    assert nv.is_release("20.17.0") and not nv.is_release("v20.17.0") and not nv.is_release("20.17")


# -- where the request comes from -----------------------------------------------------------


def files(**found: str | bytes) -> Callable[[str], bytes | None]:
    """A repository's root files, by name (`node_version` for .node-version, `nvmrc` for .nvmrc)."""
    named = {"." + k.replace("_", "-"): v.encode() if isinstance(v, str) else v for k, v in found.items()}
    return named.get


def test_engines_node_then_node_version_then_nvmrc_then_the_default() -> None:
    both = files(node_version="20.17.0\n", nvmrc="lts/iron\n")
    assert nv.wanted("18.x.x", both, 26) == nv.Wanted("18.x.x", "engines.node")
    assert nv.wanted(None, both, 26) == nv.Wanted("20.17.0", ".node-version")
    assert nv.wanted("  ", both, 26) == nv.Wanted("20.17.0", ".node-version")  # blank engines.node: not asked
    assert nv.wanted(None, files(nvmrc="lts/iron\n"), 26) == nv.Wanted("lts/iron", ".nvmrc")
    assert nv.wanted(None, files(), 26) == nv.Wanted("26", "default")
    assert nv.wanted(None, files(node_version="\n\n", nvmrc="v20\n"), 26) == nv.Wanted("v20", ".nvmrc")


def test_version_files_tolerate_comments_blank_lines_and_a_bom() -> None:
    read = files(nvmrc=b"\xef\xbb\xbf# pinned for the CI image\n\n  v20.17.0   # the one we test on\r\n18\n")
    assert nv.wanted(None, read, 26) == nv.Wanted("v20.17.0", ".nvmrc")
    assert resolve("v20.17.0", ".nvmrc") == "20.17.0"


@pytest.mark.parametrize(
    ("engines", "read", "message"),
    [
        ("18\nRUN evil", files(), "engines.node in package.json is not a Node.js version or range: '18\\nRUN evil'"),
        (None, files(nvmrc="20\x1b[2J"), ".nvmrc is not a Node.js version or range: '20\\x1b[2J'"),
        (None, files(node_version="9" * 201), ".node-version is not a Node.js version or range: '" + "9" * 60 + "'"),
    ],
)
def test_control_characters_and_long_text_are_refused(engines: str | None, read: Callable[[str], bytes | None],
                                                       message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        nv.wanted(engines, read, 26)
    assert caught.value.message == message


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"engines": {"node": 18}}, 'engines.node in package.json must be a string (a version range such as "20" '
                                    'or ">=20 <23"), not a number'),
        ({"engines": {"node": ["18"]}}, "not an array"),
        ({"engines": "18"}, "engines in package.json must be an object, not a string"),
    ],
)
def test_a_non_string_engines_node_is_packagejson_s_one_line(document: dict[str, Any], message: str) -> None:
    with pytest.raises(BuildFailed) as caught:
        packagejson.parse(json.dumps(document).encode())
    assert message in caught.value.message and "\n" not in caught.value.message


def test_why_a_version_was_chosen() -> None:
    assert nv.Wanted("26", "default").why() == "the newest 26.x, the host's default major"
    assert nv.Wanted("^20", "engines.node").why() == "the newest release that satisfies engines.node '^20'"


# -- LTS lines from the release schedule ----------------------------------------------------

SCHEDULE = {
    "v0.12": {"start": "2015-02-06", "end": "2016-12-31"},
    "v18": {"start": "2022-04-19", "lts": "2022-10-25", "end": "2025-04-30", "codename": "Hydrogen"},
    "v20": {"start": "2023-04-18", "lts": "2023-10-24", "end": "2026-04-30", "codename": "Iron"},
    "v25": {"start": "2025-10-15", "end": "2026-06-01"},
    "v26": {"start": "2026-05-05", "lts": "2026-10-28", "end": "2029-04-30", "codename": "Lithium"},
    "v27": {"alpha": "2026-10-28", "lts": "2027-10-20", "codename": ""},
    "v28": {"lts": "not a date", "codename": "Bad"},
    "v29": {"lts": "2020-01-01", "codename": "no spaces allowed"},
    "latest": {"lts": "2020-01-01", "codename": "Odd"},
    "v30": "not an object",
}


def test_lts_lines_are_those_whose_lts_has_begun() -> None:
    assert nv.lts_lines(SCHEDULE, datetime.date(2026, 11, 26)) == {"hydrogen": 18, "iron": 20, "lithium": 26}
    assert nv.lts_lines(SCHEDULE, datetime.date(2026, 10, 27)) == {"hydrogen": 18, "iron": 20}  # ended lines stay


# -- the catalog source: cached, refreshed, stale when the registry is away ------------------


def schedule_tarball(schedule: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        data = json.dumps(schedule).encode()
        info = tarfile.TarInfo(nv.SCHEDULE_FILE)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


class FakeRegistry:
    def __init__(self, versions: tuple[str, ...] = VERSIONS) -> None:
        self.versions = versions
        self.up = True
        self.schedule: bytes | None = schedule_tarball(SCHEDULE)
        self.calls: list[str] = []

    def get_json(self, path: str) -> Any:
        self.calls.append(path)
        if not self.up:
            raise ConnectionError("no route to the registry")  # requests' errors are OSErrors too
        if path == nv.NODE_PACKAGE:
            return {"versions": {v: {} for v in self.versions}}
        return {"dist": {"tarball": "https://registry.test/node-releases.tgz"}}

    def get_bytes(self, url: str) -> bytes:
        if self.schedule is None:
            raise MinipaasError("cannot download the schedule")
        return self.schedule


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def source(tmp_path: Path, registry: FakeRegistry, clock: Clock) -> nv.CatalogSource:
    return nv.CatalogSource(tmp_path / "cache", registry.get_json, registry.get_bytes, clock=clock,
                            today=lambda: datetime.date(2026, 11, 26))


def test_the_catalog_is_fetched_once_then_served_from_the_cache_for_an_hour(tmp_path: Path) -> None:
    registry, clock = FakeRegistry(), Clock()
    first = source(tmp_path, registry, clock).catalog()
    assert set(first.versions) == set(VERSIONS) and first.lts == {"hydrogen": 18, "iron": 20, "lithium": 26}
    assert registry.calls == [nv.NODE_PACKAGE, "node-releases/latest"]
    cached = tmp_path / "cache" / "node-catalog.json"
    assert cached.stat().st_mode & 0o777 == 0o600
    assert not [p for p in cached.parent.iterdir() if p != cached]  # no temporary file left behind

    clock.now += nv.CACHE_SECONDS - 1
    registry.calls.clear()
    again = source(tmp_path, registry, clock).catalog()  # another process: read from the file
    assert registry.calls == [] and again == first

    clock.now += 2
    registry.versions = (*VERSIONS, "26.11.0")
    assert "26.11.0" in source(tmp_path, registry, clock).catalog().versions
    assert registry.calls[0] == nv.NODE_PACKAGE


def test_a_stale_cache_serves_when_the_registry_does_not_answer(tmp_path: Path) -> None:
    registry, clock = FakeRegistry(), Clock()
    source(tmp_path, registry, clock).catalog()
    registry.up = False
    clock.now += 10 * nv.CACHE_SECONDS
    assert set(source(tmp_path, registry, clock).catalog().versions) == set(VERSIONS)
    assert source(tmp_path, registry, clock).resolve(nv.Wanted("20.17.x", "engines.node")) == "20.17.0"


def test_no_registry_and_no_cache_is_one_line(tmp_path: Path) -> None:
    registry, clock = FakeRegistry(), Clock()
    registry.up = False
    with pytest.raises(nv.CatalogUnavailable) as caught:
        source(tmp_path, registry, clock).catalog()
    assert caught.value.message == "cannot read the Node.js versions from the npm registry: no route to the registry"


def test_a_damaged_cache_is_fetched_anew_and_an_empty_answer_is_not_a_catalog(tmp_path: Path) -> None:
    registry, clock = FakeRegistry(), Clock()
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "node-catalog.json").write_text('{"at": "soon", "versions": 3}')
    assert set(source(tmp_path, registry, clock).catalog().versions) == set(VERSIONS)
    registry.versions = ()
    with pytest.raises(nv.CatalogUnavailable, match="lists no versions"):
        source(tmp_path / "other", registry, clock).catalog()


def test_without_the_schedule_ranges_still_resolve(tmp_path: Path) -> None:
    registry, clock = FakeRegistry(), Clock()
    registry.schedule = None
    catalog = source(tmp_path, registry, clock).catalog()
    assert catalog.lts == {} and set(catalog.versions) == set(VERSIONS)
    registry.schedule = b"not a tarball"
    assert source(tmp_path / "other", registry, clock).catalog().lts == {}


def test_a_version_newer_than_the_cache_asks_the_registry_again(tmp_path: Path) -> None:
    registry, clock = FakeRegistry(), Clock()
    source(tmp_path, registry, clock).catalog()
    registry.versions = (*VERSIONS, "26.11.0")  # published since
    clock.now += nv.RECHECK_SECONDS + 1
    assert source(tmp_path, registry, clock).resolve(nv.Wanted("26.11.0", ".node-version")) == "26.11.0"
    # Asked again at once, a request that nothing satisfies does not hammer the registry.
    registry.calls.clear()
    with pytest.raises(StackMissing):
        source(tmp_path, registry, clock).resolve(nv.Wanted("^99", "engines.node"))
    assert registry.calls == []
    # Nor does it loop when the registry is away: the cached answer stands.
    clock.now += nv.RECHECK_SECONDS + 1
    registry.up = False
    with pytest.raises(StackMissing, match=r"no Node\.js release satisfies engines\.node '\^99'"):
        source(tmp_path, registry, clock).resolve(nv.Wanted("^99", "engines.node"))
