"""The routing table by app and version as text and pure functions (routing/routes.py): no nginx, no engine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from minipaas.errors import ProxyError
from minipaas.routing import routes
from minipaas.routing.routes import Version
from minipaas.state.settings import load


def test_a_line_holds_each_version_with_its_weight_and_round_trips() -> None:
    text = "api 12=90 10.0.0.2:5000 10.0.0.3:5000 13=10 10.0.0.4:5000\nweb 7=100 [fd00::2]:5000\n"
    table = routes.parse(text)
    assert table == {"api": [(12, 90, ["10.0.0.2:5000", "10.0.0.3:5000"]), (13, 10, ["10.0.0.4:5000"])],
                     "web": [(7, 100, ["[fd00::2]:5000"])]}
    assert routes.render(table) == text


def test_the_format_before_versions_is_one_version_release_0_weight_100() -> None:
    table = routes.parse("api 10.0.0.2:5000 10.0.0.3:5000\nempty\n")
    # A name alone routes nothing (nginx answers 503): no entry, not a sleeping app's (`sleep`).
    assert table == {"api": [(0, 100, ["10.0.0.2:5000", "10.0.0.3:5000"])]}
    assert routes.render(table) == "api 0=100 10.0.0.2:5000 10.0.0.3:5000\n"


@pytest.mark.parametrize(("versions", "says"), [
    ([], "at least one version"),
    ([Version(1, 90, {"10.0.0.2:5000": "a"})], "add up to 100, not 90"),
    ([Version(1, 60, {"10.0.0.2:5000": "a"}), Version(2, 60, {"10.0.0.3:5000": "b"})], "not 120"),
    ([Version(1, 101, {"10.0.0.2:5000": "a"}), Version(2, -1, {"10.0.0.3:5000": "b"})], "not 0..100"),
    ([Version(1, 50, {"10.0.0.2:5000": "a"}), Version(1, 50, {"10.0.0.3:5000": "b"})], "routed twice"),
    ([Version(1, 100, {})], "no address"),
    ([Version(1, 100, {"example.com:80": "a"})], "not an address"),
    ([Version(1, 100, {"10.0.0.2:5000 10.0.0.3": "a"})], "not an address"),
])
def test_bad_versions_are_refused_in_one_line(versions: list[Version], says: str) -> None:
    with pytest.raises(ProxyError, match=says):
        routes.check(versions)


def test_versions_come_in_release_order() -> None:
    checked = routes.check([Version(13, 10, {"10.0.0.4:5000": "c"}), Version(12, 90, {"10.0.0.2:5000": "a"})])
    assert [v.release for v in checked] == [12, 13]


@pytest.mark.parametrize(("weights", "expected"), [
    ([90], [100]),
    ([0], [100]),
    ([10, 50], [17, 83]),
    ([0, 0], [50, 50]),
    ([1, 1, 1], [33, 33, 34]),  # a tie: the newest release takes the rest
    ([45, 45], [50, 50]),
])
def test_weights_renormalised_add_up_to_100(weights: list[int], expected: list[int]) -> None:
    left = [Version(n + 1, w, {f"10.0.0.{n + 2}:5000": str(n)}) for n, w in enumerate(weights)]
    assert [v.weight for v in routes.renormalised(left)] == expected


class FakeNginx:
    """What the control server was told, for tests of the files without an nginx."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str]] = []

    def __call__(self, settings: object, method: str, app: str, body: str = "") -> str:
        self.calls.append((method, app, body))
        return ""


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[object, FakeNginx]:
    settings = load({"MINIPAAS_HOME": str(tmp_path / "home")})
    settings.nginx_dir.mkdir(parents=True)
    fake = FakeNginx()
    monkeypatch.setattr(routes, "_control", fake)
    return settings, fake


def test_versions_and_their_containers_round_trip_through_the_files(home: tuple[object, FakeNginx]) -> None:
    settings, nginx = home
    routes.set_versions(settings, "api", [Version(13, 10, {"10.0.0.4:5000": "c"}),
                                         Version(12, 90, {"10.0.0.2:5000": "a", "10.0.0.3:5000": "b"})])
    assert nginx.calls[-1] == ("PUT", "api", "12=90 10.0.0.2:5000 10.0.0.3:5000 13=10 10.0.0.4:5000")
    assert routes.versions(settings, "api") == [Version(12, 90, {"10.0.0.2:5000": "a", "10.0.0.3:5000": "b"}),
                                                Version(13, 10, {"10.0.0.4:5000": "c"})]
    owners = json.loads(routes.owners_file(settings).read_text())
    assert owners == {"a": ["api", "10.0.0.2:5000", 12], "b": ["api", "10.0.0.3:5000", 12],
                      "c": ["api", "10.0.0.4:5000", 13]}
    assert routes.addresses(settings, "api") == ["10.0.0.2:5000", "10.0.0.3:5000", "10.0.0.4:5000"]
    assert routes.containers(settings, "api") == {"a", "b", "c"}
    routes.switch(settings, "api", {"10.0.0.5:5000": "d"}, release=14)
    assert routes.versions(settings, "api") == [Version(14, 100, {"10.0.0.5:5000": "d"})]
    assert routes.versions(settings, "other") == []


def test_owners_of_an_older_minipaas_are_read_as_release_0(home: tuple[object, FakeNginx]) -> None:
    settings, _ = home
    routes.routes_file(settings).write_text("api 10.0.0.2:5000\n")
    routes.owners_file(settings).write_text(json.dumps({"a": ["api", "10.0.0.2:5000"]}))
    assert routes.versions(settings, "api") == [Version(0, 100, {"10.0.0.2:5000": "a"})]
    assert routes.routed(settings) == {"a": "api"}
    routes.forget_container(settings, "a")
    assert routes.versions(settings, "api") == []


def test_a_forgotten_container_leaves_its_version_and_comes_back_into_it(home: tuple[object, FakeNginx]) -> None:
    settings, nginx = home
    routes.set_versions(settings, "api", [Version(12, 90, {"10.0.0.2:5000": "a", "10.0.0.3:5000": "b"}),
                                         Version(13, 10, {"10.0.0.4:5000": "c"})])
    assert routes.forget_container(settings, "b") == "api"
    assert routes.versions(settings, "api") == [Version(12, 90, {"10.0.0.2:5000": "a"}),
                                                Version(13, 10, {"10.0.0.4:5000": "c"})]
    routes.add_container(settings, "api", "10.0.0.3:5000", "b", release=12)
    assert routes.versions(settings, "api")[0] == Version(12, 90, {"10.0.0.2:5000": "a", "10.0.0.3:5000": "b"})
    # The canary's last container goes: so does its version, and the stable one takes all new clients.
    assert routes.forget_container(settings, "c") == "api"
    assert routes.versions(settings, "api") == [Version(12, 100, {"10.0.0.2:5000": "a", "10.0.0.3:5000": "b"})]
    assert nginx.calls[-1] == ("PUT", "api", "12=100 10.0.0.2:5000 10.0.0.3:5000")
    # Its release is no longer routed (or unknown): it joins the version with the most weight.
    routes.add_container(settings, "api", "10.0.0.4:5000", "c", release=13)
    routes.add_container(settings, "api", "10.0.0.6:5000", "e")
    assert routes.versions(settings, "api") == [Version(12, 100, {"10.0.0.2:5000": "a", "10.0.0.3:5000": "b",
                                                                  "10.0.0.4:5000": "c", "10.0.0.6:5000": "e"})]
    assert json.loads(routes.owners_file(settings).read_text())["c"] == ["api", "10.0.0.4:5000", 12]
    for container in "abce":
        routes.forget_container(settings, container)
    assert routes.versions(settings, "api") == [] and nginx.calls[-1] == ("DELETE", "api", "")
    assert routes.forget_container(settings, "a") is None


def test_add_container_to_an_unrouted_app_routes_it_alone(home: tuple[object, FakeNginx]) -> None:
    settings, _ = home
    routes.add_container(settings, "api", "10.0.0.2:5000", "a", release=5)
    assert routes.versions(settings, "api") == [Version(5, 100, {"10.0.0.2:5000": "a"})]


def test_an_address_handed_out_again_moves_to_its_new_containers_version(home: tuple[object, FakeNginx]) -> None:
    settings, _ = home
    routes.set_versions(settings, "api", [Version(12, 90, {"10.0.0.2:5000": "a", "10.0.0.3:5000": "b"}),
                                         Version(13, 10, {"10.0.0.4:5000": "c"})])
    routes.add_container(settings, "api", "10.0.0.4:5000", "d", release=12)
    assert routes.versions(settings, "api") == [
        Version(12, 100, {"10.0.0.2:5000": "a", "10.0.0.3:5000": "b", "10.0.0.4:5000": "d"})]


def test_a_container_routed_again_where_it_is_already_stays_in_its_own_version(home: tuple[object, FakeNginx]) -> None:
    """The watcher routes a restarted container after `ps:restore` routed it already: the canary's one container
    must not leave its version (which would vanish) for the stable one (seen: both in release 12 after a restore)."""
    settings, _ = home
    both = [Version(12, 50, {"10.0.0.2:5000": "a"}), Version(13, 50, {"10.0.0.3:5000": "b"})]
    routes.set_versions(settings, "api", both)
    routes.add_container(settings, "api", "10.0.0.3:5000", "b", release=13)
    routes.add_container(settings, "api", "10.0.0.2:5000", "a", release=12)
    assert routes.versions(settings, "api") == both
