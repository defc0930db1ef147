"""Issue 19, item 14: a linked Postgres gave the app its superuser (`COPY ... TO PROGRAM` was a shell in the
service's container). Now each linked app logs in as a role of its own that owns its data and nothing more.

Every attack runs from the app's own container with its own credentials (`minipaas run APP -- node sql.js`,
the pg client of the test app), against the real PostgreSQL of the service, after real pushes and links;
the honest variant (tables made, migrated, read and written; backups and restores; two apps on one
service) runs beside it. The upgrade test makes its service and links with the version before this one
(commit BEFORE_ROLES, its own code run as it was) and upgrades them with this one.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest

from tests.helpers.addons import _service_images, count, wait_for, write
from tests.helpers.host import APPS, ROOT, Paas, docker
from tests.helpers.postgres import DENIED, database_url, ok, refused, sql, superuser_sql, with_user

SERVICES_APP = APPS / "services-app"
BEFORE_ROLES = "e5510ef"  # the last version whose links gave apps the superuser's URL
SERVER_ROLES = ("pg_execute_server_program", "pg_read_server_files", "pg_write_server_files")
REJECTED = "28000"  # invalid_authorization_specification: pg_hba.conf has no line for it, or rejects it
BAD_PASSWORD = "28P01"

__all__ = ["_service_images"]  # the module fixture that builds the service images once


def test_an_apps_role_owns_its_data_and_nothing_more(paas: Paas) -> None:
    app, _ = paas.deploy(SERVICES_APP, prefix="pgr")
    paas.run("postgres:create", "db")
    paas.run("postgres:link", "db", app)
    url = database_url(paas, app)
    role = url.username
    assert role == f"app_{app}"

    # The honest app: its tables made, migrated, read and written, by its requests and by a one-off container.
    write(paas, app)
    write(paas, app)
    assert count(paas, app) == {"rows": 2}
    honest = sql(paas, app,
                 "CREATE TABLE notes (id serial PRIMARY KEY, body text NOT NULL)",
                 "INSERT INTO notes (body) VALUES ('one'), ('two')",
                 "ALTER TABLE notes ADD COLUMN done boolean NOT NULL DEFAULT false",
                 "CREATE INDEX notes_done ON notes (done)",
                 "UPDATE notes SET done = true WHERE body = 'one'",
                 "ALTER TABLE items ADD COLUMN tag text",
                 "CREATE EXTENSION IF NOT EXISTS pgcrypto",  # trusted: the database's owner may
                 "SELECT body, done FROM notes ORDER BY id",
                 "SELECT current_user, session_user, (SELECT count(*) FROM items) AS rows",
                 "SELECT tableowner FROM pg_tables WHERE tablename IN ('items', 'notes') GROUP BY 1")
    for answer in honest:
        ok(answer)
    assert ok(honest[7]) == [{"body": "one", "done": True}, {"body": "two", "done": False}]
    assert ok(honest[8]) == [{"current_user": "owner", "session_user": role, "rows": "2"}]
    assert ok(honest[9]) == [{"tableowner": "owner"}]
    write(paas, app)  # the migrated table still takes the app's writes
    assert count(paas, app) == {"rows": 3}

    # What the role is: a login role with no attribute beyond that, a member of `owner` only, of none of the
    # server's file and program roles; `owner` holds nothing more either.
    facts = sql(paas, app, "SELECT r.rolname, r.rolsuper, r.rolcreaterole, r.rolcreatedb, r.rolreplication, "
                           "r.rolbypassrls, r.rolinherit, r.rolcanlogin FROM pg_roles r "
                           "WHERE r.rolname IN (session_user, 'owner') ORDER BY r.rolname",
                "SELECT string_agg(g.rolname, ',' ORDER BY g.rolname) AS groups FROM pg_auth_members m "
                "JOIN pg_roles g ON g.oid = m.roleid WHERE m.member IN (SELECT oid FROM pg_roles "
                "WHERE rolname IN (session_user, 'owner'))",
                "SELECT " + ", ".join(f"pg_has_role(session_user, '{r}', 'MEMBER') OR pg_has_role('owner', '{r}', "
                                      f"'MEMBER') AS {r}" for r in SERVER_ROLES))
    assert ok(facts[0]) == [
        {"rolname": role, "rolsuper": False, "rolcreaterole": False, "rolcreatedb": False, "rolreplication": False,
         "rolbypassrls": False, "rolinherit": False, "rolcanlogin": True},
        {"rolname": "owner", "rolsuper": False, "rolcreaterole": False, "rolcreatedb": False,
         "rolreplication": False, "rolbypassrls": False, "rolinherit": True, "rolcanlogin": True}]
    assert ok(facts[1]) == [{"groups": "owner"}]
    assert ok(facts[2]) == [dict.fromkeys(SERVER_ROLES, False)]

    # The attacks, from the app's container with its own URL: each refused by the server.
    attacks = sql(paas, app,
                  "COPY (SELECT 1) TO PROGRAM 'id'",
                  "COPY notes FROM PROGRAM 'id'",
                  "CREATE ROLE intruder LOGIN SUPERUSER PASSWORD 'x'",
                  "CREATE ROLE intruder",
                  f'ALTER ROLE "{role}" SUPERUSER',
                  "ALTER ROLE owner SUPERUSER",
                  f'ALTER ROLE "{role}" CREATEROLE',
                  "SELECT pg_read_file('/etc/passwd')",
                  "SELECT pg_read_binary_file('/var/lib/postgresql/data/pg_hba.conf')",
                  "SELECT pg_ls_dir('.')",
                  "SELECT lo_import('/etc/passwd')",
                  "SET ROLE postgres",
                  f'GRANT pg_execute_server_program TO "{role}"',
                  "GRANT pg_read_server_files TO owner",
                  "CREATE EXTENSION dblink",
                  "CREATE EXTENSION file_fdw",
                  "CREATE FUNCTION sh(text) RETURNS int LANGUAGE c AS 'libc', 'system'",
                  "ALTER SYSTEM SET log_min_messages = debug5",
                  "SELECT * FROM pg_authid",
                  # the role itself, outside `owner`: not even its own data
                  "SET ROLE NONE; SELECT count(*) FROM items")
    for answer in attacks:
        refused(answer, DENIED)
    assert "pg_execute_server_program" in str(attacks[0]["error"])
    # Nothing came of them.
    assert "intruder" not in superuser_sql(paas, "db", "SELECT rolname FROM pg_roles;")
    assert superuser_sql(paas, "db", "SELECT rolsuper FROM pg_roles WHERE rolname = 'owner';").split() == ["f"]

    # Other ways in over the network: the superuser (with the service's password), the owner role, another
    # database: pg_hba.conf has no line for them.
    service_password = json.loads(paas.run("postgres:info", "db", "--show-secrets", "--json").stdout)["password"]
    own_password = urllib.parse.unquote(url.password or "")
    ok(sql(paas, app, "SELECT 1", url=url.geturl())[0])  # its own URL, given explicitly, for comparison
    for other in (with_user(url, "postgres", service_password), with_user(url, "owner", service_password),
                  with_user(url, "owner", own_password), with_user(url, role, own_password, "postgres"),
                  with_user(url, role, own_password, "template1")):
        refused(sql(paas, app, "SELECT 1", url=other)[0], REJECTED)
    refused(sql(paas, app, "SELECT 1", url=with_user(url, role, "wrong"))[0], BAD_PASSWORD)

    # The superuser is minipaas' own: inside the container, for admins (and what the app made is still there).
    assert superuser_sql(paas, "db", "SELECT count(*) FROM notes;").split() == ["2"]
    # minipaas' own readiness probe goes through the local socket: no rejected login of its own in the log.
    logs = paas.run("postgres:logs", "db", "-n", "10000").stdout
    assert 'rejects connection for host "' in logs and 'host "127.0.0.1"' not in logs


def test_two_apps_share_one_service_each_as_its_own_role_and_lose_it_when_unlinked(paas: Paas) -> None:
    first, _ = paas.deploy(SERVICES_APP, prefix="pga")
    second, _ = paas.deploy(SERVICES_APP, prefix="pgb")
    paas.run("postgres:create", "shared")
    paas.run("postgres:link", "shared", first)
    # A hand edit that would let anyone in is replaced at the next link (pg_hba.conf is minipaas').
    service, hba_file = paas.container("svc.postgres.shared"), "/var/lib/postgresql/data/pg_hba.conf"
    written = docker("exec", service, "cat", hba_file)
    docker("exec", service, "sh", "-c", f"echo 'host all all all trust' >> {hba_file}")
    paas.run("postgres:link", "shared", second)
    assert docker("exec", service, "cat", hba_file) == written and "trust" not in written
    first_url, second_url = database_url(paas, first), database_url(paas, second)
    assert (first_url.username, second_url.username) == (f"app_{first}", f"app_{second}")
    assert first_url.password != second_url.password

    # One database, as dokku shares it: what one app makes, the other reads, writes and migrates.
    write(paas, first)
    write(paas, second)
    assert count(paas, first) == count(paas, second) == {"rows": 2}
    migrated = sql(paas, second, "ALTER TABLE items ADD COLUMN source text", "UPDATE items SET source = 'b'",
                   "CREATE TABLE second_only (x int)")
    for answer in migrated:
        ok(answer)
    both = sql(paas, first, "SELECT count(*) AS n FROM items WHERE source = 'b'", "DROP TABLE second_only",
               "SELECT current_user")
    assert ok(both[0]) == [{"n": "2"}] and ok(both[1]) == [] and ok(both[2]) == [{"current_user": "owner"}]
    info = paas.run("postgres:info", "shared").stdout
    assert f"{first} app_{first}" in info and f"{second} app_{second}" in info

    # Unlinked: its role is gone with its password and sessions; the other app goes on with all the data.
    paas.run("postgres:unlink", "shared", first)
    roles = superuser_sql(paas, "shared", "SELECT rolname FROM pg_roles WHERE rolname LIKE 'app\\_%' ORDER BY 1;")
    assert roles.split() == [f"app_{second}"]
    assert superuser_sql(paas, "shared", f"SELECT count(*) FROM pg_stat_activity WHERE usename = 'app_{first}';"
                         ).split() == ["0"]
    # (a role that is gone is no member of `owner`: pg_hba.conf has no line for it)
    refused(sql(paas, second, "SELECT 1", url=first_url.geturl())[0], REJECTED)
    write(paas, second)
    assert count(paas, second) == {"rows": 3}

    # An app destroyed: its role goes with it.
    paas.run("apps:destroy", second, "--force")
    roles = superuser_sql(paas, "shared", "SELECT count(*) FROM pg_roles WHERE rolname LIKE 'app\\_%';")
    assert roles.split() == ["0"]
    assert superuser_sql(paas, "shared", "SELECT count(*) FROM items;").split() == ["3"]


TROJAN = """\
CREATE FUNCTION trojan(int) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
  BEGIN
    SET ROLE NONE;
    RESET ROLE;
    COPY (SELECT 1) TO PROGRAM 'touch /tmp/trojan-ran';
  EXCEPTION WHEN OTHERS THEN NULL;
  END;
  RETURN true;
END $$;
ALTER TABLE items ADD CONSTRAINT trap CHECK (trojan(id));
"""


def test_backups_and_restores_keep_the_data_the_apps_and_no_app_code_as_superuser(paas: Paas) -> None:
    app, _ = paas.deploy(SERVICES_APP, prefix="pgk")
    paas.run("postgres:create", "kept")
    paas.run("postgres:link", "kept", app)
    for _ in range(3):
        write(paas, app)
    # The app plants a function that tries to become the superuser whenever a row is checked: a restore
    # run by the superuser would run it with its rights.
    ok(sql(paas, app, TROJAN)[0])
    service = paas.container("svc.postgres.kept")
    paas.run("postgres:backup", "kept")
    kept = sorted((paas.home / "services" / "postgres" / "kept" / "backups").glob("*.dump"))
    assert len(kept) == 1
    ok(sql(paas, app, "DELETE FROM items WHERE id > 1")[0])
    assert count(paas, app) == {"rows": 1}

    paas.run("postgres:restore", "kept", kept[0].name, "--force")
    assert count(paas, app) == {"rows": 3}
    write(paas, app)
    after = sql(paas, app, "ALTER TABLE items ADD COLUMN restored boolean DEFAULT true",
                "SELECT tableowner FROM pg_tables WHERE schemaname = 'public' GROUP BY 1",
                "SELECT count(*) AS n FROM items WHERE restored")
    ok(after[0])
    assert ok(after[1]) == [{"tableowner": "owner"}] and ok(after[2]) == [{"n": "4"}]
    # The trojan ran (each restored row was checked) but as the owner role only: no program was run.
    present = subprocess.run(["docker", "exec", service, "test", "-e", "/tmp/trojan-ran"], capture_output=True)
    assert present.returncode == 1, present

    # A streamed export into a new service: the same, under its own owner role, for an app linked after.
    dump = subprocess.run([*paas.command(), "postgres:export", "kept"], env=paas.env, capture_output=True,
                          check=True).stdout
    paas.run("postgres:create", "copy")
    subprocess.run([*paas.command(), "postgres:import", "copy"], env=paas.env, input=dump, check=True,
                   capture_output=True)
    paas.run("postgres:unlink", "kept", app)
    paas.run("postgres:link", "copy", app)
    assert count(paas, app) == {"rows": 4}
    write(paas, app)
    assert count(paas, app) == {"rows": 5}
    present = subprocess.run(["docker", "exec", paas.container("svc.postgres.copy"), "test", "-e",
                              "/tmp/trojan-ran"], capture_output=True)
    assert present.returncode == 1, present


@pytest.fixture(scope="module")
def before_roles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """minipaas as it was before this change (its package only), to make services and links the old way."""
    folder = tmp_path_factory.mktemp("before-roles")
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", BEFORE_ROLES, "minipaas"], capture_output=True,
                             check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


def old(paas: Paas, folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # (run from its folder: `python -m` puts the working directory first on the path)
    result = subprocess.run([sys.executable, "-m", "minipaas", *args], env={**paas.env, "PYTHONPATH": str(folder)},
                            cwd=folder, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def releases(paas: Paas, app: str) -> int:
    return len(json.loads(paas.run("releases", app, "--json").stdout))


def test_links_an_earlier_version_made_are_upgraded_by_the_next_link_and_by_init(paas: Paas,
                                                                                 before_roles: Path) -> None:
    first, checkout = paas.deploy(SERVICES_APP, prefix="pgo")
    third, _ = paas.deploy(SERVICES_APP, prefix="pgi")
    old(paas, before_roles, "postgres:create", "legacy")
    old(paas, before_roles, "postgres:link", "legacy", first)
    old(paas, before_roles, "postgres:create", "other")
    old(paas, before_roles, "postgres:link", "other", third)
    for app in (first, third):
        url = database_url(paas, app)
        assert url.username == "postgres"
        write(paas, app)
        write(paas, app)
        # The hole as it was: the app's own URL is the superuser's, a shell in the service's container.
        assert "uid=64320(postgres)" in str(ok(sql(paas, app, "CREATE TEMP TABLE o (line text); "
                                                             "COPY o FROM PROGRAM 'id'; SELECT line FROM o")[0]))
    old_password = urllib.parse.unquote(database_url(paas, first).password or "")
    # A review app of the first, running with the URL it inherits.
    subprocess.run(["git", "checkout", "-q", "-b", "feature"], cwd=checkout, check=True)
    paas.push(checkout, "feature")
    review, review_host = f"{first}--feature", f"feature.{first}.paas.test"
    assert json.loads(paas.get(review, "/count", host=review_host).body) == {"rows": 2}
    before = releases(paas, first)

    # The next link of the service upgrades the links it has: the first app gets a role and a new release.
    second, _ = paas.deploy(SERVICES_APP, prefix="pgn")
    linked = paas.run("postgres:link", "legacy", second)
    assert f"giving {first} a role of its own" in linked.stdout
    url = database_url(paas, first)
    assert url.username == f"app_{first}" and releases(paas, first) == before + 1
    wait_for("the first app's new release to serve", lambda: paas.get(first, "/count").status == 200)
    assert count(paas, first) == count(paas, second) == {"rows": 2}
    # its review app was restarted with the new URL (the old one is refused now, its sessions ended)
    response = paas.get(review, "/count", host=review_host)
    assert response.status == 200 and json.loads(response.body) == {"rows": 2}, response.body
    write(paas, first)
    write(paas, second)
    assert count(paas, first) == {"rows": 4}
    refused(sql(paas, first, "COPY (SELECT 1) TO PROGRAM 'id'")[0], DENIED)
    # The old URL is no way in any more (pg_hba.conf), nor is its password the superuser's (made anew).
    refused(sql(paas, first, "SELECT 1", url=with_user(url, "postgres", old_password))[0], REJECTED)
    new_password = json.loads(paas.run("postgres:info", "legacy", "--show-secrets", "--json").stdout)["password"]
    assert new_password != old_password
    # What the app made as the superuser is the owner role's: the apps can migrate it.
    ok(sql(paas, second, "ALTER TABLE items ADD COLUMN upgraded boolean")[0])
    assert superuser_sql(paas, "legacy", "SELECT tableowner FROM pg_tables WHERE tablename = 'items';"
                         ).split() == ["owner"]

    # `minipaas init` upgrades the services no link touched.
    third_before = releases(paas, third)
    assert database_url(paas, third).username == "postgres"
    paas.run("init")
    assert database_url(paas, third).username == f"app_{third}" and releases(paas, third) == third_before + 1
    wait_for("the third app's new release to serve", lambda: paas.get(third, "/count").status == 200)
    assert count(paas, third) == {"rows": 2}
    write(paas, third)
    assert count(paas, third) == {"rows": 3}
    refused(sql(paas, third, "COPY (SELECT 1) TO PROGRAM 'id'")[0], DENIED)
    hba = docker("exec", paas.container("svc.postgres.other"), "cat", "/var/lib/postgresql/data/pg_hba.conf")
    assert "host    all  postgres,owner  all  reject" in hba and "0.0.0.0/0" not in hba
    # A second init changes nothing more (no new release).
    paas.run("init")
    assert releases(paas, third) == third_before + 1
