"""The pure parts of services: names, URLs, names on the engine, Postgres roles (their names, the SQL that
makes and drops them, the password verifiers, pg_hba.conf), backup names, retention, the schedule, the
images' Dockerfiles, the home's modes."""

from __future__ import annotations

import datetime
import urllib.parse

import pytest
from hypothesis import given
from hypothesis import strategies as st

from minipaas.addons import backups, pgroles
from minipaas.addons.backups import Backup
from minipaas.build import hostimages
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


def test_urls_name_the_alias_the_apps_own_role_and_quote_the_password() -> None:
    url = services.url(services.POSTGRES, "orders", "p@ss/word:+", "shop")
    assert url == "postgres://app_shop:p%40ss%2Fword%3A%2B@postgres-orders:5432/orders"
    parsed = urllib.parse.urlsplit(url)
    assert urllib.parse.unquote(parsed.password or "") == "p@ss/word:+" and parsed.hostname == "postgres-orders"
    assert parsed.username == services.app_role("shop") != services.SUPERUSER
    with pytest.raises(ValueError):
        services.url(services.POSTGRES, "orders", "pw")  # never the superuser's
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
    name = backups.backup_name("postgres", when)
    assert name == "20261126T030405Z.dump"
    assert backups.parse_name(name) == when.timestamp()
    assert backups.backup_name("redis", when).endswith(".rdb")
    for other in ("20261126T030405Z.dump.sha256", ".20261126T030405Z.dump.partial", "x.dump", "../a.dump"):
        assert backups.parse_name(other) is None


def test_retention_keeps_the_newest() -> None:
    kept = [Backup(f"b{i}", float(i), 1) for i in (3, 1, 4, 2)]
    assert [b.name for b in backups.beyond_retention(kept, 2)] == ["b2", "b1"]
    assert backups.beyond_retention(kept, 7) == []


def test_a_daily_backup_is_due_a_day_after_the_last() -> None:
    day = 24 * 3600.0
    assert backups.is_due([], 1000.0, "daily")
    assert not backups.is_due([], 1000.0, "off")
    assert not backups.is_due([Backup("a", 0.0, 1)], day / 2, "daily")
    assert backups.is_due([Backup("a", 0.0, 1)], day, "daily")
    assert backups.sha256_line("ab", "x.dump") == "ab  x.dump\n"


def test_images_install_debians_packages_and_run_as_their_users() -> None:
    for spec in hostimages.SPECS.values():
        text = hostimages.dockerfile(spec)
        assert text.startswith(f"FROM {hostimages.DEBIAN_IMAGE}:bookworm\n")
        assert " ".join(spec.packages) in text and f"USER {spec.user}\n" in text
        assert "USER root" not in text
    assert "postgresql-15" in hostimages.POSTGRES.packages and hostimages.POSTGRES.tag == "minipaas/postgres:15"
    # The password leaves the environment before the servers start.
    assert "unset POSTGRES_PASSWORD\nexec" in hostimages.POSTGRES_ENTRYPOINT
    assert "unset REDIS_PASSWORD\nexec" in hostimages.REDIS_ENTRYPOINT


def test_an_image_carries_its_recipe_and_a_changed_recipe_is_another() -> None:
    import dataclasses
    import tarfile

    spec = hostimages.POSTGRES
    with tarfile.open(fileobj=hostimages.context(spec)) as tar:
        text = tar.extractfile("Dockerfile").read().decode()
    assert text.endswith(f"LABEL {hostimages.RECIPE_LABEL}={hostimages.recipe(spec)}\n")
    changed = dataclasses.replace(spec, after=spec.after + " && true")
    assert hostimages.recipe(changed) != hostimages.recipe(spec)
    assert "useradd --system -u 64320" in text  # a uid of its own, made before the package's scripts run


def test_the_services_folder_is_roots_alone() -> None:
    assert perms.target_mode("services", 0o755, is_folder=True) == 0o700
    assert perms.target_mode("services/postgres/db/backups/x.dump", 0o644, is_folder=False) == 0o600


# -- Postgres roles (issue 19 item 14) -------------------------------------------------------

APP_NAMES = st.from_regex(r"[a-z][a-z0-9-]{0,61}[a-z0-9]|[a-z]", fullmatch=True)


@given(APP_NAMES, APP_NAMES)
def test_each_app_has_a_role_of_its_own_never_the_superusers_or_the_owners(first: str, second: str) -> None:
    role = services.app_role(first)
    assert role.startswith("app_") and len(role.encode()) <= 63  # the server would cut a longer one short
    assert role not in (services.SUPERUSER, services.OWNER_ROLE) and not role.startswith("pg_")
    assert (services.app_role(second) == role) == (first == second)


def test_long_app_names_get_distinct_roles_of_at_most_63_bytes() -> None:
    one, two = "a" * 60 + "-x", "a" * 60 + "-y"
    assert services.app_role("shop") == "app_shop"
    assert len(services.app_role(one)) == 63 and services.app_role(one) != services.app_role(two)


def test_the_verifier_is_scram_sha_256_and_proves_the_password_only() -> None:
    """A full SCRAM exchange (scramp's client against a server holding only the verifier), as Postgres does."""
    import base64

    from scramp import ScramClient, ScramException, ScramMechanism

    text = pgroles.verifier("s3cret-pw")
    scheme, rest = text.split("$", 1)
    count_salt, keys = rest.split("$")
    count, salt = count_salt.split(":")
    stored, server = keys.split(":")
    assert scheme == "SCRAM-SHA-256" and int(count) == 4096 and "s3cret" not in text
    info = (base64.b64decode(salt), base64.b64decode(stored), base64.b64decode(server), int(count))
    assert pgroles.verifier("s3cret-pw") != text  # a new salt each time

    def exchange(password: str) -> None:
        server_side = ScramMechanism("SCRAM-SHA-256").make_server(lambda _user: info)
        client = ScramClient(["SCRAM-SHA-256"], "app_shop", password)
        server_side.set_client_first(client.get_client_first())
        client.set_server_first(server_side.get_server_first())
        server_side.set_client_final(client.get_client_final())
        client.set_server_final(server_side.get_server_final())

    exchange("s3cret-pw")
    with pytest.raises(ScramException):
        exchange("wrong")


def test_sql_names_and_values_are_quoted() -> None:
    assert pgroles.ident('we"ird') == '"we""ird"'
    assert pgroles.literal("it's") == "'it''s'"
    with pytest.raises(ValueError):
        pgroles.literal("a\0b")
    with pytest.raises(ValueError):
        pgroles.ident("a\0b")


def test_an_app_role_is_a_login_member_of_the_owner_and_holds_nothing_more() -> None:
    sql = pgroles.grant("db", "app_shop", "SCRAM-SHA-256$4096:c2FsdA==$a:b")
    assert sql.startswith(pgroles.PRELUDE) and "SET search_path = pg_catalog, pg_temp;" in pgroles.PRELUDE
    assert ('ALTER ROLE "app_shop" WITH LOGIN NOINHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION '
            "NOBYPASSRLS CONNECTION LIMIT -1 PASSWORD 'SCRAM-SHA-256$4096:c2FsdA==$a:b';") in sql
    assert 'GRANT "owner" TO "app_shop";' in sql and "ALTER ROLE \"app_shop\" SET role = 'owner';" in sql
    assert 'GRANT CONNECT ON DATABASE "db" TO "app_shop";' in sql
    # every other membership revoked; none of the server's file and program roles is ever granted
    assert "REVOKE %I FROM %I" in sql and "NOT IN ('owner')" in sql
    for role in pgroles.SERVER_ROLES:
        assert role not in sql
    owner = pgroles.prepare("db")
    assert 'ALTER ROLE "owner" WITH LOGIN INHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS ' \
           "PASSWORD NULL" in owner
    assert 'ALTER DATABASE "db" OWNER TO "owner";' in owner and 'REVOKE ALL ON DATABASE "db" FROM PUBLIC;' in owner


def test_dropping_an_app_role_ends_its_sessions_and_keeps_what_it_made() -> None:
    sql = pgroles.revoke("db", "app_shop")
    steps = ["NOLOGIN", "pg_terminate_backend", "REASSIGN OWNED BY", "DROP OWNED BY", "DROP ROLE"]
    assert [sql.index(step) for step in steps] == sorted(sql.index(step) for step in steps)
    assert "'owner'" in sql


def test_pg_hba_lets_apps_in_by_scram_and_the_superuser_only_inside() -> None:
    text = pgroles.hba("all")
    rules = [line.split() for line in text.splitlines() if line and not line.startswith("#")]
    assert rules == [
        ["local", "all", "postgres,owner", "peer", "map=minipaas"],
        ["host", "all", "postgres,owner", "all", "reject"],
        ["host", '"all"', "+owner", "all", "scram-sha-256"],  # the database named all, not every database
        # review apps' roles: to the one database whose CONNECT they have, their own (PUBLIC has it on none)
        ["host", "all", "+review_apps", "all", "scram-sha-256"],
    ]
    assert "trust" not in text and "md5" not in text and "replication" not in text
    assert pgroles.ident_map().split("\n")[2:4] == ["minipaas  postgres  postgres", "minipaas  postgres  owner"]


def test_a_restore_keeps_the_extensions_the_owner_cannot_drop() -> None:
    listing = (";\n; Selected TOC Entries:\n7; 2615 16385 SCHEMA - app owner\n"
               "2; 3079 16434 EXTENSION - pgcrypto \n3442; 0 0 COMMENT - EXTENSION pgcrypto \n"
               "3; 3079 16500 EXTENSION - citext \n217; 1259 16387 TABLE public items owner\n")
    kept = pgroles.restore_list(listing, {"pgcrypto"}).splitlines()
    assert kept[3:5] == [";2; 3079 16434 EXTENSION - pgcrypto ", ";3442; 0 0 COMMENT - EXTENSION pgcrypto "]
    assert kept[2] == "7; 2615 16385 SCHEMA - app owner" and kept[5] == "3; 3079 16500 EXTENSION - citext "
    assert kept[6] == "217; 1259 16387 TABLE public items owner"
    assert pgroles.restore_list(listing, set()) == listing
