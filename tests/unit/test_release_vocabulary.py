"""The release log's typed words (issue 23) without an engine: `Status`, `Kind` and `Serving` are stored as the
text they always were (no migration), `releaselog.update` sets only the columns it is given, the one "live
release" query answers for one app and for all, and `ps --json` writes a row's keys as the dict it was did.
SQLite only; the same paths run through real pushes in test_deploy.py and test_operations.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from minipaas.cli.common import print_json
from minipaas.running.listing import Row, TaskPlace
from minipaas.state import apps, releaselog
from minipaas.state import settings as settings_mod
from minipaas.state.host import Host
from minipaas.state.releaselog import Kind, Serving, Status


@pytest.fixture
def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Host:
    monkeypatch.setenv("MINIPAAS_HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    h = Host(settings_mod.load())
    for name in ("shop", "blog"):
        apps.insert(h, name, domain=f"{name}.example.test")
    return h


def _raw(host: Host, app: str, number: int) -> dict[str, object]:
    """The row as SQLite holds it: what an older or newer minipaas reads."""
    from minipaas.state import store  # the test reads the table itself, as another version would

    conn = store.connect(host.settings.db_path)
    try:
        row = conn.execute("SELECT kind, status, serving, typeof(status) AS t FROM releases WHERE app = ? "
                           "AND number = ?", (app, number)).fetchone()
        return dict(row)
    finally:
        conn.close()


def test_the_words_are_stored_as_the_text_they_always_were(host: Host) -> None:
    number = releaselog.record_pending(host, "shop", kind=Kind.ROLLBACK, sha="a" * 40, image="i", buildpack="node",
                                       env={})
    assert _raw(host, "shop", number) == {"kind": "rollback", "status": "pending", "serving": "container",
                                          "t": "text"}
    releaselog.update(host, "shop", number, status=Status.FAILED, serving=Serving.STATIC)
    assert _raw(host, "shop", number) == {"kind": "rollback", "status": "failed", "serving": "static", "t": "text"}
    release = releaselog.get(host, "shop", number)
    assert (release.kind, release.status, release.serving) == (Kind.ROLLBACK, Status.FAILED, Serving.STATIC)
    assert release.status == "failed" and f"{release.kind}" == "rollback"  # equal to, and shown as, the text
    assert json.loads(json.dumps(release.as_dict()))["status"] == "failed"


def test_there_are_eight_kinds_and_five_statuses() -> None:
    assert {k.value for k in Kind} == {"build", "rebuild", "config", "restart", "rollback", "scale", "drain",
                                       "settings"}
    assert {s.value for s in Status} == {"pending", "live", "canary", "superseded", "failed"}
    assert {s.value for s in Serving} == {"container", "static"}


def test_update_sets_the_columns_given_and_keeps_the_others(host: Host) -> None:
    number = releaselog.record_pending(host, "shop", kind=Kind.BUILD, sha="b" * 40, image="", buildpack="",
                                       env={"A": "1"})
    releaselog.update(host, "shop", number, image="img:1", tests="passed", tests_seconds=None, finished_at=12.5)
    releaselog.update(host, "shop", number, message="why")
    releaselog.update(host, "shop", number)  # nothing given: nothing changes
    release = releaselog.get(host, "shop", number)
    assert (release.image, release.tests, release.tests_seconds, release.finished_at, release.message) == \
        ("img:1", "passed", None, 12.5, "why")
    assert (release.status, release.buildpack, release.config) == (Status.PENDING, "", {"A": "1"})
    releaselog.update(host, "shop", number, finished_at=None)  # None is a value, not "keep"
    assert releaselog.get(host, "shop", number).finished_at is None


def test_the_live_release_is_one_query_for_one_app_or_all(host: Host) -> None:
    assert releaselog.live(host, "shop") is None and releaselog.lives(host) == []
    first = releaselog.record_pending(host, "shop", kind=Kind.BUILD, sha="c" * 40, image="i", buildpack="", env={})
    releaselog.record_live(host, "shop", first, retiring=[], drain=0)
    second = releaselog.record_pending(host, "shop", kind=Kind.CONFIG, sha="c" * 40, image="i", buildpack="",
                                       env={})
    releaselog.record_live(host, "shop", second, retiring=[], drain=0)
    blog = releaselog.record_pending(host, "blog", kind=Kind.BUILD, sha="d" * 40, image="j", buildpack="", env={})
    releaselog.record_live(host, "blog", blog, retiring=[], drain=0)
    live = releaselog.live(host, "shop")
    assert live is not None and live.number == second
    assert [(r.app, r.number) for r in releaselog.lives(host)] == [("blog", blog), ("shop", second)]
    assert releaselog.routed_numbers(host, "shop") == {second}
    assert releaselog.get(host, "shop", first).status == Status.SUPERSEDED


CONTAINER = Row(name="minipaas-shop.web.3", process="web", release=3, state="crashed", health="down", address="",
                restarts=2, exit_code=3, last_lines=("boom",))
TASK = Row(name="web.1", process="web", release=4, state="running", health="serving", address="10.0.0.2:30001",
           restarts=0, exit_code=None, last_lines=(),
           task=TaskPlace(node="node-2", service="minipaas-shop-web-4", id="t1", error=""))


def test_ps_json_writes_a_rows_keys_in_the_order_it_always_did(capsys: pytest.CaptureFixture[str]) -> None:
    """The dict rows were built in this order before `Row` (container_rows, task_rows): `--json` reads the same."""
    print_json([CONTAINER.as_dict(), TASK.as_dict()])
    out = json.loads(capsys.readouterr().out)
    assert list(out[0]) == ["name", "process", "release", "state", "health", "address", "restarts", "exit_code",
                            "last_lines"]
    assert list(out[1]) == ["name", "process", "release", "state", "health", "address", "node", "service", "task",
                            "restarts", "exit_code", "error", "last_lines"]
    assert out[0]["last_lines"] == ["boom"] and out[1]["node"] == "node-2" and out[1]["task"] == "t1"
    assert (CONTAINER.node, TASK.node) == (None, "node-2")
