"""The pure parts of services: names, URLs, names on the engine, backup names, retention, the schedule, the
images' Dockerfiles, the home's modes."""

from __future__ import annotations

import datetime
import urllib.parse

import pytest

from minipaas.build import serviceimages
from minipaas.deploy import servicebackups
from minipaas.deploy.servicebackups import Backup
from minipaas.errors import InvalidInput
from minipaas.state import perms, services
from minipaas.state.settings import load


@pytest.mark.parametrize("name", ["x;y", "../x", "X", "", "a--b", "a-", "-a", "1db", "a" * 64, "db\n", "d b"])
def test_hostile_service_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidInput):
        services.check_name(name)


@pytest.mark.parametrize("name", ["db", "orders-2", "a" * 63])
def test_service_names_like_app_names_pass(name: str) -> None:
    assert services.check_name(name) == name


def test_urls_name_the_alias_and_quote_the_password() -> None:
    url = services.url(services.POSTGRES, "orders", "p@ss/word:+")
    assert url == "postgres://postgres:p%40ss%2Fword%3A%2B@postgres-orders:5432/orders"
    parsed = urllib.parse.urlsplit(url)
    assert urllib.parse.unquote(parsed.password or "") == "p@ss/word:+" and parsed.hostname == "postgres-orders"
    assert services.url(services.REDIS, "cache", "abc") == "redis://:abc@redis-cache:6379"


def test_generated_passwords_are_long_random_and_url_safe() -> None:
    first, second = services.new_password(), services.new_password()
    assert first != second and len(first) >= 40
    assert urllib.parse.quote(first, safe="") == first.replace("~", "%7E")  # nothing to quote but ~


def test_engine_names_are_the_instances_and_never_an_apps() -> None:
    settings = load({"MINIPAAS_HOME": "/var/lib/minipaas"})
    assert services.container_name(settings, "postgres", "db") == "svc.postgres.db"
    assert services.volume_name(settings, "postgres", "db") == "minipaas.postgres.db.data"
    # App networks are `<instance>-<app>` (no dots): a service's own network cannot be one of them.
    assert services.own_network(settings, "redis", "db") == "minipaas.redis.db"
    other = load({"MINIPAAS_HOME": "/srv/other"})
    assert services.container_name(other, "postgres", "db").startswith("mp-")


def test_backup_names_round_trip_and_others_are_not_backups() -> None:
    when = datetime.datetime(2026, 11, 26, 3, 4, 5, tzinfo=datetime.UTC)
    name = servicebackups.backup_name("postgres", when)
    assert name == "20261126T030405Z.dump"
    assert servicebackups.parse_name(name) == when.timestamp()
    assert servicebackups.backup_name("redis", when).endswith(".rdb")
    for other in ("20261126T030405Z.dump.sha256", ".20261126T030405Z.dump.partial", "x.dump", "../a.dump"):
        assert servicebackups.parse_name(other) is None


def test_retention_keeps_the_newest() -> None:
    kept = [Backup(f"b{i}", float(i), 1) for i in (3, 1, 4, 2)]
    assert [b.name for b in servicebackups.beyond_retention(kept, 2)] == ["b2", "b1"]
    assert servicebackups.beyond_retention(kept, 7) == []


def test_a_daily_backup_is_due_a_day_after_the_last() -> None:
    day = 24 * 3600.0
    assert servicebackups.is_due([], 1000.0, "daily")
    assert not servicebackups.is_due([], 1000.0, "off")
    assert not servicebackups.is_due([Backup("a", 0.0, 1)], day / 2, "daily")
    assert servicebackups.is_due([Backup("a", 0.0, 1)], day, "daily")
    assert servicebackups.sha256_line("ab", "x.dump") == "ab  x.dump\n"


def test_images_install_debians_packages_and_run_as_their_users() -> None:
    for spec in serviceimages.SPECS.values():
        text = serviceimages.dockerfile(spec)
        assert text.startswith(f"FROM {serviceimages.DEBIAN_IMAGE}:bookworm\n")
        assert " ".join(spec.packages) in text and f"USER {spec.user}\n" in text
        assert "USER root" not in text
    assert "postgresql-15" in serviceimages.POSTGRES.packages and serviceimages.POSTGRES.tag == "minipaas/postgres:15"
    # The password leaves the environment before the servers start.
    assert "unset POSTGRES_PASSWORD\nexec" in serviceimages.POSTGRES_ENTRYPOINT
    assert "unset REDIS_PASSWORD\nexec" in serviceimages.REDIS_ENTRYPOINT


def test_an_image_carries_its_recipe_and_a_changed_recipe_is_another() -> None:
    import dataclasses
    import tarfile

    spec = serviceimages.POSTGRES
    with tarfile.open(fileobj=serviceimages.context(spec)) as tar:
        text = tar.extractfile("Dockerfile").read().decode()
    assert text.endswith(f"LABEL {serviceimages.RECIPE_LABEL}={serviceimages.recipe(spec)}\n")
    changed = dataclasses.replace(spec, after=spec.after + " && true")
    assert serviceimages.recipe(changed) != serviceimages.recipe(spec)
    assert "useradd --system -u 64320" in text  # a uid of its own, made before the package's scripts run


def test_the_services_folder_is_roots_alone() -> None:
    assert perms.target_mode("services", 0o755, is_folder=True) == 0o700
    assert perms.target_mode("services/postgres/db/backups/x.dump", 0o644, is_folder=False) == 0o600
