"""What keeps a host of hundreds of apps quick to ask, without an engine (issue 20, bench/scale.py): `apps:list`
in two queries, giving what the per-app lookups give, and the commands that read only the store importing no
Docker SDK."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from minipaas.state import apps, releaselog, reviews, store
from minipaas.state import settings as settings_mod
from minipaas.state.host import Host

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Host:
    monkeypatch.setenv("MINIPAAS_HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    return Host(settings_mod.load())


def _app(host: Host, name: str, *, parent: str | None = None, branch: str | None = None, pushed: float = 0) -> None:
    with store.transaction(host.db) as db:
        db.execute("INSERT INTO apps (name, created_at, parent, branch, pushed_at, life) VALUES (?, ?, ?, ?, ?, ?)",
                   (name, 1.0, parent, branch, pushed or None, name))


def _live(host: Host, app: str, sha: str) -> None:
    number = releaselog.record_pending(host, app, kind="build", sha=sha, image="", buildpack="node", env={})
    releaselog.record_live(host, app, number, retiring=[], drain=0)


def test_the_listing_is_what_each_app_s_own_lookups_give(host: Host) -> None:
    for name in ("zeta", "alpha", "alpha-b", "mid"):
        _app(host, name)
    _app(host, "alpha--old", parent="alpha", branch="old", pushed=10)
    _app(host, "alpha--new", parent="alpha", branch="new", pushed=20)
    _app(host, "alpha--never", parent="alpha", branch="never/pushed")
    _app(host, "mid--x", parent="mid", branch="x", pushed=5)
    apps.set_setting(host, "mid", "review-url", "{app}-{slug}.review.{domain}")
    _live(host, "alpha", "a" * 40)
    _live(host, "alpha", "b" * 40)  # the second is live, the first superseded
    _live(host, "mid--x", "c" * 40)

    listed = apps.listing(host)

    expected = []
    for name in apps.names(host):
        if reviews.parent(host, name) is not None:
            continue
        for review in [None, *reviews.of(host, name)]:
            app = review.name if review else name
            live = releaselog.live(host, app)
            expected.append(apps.Listed(app, review.parent if review else None, review.branch if review else None,
                                        live.number if live else None, live.sha if live else None,
                                        apps.default_domain(host, app)))
    assert listed == expected
    assert [a.name for a in listed] == ["alpha", "alpha--new", "alpha--old", "alpha--never", "alpha-b", "mid",
                                        "mid--x", "zeta"]
    assert listed[0].release == 2 and listed[0].sha == "b" * 40
    assert listed[6].domain == f"mid-x.review.{host.settings.domain}"


def test_commands_that_read_only_the_store_import_no_docker_sdk(host: Host) -> None:
    """The Docker SDK costs every command that imports it about 75 ms: `apps:list`, `config` and `settings` do
    not talk to the engine, and on a host of hundreds of apps they are run most (fails with state/apps.py's
    `engine` import put back)."""
    _app(host, "hello")
    script = ("import sys\nfrom minipaas import cli\n"
              "for argv in (['apps:list', '--json'], ['config', 'hello'], ['settings', 'hello']):\n"
              "    try:\n        cli.main(argv)\n    except SystemExit as exc:\n        assert not exc.code, argv\n"
              "print('docker' in sys.modules, file=sys.stderr)")
    env = {**os.environ, "MINIPAAS_HOME": str(host.settings.home),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().splitlines()[-1] == "False", result.stderr
    assert '"name": "hello"' in result.stdout
