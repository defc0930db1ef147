"""Stack choice logic: engines.node ranges against local images, Node and npm release choice.

No Docker and no network: `available()` is replaced where `resolve` is exercised.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest

from minipaas import settings as settings_mod
from minipaas import stacks
from minipaas.errors import InvalidInput, StackMissing

STACKS = {18: "18.20.8", 22: "22.23.3", 26: "26.10.0"}


def test_image_tag() -> None:
    assert stacks.image_tag(26) == "minipaas/node:26"


@pytest.mark.parametrize(
    ("engines", "major"),
    [
        (">=18", 26),
        ("*", 26),
        ("", 26),
        ("^22", 22),
        ("22.x", 22),
        ("^18 || ^22", 22),
        ("~18.20.0", 18),
        (">= 18.0.0 < 21", 18),  # npm allows a blank after an operator
        (">=20 <26", 22),
        ("^22.23.4", None),  # newer than the local 22
        ("^20", None),
        ("^26.11", None),
    ],
)
def test_pick_major_is_the_highest_satisfying(engines: str, major: int | None) -> None:
    assert stacks.pick_major(engines, STACKS) == major


def test_pick_major_skips_images_without_a_usable_version() -> None:
    assert stacks.pick_major(">=18", {26: "unknown", 22: "22.1.0"}) == 22
    assert stacks.pick_major(">=18", {26: "v26.1.0"}) == 26
    assert stacks.pick_major(">=18", {}) is None


@pytest.mark.parametrize("engines", ["lts/*", "node 18", ">>18", "^^2"])
def test_unparsable_range_is_invalid_input(engines: str) -> None:
    with pytest.raises(InvalidInput, match="not a valid version range"):
        stacks.pick_major(engines, STACKS)


@pytest.mark.parametrize(
    ("engines", "major"),
    [
        (">=18", 30),
        ("^22", 22),
        ("^20 || ^22", 22),
        ("~22.5.3", 22),
        (">22.5.3 <22.6", 22),
        ("<19", 18),
        ("<4", None),
        (">=40", None),
    ],
)
def test_suggest_major(engines: str, major: int | None) -> None:
    assert stacks.suggest_major(engines) == major


def _settings(tmp_path: Path) -> settings_mod.Settings:
    return settings_mod.load({"MINIPAAS_HOME": str(tmp_path), "MINIPAAS_NODE_MAJOR": "26"})


def test_resolve_picks_from_available(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(stacks, "available", lambda: dict(STACKS))
    monkeypatch.setattr(stacks, "_local_version", lambda ref: None)  # no Docker in unit tests
    assert stacks.resolve("^22.1", _settings(tmp_path)) == "minipaas/node:22"
    assert stacks.resolve(">=16", _settings(tmp_path)) == "minipaas/node:26"


def test_resolve_without_a_match_names_range_versions_and_command(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(stacks, "available", lambda: dict(STACKS))
    monkeypatch.setattr(stacks, "_local_version", lambda ref: None)  # no Docker in unit tests
    with pytest.raises(StackMissing) as caught:
        stacks.resolve("^20.5", _settings(tmp_path))
    message = caught.value.message
    assert "'^20.5'" in message
    assert "26.10.0" in message and "22.23.3" in message
    assert "`minipaas stack:build --node 20`" in message
    assert "\n" not in message


def test_resolve_nothing_local(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(stacks, "available", lambda: {})
    monkeypatch.setattr(stacks, "_local_version", lambda ref: None)  # no Docker in unit tests
    with pytest.raises(StackMissing, match=r"none\); `minipaas stack:build --node 30` builds one"):
        stacks.resolve(">=18", _settings(tmp_path))
    with pytest.raises(StackMissing, match=r"no Node\.js major from 4 to 30 satisfies it"):
        stacks.resolve("<1", _settings(tmp_path))


def test_resolve_default_when_no_range(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    local: dict[str, str | None] = {"minipaas/node:26": "26.10.0"}
    monkeypatch.setattr(stacks, "_local_version", lambda ref: local.get(ref))
    assert stacks.resolve(None, _settings(tmp_path)) == "minipaas/node:26"
    assert stacks.resolve("  ", _settings(tmp_path)) == "minipaas/node:26"
    local.clear()
    with pytest.raises(StackMissing) as caught:
        stacks.resolve(None, _settings(tmp_path))
    assert caught.value.message == ("no base image minipaas/node:26; build it with `minipaas stack:build --node 26`")


def test_resolve_bad_range(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(stacks, "available", lambda: dict(STACKS))
    monkeypatch.setattr(stacks, "_local_version", lambda ref: None)  # no Docker in unit tests
    with pytest.raises(InvalidInput, match="lts/"):
        stacks.resolve("lts/*", _settings(tmp_path))


# -- releases ------------------------------------------------------------------------------

NODE_VERSIONS = ["26.9.0", "26.10.0", "26.0.0-rc.1", "26.11.0-nightly", "22.23.3", "8.1.4-win12", "0.12.7"]


def test_latest_node_is_numeric_not_lexical_and_skips_prereleases() -> None:
    assert stacks.latest_node(NODE_VERSIONS, 26) == "26.10.0"
    assert stacks.latest_node(NODE_VERSIONS, 22) == "22.23.3"
    assert stacks.latest_node(NODE_VERSIONS, 8) is None
    assert stacks.latest_node(NODE_VERSIONS, 24) is None


def test_releases_ignores_non_releases() -> None:
    assert [str(v) for v in stacks.releases(["1.2", "x", "2.0.0", "1.10.0", "3.0.0-beta"])] == ["1.10.0", "2.0.0"]


NPM = {
    "6.13.7": {"version": "6.13.7"},  # no engines: any Node
    "10.9.2": {"engines": {"node": "^18.17.0 || >=20.5.0"}},
    "11.21.2": {"engines": {"node": "^20.17.0 || >=22.9.0"}},
    "12.2.1": {"engines": {"node": "^22.22.2 || ^24.15.0 || >=26.0.0"}},
    "12.3.0-pre.0": {"engines": {"node": ">=20"}},
    "12.2.2": {"engines": {"node": ">=20"}, "deprecated": "broken"},
    "12.2.0": {"engines": {"node": "not a range"}},
}


@pytest.mark.parametrize(
    ("node", "npm"),
    [
        ("26.10.0", "12.2.1"),
        ("22.23.3", "12.2.1"),
        ("22.10.0", "11.21.2"),
        ("20.18.0", "11.21.2"),
        ("18.20.8", "10.9.2"),
        ("16.20.2", "6.13.7"),
    ],
)
def test_choose_npm(node: str, npm: str) -> None:
    assert stacks.choose_npm(NPM, node) == npm


def test_choose_npm_none_fits() -> None:
    assert stacks.choose_npm({"12.2.1": {"engines": {"node": ">=26"}}}, "22.1.0") is None


# -- checksums and the node user -----------------------------------------------------------


def test_expected_digests_prefers_integrity_then_shasum() -> None:
    data = b"tarball"
    sri = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
    assert stacks.expected_digests({"integrity": sri, "shasum": "0" * 40}) == [
        ("sha512", hashlib.sha512(data).digest())
    ]
    sha1 = hashlib.sha1(data).hexdigest()
    assert stacks.expected_digests({"shasum": sha1}) == [("sha1", bytes.fromhex(sha1))]
    assert stacks.expected_digests({"integrity": "md5-AAAA", "shasum": "nope"}) == []


def test_add_user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    etc = tmp_path / "etc"
    (etc / "skel").mkdir(parents=True)
    (etc / "skel" / ".profile").write_text("# profile\n")
    (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (etc / "group").write_text("root:x:0:\n")
    (etc / "shadow").write_text("root:*:19000:0:99999:7:::")  # no final newline
    (etc / "shadow").chmod(0o640)
    owners: list[tuple[str, int, int]] = []
    monkeypatch.setattr(stacks.os, "chown", lambda p, u, g, **_: owners.append((str(p), u, g)))

    stacks.add_user(tmp_path, "node", 1000, 1000, home="/home/node", login_shell="/bin/bash")
    stacks.add_user(tmp_path, "node", 1000, 1000, home="/home/node", login_shell="/bin/bash")  # idempotent

    assert (etc / "passwd").read_text().splitlines()[-1] == "node:x:1000:1000::/home/node:/bin/bash"
    assert (etc / "group").read_text().splitlines() == ["root:x:0:", "node:x:1000:"]
    shadow = (etc / "shadow").read_text().splitlines()
    assert len(shadow) == 2 and shadow[1].startswith("node:!:") and shadow[1].endswith(":0:99999:7:::")
    assert (etc / "shadow").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "home/node/.profile").read_text() == "# profile\n"
    assert {(u, g) for _, u, g in owners} == {(1000, 1000)}
    assert any(p.endswith("home/node") for p, _, _ in owners)


def test_add_user_refuses_a_taken_uid(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text("other:x:1000:1000::/home/other:/bin/sh\n")
    with pytest.raises(stacks.BuildFailed, match="uid 1000"):
        stacks.add_user(tmp_path, "node", 1000, 1000, home="/home/node", login_shell="/bin/bash")


def test_resolve_prefers_the_default_major_when_it_satisfies(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(stacks, "_local_version", lambda ref: "26.10.0" if ref == "minipaas/node:26" else None)
    monkeypatch.setattr(stacks, "available", lambda: {26: "26.10.0", 27: "27.0.0"})
    assert stacks.resolve(">=18", _settings(tmp_path)) == "minipaas/node:26"
    assert stacks.resolve("^27", _settings(tmp_path)) == "minipaas/node:27"
