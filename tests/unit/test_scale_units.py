"""A host of hundreds of apps, without an engine (issue 20, bench/scale.py): `apps:list` in two queries, giving
what the per-app lookups give; the commands that read only the store import no Docker SDK; and the address pool's
arithmetic (how much of MINIPAAS_SUBNETS is taken, the first free /26, the one line said before it runs out)."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minipaas.adapters import networks
from minipaas.state import apps, releaselog, reviews, store
from minipaas.state import settings as settings_mod
from minipaas.state.host import Host

ROOT = Path(__file__).resolve().parents[2]


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


# -- the address pool: what runs out first at size (adapters/networks.py) --------------------------------------

def _brute(pool: str, taken: list[str]) -> tuple[int, str | None]:
    """Taken /26s and the first free one, the slow obvious way."""
    used = [ipaddress.ip_network(t, strict=False) for t in taken]
    blocks = list(ipaddress.ip_network(pool).subnets(new_prefix=networks.PREFIX))
    overlapping = [b for b in blocks if any(b.overlaps(u) for u in used if u.version == 4)]
    free = next((str(b) for b in blocks if b not in overlapping), None)
    return len(overlapping), free


def test_the_pool_s_arithmetic() -> None:
    pool = "10.213.0.0/16"
    assert networks.usage_of(pool, []) == networks.PoolUsage(pool, 26, 1024, 0)
    taken = ["10.213.0.0/26", "10.213.1.0/24", "10.213.1.64/26",  # 1 + 4 (the /26 inside the /24 counts once)
             "10.213.2.0/23",  # 8 more
             "172.17.0.0/16", "fd00::/64", "not a network"]  # outside the pool, IPv6, junk: none
    usage = networks.usage_of(pool, taken)
    assert (usage.total, usage.taken, usage.free) == (1024, 13, 1011)
    assert networks.free_subnet(pool, taken) == "10.213.0.64/26"
    assert networks.free_subnet(pool, [*taken, "10.213.0.64/26", "10.213.0.128/25"]) == "10.213.4.0/26"
    # A network wider than the pool takes all of it.
    assert networks.usage_of(pool, ["10.0.0.0/8"]).free == 0 and networks.free_subnet(pool, ["10.0.0.0/8"]) is None
    assert networks.usage_of("10.213.0.0/24", []).total == 4
    # 100 apps, 200 review apps and 20 services, each with a network of its own: 320 of the default pool's 1024.
    fleet = [str(n) for n in list(ipaddress.ip_network(pool).subnets(new_prefix=26))[:320]]
    assert networks.usage_of(pool, fleet).free == 704 and not networks.usage_of(pool, fleet).nearly_full


def test_the_pool_says_so_in_one_line_before_it_runs_out() -> None:
    def usage(total: int, taken: int) -> networks.PoolUsage:
        return networks.PoolUsage("10.213.0.0/16", 26, total, taken)

    assert usage(1024, 921).warning() is None  # 103 left: room
    nearly = usage(1024, 922).warning()  # 102 left: a tenth
    assert nearly is not None and "102 of its 1024 /26 networks left" in nearly and "\n" not in nearly
    assert usage(4, 1).warning() is None and usage(4, 2).warning() is not None  # small pools: at 2 left
    full = usage(1024, 1024).warning()
    assert full is not None and "no /26 network left (all 1024 taken)" in full and "\n" not in full
    assert usage(1024, 37).summary() == "MINIPAAS_SUBNETS 10.213.0.0/16: 37 of its 1024 /26 networks taken"


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1023), st.integers(20, 30)), max_size=12))
def test_the_pool_s_arithmetic_agrees_with_the_obvious_way(spans: list[tuple[int, int]]) -> None:
    pool = "10.213.0.0/22"  # 16 /26s; networks of any size drawn around it (10.212.240.0 to 10.213.47.255)
    base = int(ipaddress.ip_address("10.212.240.0"))
    taken = [str(ipaddress.ip_network((base + offset * 16, bits), strict=False)) for offset, bits in spans]
    count, free = _brute(pool, taken)
    assert networks.usage_of(pool, taken).taken == count
    assert networks.free_subnet(pool, taken) == free


def _blocks(top: Path) -> int:
    """What du counts: the allocated bytes of every inode under `top` (itself included), each once, no link followed."""
    inodes = {}
    for path in [top, *top.rglob("*")]:
        info = path.lstat()
        inodes[(info.st_dev, info.st_ino)] = info.st_blocks * 512
    return sum(inodes.values())


def test_disk_usage_counts_what_is_allocated_once_and_follows_no_link(tmp_path: Path) -> None:
    """`report` sizes every app's repository and site folders in one run of du (adapters/diskuse.py)."""
    from minipaas.adapters import diskuse

    (tmp_path / "site" / "1" / "css").mkdir(parents=True)
    (tmp_path / "site" / "1" / "index.html").write_bytes(b"x" * 300)
    (tmp_path / "site" / "1" / "css" / "a.css").write_bytes(b"y" * 50)
    (tmp_path / "site" / "current").symlink_to("1")  # the live release's link: not a second copy
    (tmp_path / "site" / "1" / "alias.html").symlink_to("index.html")
    os.link(tmp_path / "site" / "1" / "index.html", tmp_path / "site" / "1" / "same.html")  # one inode, counted once
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "big").write_bytes(b"z" * 100_000)
    (tmp_path / "site" / "1" / "out").symlink_to(tmp_path / "elsewhere")
    (tmp_path / "we ird\nname").mkdir()  # any path: du's lines end with NUL
    (tmp_path / "we ird\nname" / "f").write_bytes(b"w" * 5000)
    site, css, odd = tmp_path / "site", tmp_path / "site" / "1" / "css", tmp_path / "we ird\nname"
    found = diskuse.usage([site, tmp_path / "missing", odd, site])
    assert found == {site: _blocks(site), tmp_path / "missing": 0, odd: _blocks(odd)}
    assert diskuse.of(css) == _blocks(css)
    assert 0 < found[site] < 100_000 and found[odd] >= 5000
    assert diskuse.of(tmp_path / "site" / "1" / "index.html") == _blocks(tmp_path / "site" / "1" / "index.html")
