"""A review app's own databases, through real pushes, links and the real PostgreSQL and Redis of the services:
`review-apps-db copy` gives it the parent's rows at its creation, as a role of its own that cannot reach the
parent's database, and its writes never reach the parent; `empty` runs its release command against an empty
database; both go with the review app (a deleted branch, or a branch gone behind minipaas' back and `gc`)."""

from __future__ import annotations

import json
import subprocess
import urllib.parse

from tests.helpers.addons import _service_images, write
from tests.helpers.host import APPS, Paas, commit, git
from tests.helpers.postgres import DENIED, database_url, ok, refused, sql, superuser_sql, with_user
from tests.helpers.ssh_client import add_key
from tests.helpers.sshd import Sshd

__all__ = ["_service_images"]  # the module fixture that builds the service images once


def counts(paas: Paas, app: str, host: str | None = None) -> dict[str, int]:
    response = paas.get(app, "/count", host=host)
    assert response.status == 200, response.body
    return json.loads(response.body)


def test_a_review_app_gets_a_copy_or_an_empty_database_of_its_own_dropped_with_it(paas: Paas, sshd: Sshd) -> None:
    app, checkout = paas.deploy(APPS / "services-app", prefix="rdb")
    paas.run("postgres:create", "db")
    paas.run("redis:create", "kv")
    paas.run("postgres:link", "db", app)
    paas.run("redis:link", "kv", app)
    write(paas, app)
    write(paas, app)
    assert counts(paas, app) == {"rows": 2, "keys": 2}

    # copy: the parent's rows at its creation, in a database of its own, as a role of its own.
    paas.run("settings:set", app, "review-apps-db", "copy")
    git(checkout, "checkout", "-q", "-b", "copied")
    commit(checkout, "copied")
    pushed = paas.push(checkout, "copied").stderr
    review, host = f"{app}--copied", f"copied.{app}.paas.test"
    assert f"{review} has a database of its own in postgres service db: db_copied (a copy of {app}'s data)" in pushed
    assert f"{review} has redis service kv's database 1 of its own" in pushed, pushed
    assert counts(paas, "", host) == {"rows": 2, "keys": 0}
    paas.get("", "/write", method="POST", body="", host=host)
    assert counts(paas, "", host) == {"rows": 3, "keys": 1}
    assert counts(paas, app) == {"rows": 2, "keys": 2}  # its writes never reach the parent
    url = database_url(paas, review)
    assert url.path == "/db_copied" and url.username == f"app_{review}"
    assert database_url(paas, app).path == "/db"
    info = json.loads(paas.run("postgres:info", "db", "--show-secrets", "--json").stdout)
    assert info["urls"][review] == paas.run("config:get", review, "DATABASE_URL").stdout.strip()
    # Its own credentials do not open the parent's database.
    refused(sql(paas, review, "SELECT count(*) FROM items", url=with_user(url, url.username or "",
                                                                          urllib.parse.unquote(url.password or ""),
                                                                          database="db"))[0], DENIED)
    parent_url = database_url(paas, app)
    assert urllib.parse.unquote(parent_url.password or "") not in paas.run("run", review, "--", "env").stdout

    # empty, pushed by a deployer: its release command runs against an empty database of its own, and it gets
    # its own URL, nothing of the parent's (no secret of it, no Redis: one password for all).
    add_key(paas, sshd, "ci", role="deployer")
    paas.run("ssh-keys:grant", "ci", app)
    git(checkout, "remote", "add", "ssh", sshd.url(app))
    paas.run("settings:set", app, "review-apps-db", "empty")
    git(checkout, "checkout", "-q", "-b", "fresh", "master")
    (checkout / "Procfile").write_text(
        "web: node server.js\n"
        "release: node sql.js \"CREATE TABLE migrated AS SELECT count(*) AS tables FROM pg_tables "
        "WHERE schemaname = 'public'\"\n")
    commit(checkout, "a release command")
    pushed = subprocess.run(["git", "push", "ssh", "fresh"], cwd=checkout, env=sshd.git_env(paas.env, "ci"),
                            capture_output=True, text=True, timeout=600, check=True).stderr
    fresh = f"{app}--fresh"
    assert f"{fresh} has a database of its own in postgres service db: db_fresh (empty)" in pushed, pushed
    assert ok(sql(paas, fresh, "SELECT tables FROM migrated")[0]) == [{"tables": "0"}]
    assert ok(sql(paas, app, "SELECT to_regclass('migrated') AS t")[0]) == [{"t": None}]
    assert database_url(paas, fresh).path == "/db_fresh"
    env = paas.run("run", fresh, "--", "env").stdout
    assert f"DATABASE_URL=postgres://app_{fresh}:" in env and "REDIS_URL" not in env, env
    assert urllib.parse.unquote(parent_url.password or "") not in env

    databases = superuser_sql(paas, "db", "SELECT datname FROM pg_database ORDER BY 1").split()
    assert {"db", "db_copied", "db_fresh"} <= set(databases)
    # Both go with their review app: a deleted branch; a branch gone behind minipaas' back, then gc.
    git(checkout, "checkout", "-q", "master")
    paas.push(checkout, ":copied")
    subprocess.run(["git", "--git-dir", str(paas.home / "repos" / f"{app}.git"), "update-ref", "-d",
                    "refs/heads/fresh"], check=True)
    paas.run("gc")
    databases = superuser_sql(paas, "db", "SELECT datname FROM pg_database ORDER BY 1").split()
    assert "db" in databases and "db_copied" not in databases and "db_fresh" not in databases, databases
    roles = superuser_sql(paas, "db", "SELECT rolname FROM pg_roles WHERE rolname LIKE 'app_%' ORDER BY 1").split()
    assert roles == [f"app_{app}"], roles
    assert counts(paas, app) == {"rows": 2, "keys": 2}
    assert json.loads(paas.run("redis:info", "kv", "--json").stdout)["links"] == [app]
