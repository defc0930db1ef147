"""Review apps' lifetime and databases without an engine: `review-apps-ttl` durations, why a review app goes
(reviewexpiry.reason), what `gc --dry-run` names on a real bare repository (git and SQLite only), the daily
timer's command, and the names of review apps' databases."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from minipaas.addons import pgroles
from minipaas.deploy import reviewexpiry
from minipaas.errors import InvalidInput
from minipaas.host import units as hostunits
from minipaas.state import apps, durations, reviews, services, store
from minipaas.state import settings as settings_mod
from minipaas.state.host import Host
from minipaas.state.reviews import Review
from tests.helpers.stores import store_host

DAY = 86_400


@pytest.mark.parametrize(("value", "seconds"), [
    ("0", 0), ("7d", 7 * DAY), ("12h", 12 * 3600), ("90m", 5400), ("365d", 365 * DAY), ("3600", 3600)])
def test_ttl_durations(value: str, seconds: int) -> None:
    assert durations.ttl_seconds(value) == seconds
    apps.check_setting("review-apps-ttl", value)


@pytest.mark.parametrize("value", ["", "-1", "7 days", "1w", "59m", "366d", "1.5d", "7D", "00d"])
def test_bad_ttls_are_refused(value: str) -> None:
    assert durations.ttl_seconds(value) is None
    with pytest.raises(InvalidInput, match="review-apps-ttl"):
        apps.check_setting("review-apps-ttl", value)


def test_canary_intervals_keep_their_range() -> None:
    assert durations.duration_seconds("2m") == 120 and durations.duration_seconds("24h") == DAY
    assert durations.duration_seconds("1d") is None and durations.duration_seconds("5s") is None


def test_a_review_app_goes_when_its_branch_is_gone_or_was_not_pushed_for_the_ttl() -> None:
    review = Review("hello--topic", "hello", "topic", pushed_at=1000.0, created_at=10.0)
    assert reviewexpiry.reason(review, ttl=7 * DAY, now=1000.0 + 7 * DAY - 1, branch_exists=True) is None
    stale = reviewexpiry.reason(review, ttl=7 * DAY, now=1000.0 + 7 * DAY, branch_exists=True)
    assert stale == "its branch topic got no push for 7.0 days (review-apps-ttl)"
    assert reviewexpiry.reason(review, ttl=0, now=1e12, branch_exists=True) is None  # 0: never
    gone = reviewexpiry.reason(review, ttl=0, now=1000.0, branch_exists=False)
    assert gone == "its branch topic is no longer in the repository"
    never_pushed = Review("hello--x", "hello", "x", pushed_at=None, created_at=10.0)
    assert never_pushed.last_push == 10.0


@pytest.fixture
def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Host:
    h = store_host(tmp_path, monkeypatch, "hello")
    repo = h.settings.repo_path("hello")
    repo.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "init", "-q", "--bare", str(repo)], check=True)
    empty_tree = subprocess.run(["git", "--git-dir", str(repo), "hash-object", "-t", "tree", "-w", "--stdin"],
                                input=b"", capture_output=True, check=True).stdout.decode().strip()
    sha = subprocess.run(["git", "--git-dir", str(repo), "commit-tree", empty_tree, "-m", "x"],
                         capture_output=True, check=True, env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
                                                               "GIT_COMMITTER_NAME": "t",
                                                               "GIT_COMMITTER_EMAIL": "t@t"}).stdout.decode().strip()
    for branch in ("fresh", "stale"):
        subprocess.run(["git", "--git-dir", str(repo), "update-ref", f"refs/heads/{branch}", sha], check=True)
    return h


def test_a_dry_run_names_the_stale_and_the_orphaned_review_apps_and_removes_nothing(host: Host) -> None:
    for branch in ("fresh", "stale", "deleted"):
        reviews.insert(host, name=f"hello--{branch}", parent="hello", branch=branch, domain=f"{branch}.example")
        reviews.touch(host, f"hello--{branch}")
    now = store.now()
    apps.set_setting(host, "hello", "review-apps-ttl", "2d")
    with store.transaction(host.db) as db:  # its last push, three days ago
        db.execute("UPDATE apps SET pushed_at = ? WHERE name = 'hello--stale'", (now - 3 * DAY,))
    lines: list[str] = []
    named = reviewexpiry.expire(host, dry_run=True, progress=lines.append, now=now)
    assert sorted(e.name for e in named) == ["hello--deleted", "hello--stale"]
    assert "       would remove review app hello--deleted: its branch deleted is no longer in the repository" in lines
    assert {r.name for r in reviews.of(host, "hello")} == {"hello--fresh", "hello--stale", "hello--deleted"}
    # A parent whose repository cannot be read keeps its review apps (never taken for one without branches).
    with store.transaction(host.db) as db:
        db.execute("INSERT INTO apps (name, created_at) VALUES ('norepo', 0)")
    reviews.insert(host, name="norepo--x", parent="norepo", branch="x", domain="x.norepo.example")
    assert "norepo--x" not in {e.name for e in reviewexpiry.expire(host, dry_run=True, progress=lines.append, now=now)}
    assert any(line.startswith("       review apps of norepo kept: its repository cannot be read") for line in lines)
    apps.set_setting(host, "hello", "review-apps-ttl", "0")
    assert [e.name for e in reviewexpiry.expire(host, dry_run=True, progress=lines.append, now=now)] == \
        ["hello--deleted"]


def test_the_daily_timer_and_the_cron_job_expire_review_apps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINIPAAS_HOME", str(tmp_path))
    settings = settings_mod.load()
    renew = hostunits.units(settings)[1].text
    assert "ExecStart=-/usr/local/bin/minipaas review-apps:expire\n" in renew
    assert renew.index("review-apps:expire") < renew.index("letsencrypt:renew")
    assert "/usr/local/bin/minipaas review-apps:expire >>" in hostunits.cron(settings).text


def test_a_review_apps_database_is_db_underscore_slug_within_63_bytes_and_distinct_when_taken() -> None:
    assert services.review_database("db", "feature-login") == "db_feature-login"
    long = services.review_database("d" * 40, "s" * 40)
    assert len(long) == 63 and long.startswith("d" * 40 + "_") and long != services.review_database("d" * 40, "t" * 40)
    other = services.review_database("db", "topic", distinct="api--topic")
    assert other != "db_topic" and other.startswith("db_topic_") and len(other) <= 63
    assert other != services.review_database("db", "topic", distinct="web--topic")


def test_urls_name_a_review_apps_own_database_and_are_read_back() -> None:
    url = services.url(services.POSTGRES, "db", "pw", "hello--topic", db="db_topic")
    assert url == "postgres://app_hello--topic:pw@postgres-db:5432/db_topic"
    assert services.url_database(url) == "db_topic"
    redis = services.url(services.REDIS, "kv", "pw", number=3)
    assert redis == "redis://:pw@redis-kv:6379/3" and services.url_number(redis) == 3
    assert services.url_number(services.url(services.REDIS, "kv", "pw")) == 0


def test_redis_review_databases_run_out_after_15() -> None:
    assert services.free_redis_number(set()) == 1
    assert services.free_redis_number({1, 2, 4}) == 3
    assert services.free_redis_number(set(range(1, 16))) is None  # then it shares the parent's, and says so


def test_a_review_role_is_in_the_review_group_alone_and_its_database_is_closed_to_public() -> None:
    sql = pgroles.review_grant("app_hello--topic", "SCRAM-SHA-256$x")
    assert 'GRANT "review_apps" TO "app_hello--topic"' in sql and '"owner" TO' not in sql
    assert "NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS" in sql
    made = pgroles.review_database("db_topic", "app_hello--topic")
    assert 'CREATE DATABASE "db_topic" OWNER "app_hello--topic" TEMPLATE template0' in made
    assert made.index("CREATE DATABASE") < made.index('REVOKE ALL ON DATABASE "db_topic" FROM PUBLIC')
    assert 'DROP DATABASE IF EXISTS "db_topic" WITH (FORCE)' in pgroles.drop_database("db_topic")
