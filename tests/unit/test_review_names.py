"""Review apps' names, slugs and inheritance, without an engine: names.py, state/reviews.py, and the
config and settings a review app gets from its parent (SQLite only)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from minipaas.access.access import Principal
from minipaas.errors import InvalidInput
from minipaas.state import apps, config, reviews
from minipaas.state.host import Host
from minipaas.state.names import branch_slug, check_app, check_new_app, parent_of
from tests.helpers.stores import store_host

LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")


@pytest.mark.parametrize(("branch", "slug"), [
    ("feature/login", "feature-login"),
    ("Feature.Login", "feature-login"),
    ("release/1.2.3", "release-1-2-3"),
    ("fix-ü-ß", "fix-u"),
    ("--weird__", "weird"),
    ("日本語", "branch"),
])
def test_branch_slugs_are_dns_labels(branch: str, slug: str) -> None:
    assert branch_slug(branch) == slug


def test_long_and_distinct_slugs_end_with_a_hash_of_the_whole_name() -> None:
    long = branch_slug("a" * 200)
    assert len(long) == 63 and LABEL.fullmatch(long) and re.fullmatch(r"a{56}-[0-9a-f]{6}", long)
    assert branch_slug("a" * 200) != branch_slug("a" * 201)  # cut alike, still distinct
    assert branch_slug("Feature/Login", distinct=True) != branch_slug("feature/login", distinct=True)
    assert LABEL.fullmatch(branch_slug("-" * 300, distinct=True))


def test_review_app_names() -> None:
    assert check_app("hello--feature-login") == "hello--feature-login"
    assert parent_of("hello--feature-login") == "hello" and parent_of("hello") is None
    with pytest.raises(InvalidInput, match="kept for review apps"):
        check_new_app("hello--x")
    assert parent_of("hello---x") is None  # an app's name from before (a dash may end no app's name)
    for bad in ("hello--x-", "--x", "Hello--x", "hello--" + "a" * 64):
        with pytest.raises(InvalidInput):
            check_app(bad)


def test_a_grant_on_an_app_covers_its_review_apps_only() -> None:
    ci = Principal("ci", "deployer", "fp", frozenset({"hello"}))
    assert ci.may_reach("hello") and ci.may_reach("hello--topic")
    assert not ci.may_reach("hello2--topic") and not ci.may_reach("other--hello")


@pytest.fixture
def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Host:
    return store_host(tmp_path, monkeypatch, "hello")


def test_names_that_slug_alike_get_distinct_review_apps(host: Host) -> None:
    first = reviews.new_name(host, "hello", "feature/login")
    reviews.insert(host, name=first, parent="hello", branch="feature/login", domain="a.example")
    second = reviews.new_name(host, "hello", "Feature/Login")
    assert first == "hello--feature-login" and re.fullmatch(r"hello--feature-login-[0-9a-f]{6}", second)
    reviews.insert(host, name=second, parent="hello", branch="Feature/Login", domain="b.example")
    assert reviews.find(host, "hello", "Feature/Login").name == second
    assert {r.branch for r in reviews.of(host, "hello")} == {"feature/login", "Feature/Login"}
    assert reviews.parent(host, second) == "hello" and reviews.parent(host, "hello") is None


def test_a_review_app_inherits_config_and_settings_with_its_own_overrides_winning(host: Host) -> None:
    reviews.insert(host, name="hello--topic", parent="hello", branch="topic", domain="topic.hello.example")
    config.set_many(host, "hello", {"SHARED": "parent", "OWN": "parent"})
    config.set_many(host, "hello--topic", {"OWN": "review"})
    assert config.get_all(host, "hello--topic") == {"OWN": "review", "SHARED": "parent"}
    assert config.own(host, "hello--topic") == {"OWN": "review"}
    # A rollback puts back a whole config: only what differs from the parent becomes the review app's own.
    config.replace_all(host, "hello--topic", {"SHARED": "parent", "OWN": "older"})
    assert config.own(host, "hello--topic") == {"OWN": "older"}

    apps.set_setting(host, "hello", "memory", "1g")
    assert apps.get_setting(host, "hello--topic", "memory") == "1g"
    apps.set_setting(host, "hello--topic", "memory", "256m")
    assert apps.get_setting(host, "hello--topic", "memory") == "256m"
    assert apps.get_setting(host, "hello", "memory") == "1g"
    # The review settings are the parent's alone.
    apps.set_setting(host, "hello", "review-apps-max", "3")
    apps.set_setting(host, "hello--topic", "review-apps-max", "7")
    assert apps.get_setting(host, "hello--topic", "review-apps-max") == "3"
    assert apps.get_setting(host, "hello", "review-apps-max") == "3"


def test_review_urls(host: Host) -> None:
    domain = host.settings.domain
    assert apps.default_domain(host, "hello--topic") == f"topic.hello.{domain}"
    apps.set_setting(host, "hello", "review-url", "{app}-{slug}.review.{domain}")
    assert apps.default_domain(host, "hello--topic") == f"hello-topic.review.{domain}"
    for bad in ("{app}.{domain}", "{slug}..{domain}", "{slug}.{nope}", "{slug}/x.{domain}", "{slug}.{0}",
                # str.format's attributes, indexes, conversions and specs: an AttributeError or a TypeError
                # before, and `{slug:.4}` renders `a-b` well and `abc-` for the branch abc-def
                "{slug}.{app.x}", "{slug}.{app[x]}", "{slug!r}.{domain}", "{slug:.4}.{domain}", "{slug}.{",
                "{slug}.{app.__class__}"):
        with pytest.raises(InvalidInput) as refused:
            apps.set_setting(host, "hello", "review-url", bad)
        assert "\n" not in refused.value.message
    assert apps.default_domain(host, "hello--topic") == f"hello-topic.review.{domain}"
    assert host.settings.image_tag("hello--topic", 3, "1a2b3c4d5e") == f"{host.settings.instance}/hello:topic-1a2b3c4"
    assert host.settings.image_tag("hello", 3, "1a2b3c4d5e") == f"{host.settings.instance}/hello:3"


@pytest.mark.parametrize("branch", ["v12", "V7", "v0", "v12/", "/v12", "v007"])
def test_no_review_apps_slug_is_a_release_label(branch: str) -> None:
    # `v<N>.<app>.<domain>` reaches release N of the app: a branch whose slug would be that gets the hash suffix.
    slug = branch_slug(branch)
    assert not re.fullmatch(r"v[0-9]+", slug) and re.fullmatch(r"v[0-9]+-[0-9a-f]{6}", slug), slug
    assert branch_slug("v12") != branch_slug("V12")  # the hash is of the whole name, as for other collisions
    assert branch_slug("v12a") == "v12a" and branch_slug("v/12") == "v-12" and branch_slug("version-12") == "version-12"
