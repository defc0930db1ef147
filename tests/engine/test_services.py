"""Postgres and Redis services against the real engine: images built from Debian's packages (once per host),
an app that writes rows and keys through real pushes, links, backups, import/export, isolation."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.helpers.addons import (
    SEED,
    _service_images,  # noqa: F401 (the module fixture)
    checksum,
    count,
    one_line_error,
    sql,
    wait_for,
    write,
)
from tests.helpers.host import APPS, Paas, commit, docker
from tests.helpers.sshd import Sshd

SERVICES_APP = APPS / "services-app"
def test_rows_and_keys_survive_redeploy_rollback_restart_and_unlink_removes_the_url(paas: Paas) -> None:
    app, checkout = paas.deploy(SERVICES_APP, prefix="svc")
    paas.run("postgres:create", "db")
    paas.run("redis:create", "cache")
    linked = paas.run("postgres:link", "db", app)
    assert "DATABASE_URL" in linked.stdout
    paas.run("redis:link", "cache", app)
    assert json.loads(paas.get(app, "/env").body) == {"database": True, "redis": True}
    for _ in range(3):
        write(paas, app)
    assert count(paas, app) == {"rows": 3, "keys": 3}
    # The URL names the service by its alias on the app's network and the app's own role (not the superuser);
    # the password never shows without asking.
    url = paas.run("config:get", app, "DATABASE_URL").stdout.strip()
    assert url.startswith(f"postgres://app_{app}:") and url.endswith("@postgres-db:5432/db"), url
    password = url.split(":")[2].split("@")[0]
    assert password not in paas.run("postgres:info", "db").stdout
    assert password in paas.run("postgres:info", "db", "--show-secrets").stdout

    (checkout / "NOTE").write_text("redeploy\n")
    commit(checkout, "redeploy")
    paas.push(checkout)
    assert count(paas, app) == {"rows": 3, "keys": 3}
    write(paas, app)
    paas.run("releases:rollback", app)
    assert count(paas, app) == {"rows": 4, "keys": 4}
    paas.run("ps:restart", app)
    write(paas, app)
    assert count(paas, app) == {"rows": 5, "keys": 5}

    # The service's own container made again (new limits): the data is in its volume.
    paas.run("resource:limit", "postgres:db", "--memory", "300m")
    limit = docker("inspect", "--format", "{{.HostConfig.Memory}}", paas.container("svc.postgres.db")).strip()
    assert limit == str(300 * 1024 * 1024)
    assert count(paas, app) == {"rows": 5, "keys": 5}

    # An import into the database the app writes to, while it writes: one line, nothing changed; --force does it.
    dump = subprocess.run([*paas.command(), "postgres:export", "db"], env=paas.env, capture_output=True,
                          check=True).stdout
    write(paas, app)
    refused = subprocess.run([*paas.command(), "postgres:import", "db"], env=paas.env, input=dump,
                             capture_output=True)
    write(paas, app)
    errors = [line for line in refused.stderr.decode().splitlines() if line.strip()]
    assert refused.returncode != 0 and len(errors) == 1, errors
    assert errors[0] == (f"error: postgres service db is linked to {app}: an import replaces what they write "
                         "meanwhile; unlink them first, or add --force"), errors
    assert count(paas, app)["rows"] == 7
    subprocess.run([*paas.command(), "postgres:import", "db", "--force"], env=paas.env, input=dump, check=True,
                   capture_output=True)
    assert count(paas, app)["rows"] == 5  # the dump's rows, and the app goes on writing
    write(paas, app)
    assert count(paas, app)["rows"] == 6

    unlinked = paas.run("postgres:unlink", "db", app)
    assert "no longer has DATABASE_URL" in unlinked.stdout
    assert "DATABASE_URL" not in paas.run("config", app, "--json").stdout
    assert json.loads(paas.get(app, "/env").body) == {"database": False, "redis": True}
    assert count(paas, app) == {"keys": 8}
    networks = docker("inspect", "--format", "{{json .NetworkSettings.Networks}}", paas.container("svc.postgres.db"))
    assert f"-{app}" not in networks  # off the app's network once unlinked
    assert sql(paas, "db", "SELECT count(*) FROM items;").split()[2] == "6"


def test_review_apps_reach_their_parents_service(paas: Paas) -> None:
    app, checkout = paas.deploy(SERVICES_APP, prefix="rev")
    paas.run("postgres:create", "shared")
    paas.run("postgres:link", "shared", app)
    paas.run("settings:set", app, "review-apps-db", "shared")  # the parent's URL (the default: one of its own)
    write(paas, app)
    subprocess.run(["git", "checkout", "-q", "-b", "feature"], cwd=checkout, check=True)
    paas.push(checkout, "feature")
    review = f"{app}--feature"
    response = paas.get(review, "/count", host=f"feature.{app}.paas.test")
    assert response.status == 200 and json.loads(response.body) == {"rows": 1}, response.body


def test_export_destroy_create_import_round_trips_and_bad_dumps_change_nothing(paas: Paas, tmp_path: Path) -> None:
    paas.run("postgres:create", "orders")
    sql(paas, "orders", SEED)
    before = checksum(paas, "orders")
    assert before.startswith("1000:")
    dump = tmp_path / "orders.dump"
    with open(dump, "wb") as out:
        subprocess.run([*paas.command(), "postgres:export", "orders"], env=paas.env, stdout=out, check=True)
    assert dump.read_bytes()[:5] == b"PGDMP"  # the custom format

    paas.run("postgres:destroy", "orders")
    assert "orders" not in paas.run("postgres:list").stdout
    paas.run("postgres:create", "orders")
    assert "does not exist" in subprocess.run([*paas.command(), "postgres:connect", "orders"], env=paas.env,
                                              input="SELECT count(*) FROM t;", capture_output=True, text=True).stderr
    with open(dump, "rb") as source:
        subprocess.run([*paas.command(), "postgres:import", "orders"], env=paas.env, stdin=source, check=True,
                       capture_output=True)
    assert checksum(paas, "orders") == before

    sql(paas, "orders", "DELETE FROM t WHERE id > 990;")
    changed = checksum(paas, "orders")
    assert changed.startswith("990:")
    data = dump.read_bytes()
    for bad in (data[: len(data) // 2], data[:200], b"not a dump at all\n" * 10):
        result = subprocess.run([*paas.command(), "postgres:import", "orders"], env=paas.env, input=bad,
                                capture_output=True)
        result = subprocess.CompletedProcess(result.args, result.returncode, result.stdout.decode(),
                                             result.stderr.decode())
        assert "the database was not changed" in one_line_error(result)
        assert checksum(paas, "orders") == changed

    # Kept backups: checksummed, listed, restored; the schedule takes one and retention removes the oldest.
    paas.run("postgres:backup", "orders")
    backups = paas.home / "services" / "postgres" / "orders" / "backups"
    kept = sorted(p.name for p in backups.iterdir() if p.suffix == ".dump")
    assert len(kept) == 1 and (backups / f"{kept[0]}.sha256").read_text().startswith(
        subprocess.run(["sha256sum", str(backups / kept[0])], capture_output=True, text=True).stdout.split()[0])
    assert oct(backups.stat().st_mode & 0o777) == "0o700" and oct((backups / kept[0]).stat().st_mode & 0o777) == "0o600"
    sql(paas, "orders", "DELETE FROM t;")
    paas.run("postgres:restore", "orders", kept[0])
    assert checksum(paas, "orders") == changed
    for day in ("20200101T000000Z", "20200102T000000Z", "20200103T000000Z"):
        for suffix in ("", ".sha256"):
            (backups / f"{day}.dump{suffix}").write_bytes((backups / f"{kept[0]}{suffix}").read_bytes())
    # A backup of a second ago: not due yet.
    paas.run("postgres:backup-schedule", "orders", "daily")
    paas.run("postgres:backup-retention", "orders", "2")
    assert "Backed up" not in paas.run("services:backup-due").stdout
    (backups / kept[0]).unlink()
    (backups / f"{kept[0]}.sha256").unlink()
    due = paas.run("services:backup-due")
    assert "Backed up postgres service orders" in due.stdout
    left = sorted(p.name for p in backups.iterdir() if p.suffix == ".dump")
    assert len(left) == 2 and left[0] == "20200103T000000Z.dump" and not left[1].startswith("2020"), left

    # Redis: an RDB snapshot kept the same way.
    paas.run("redis:create", "kv")
    paas.run("redis:connect", "kv", input="SET greeting hello\n")
    paas.run("redis:backup", "kv")
    rdb = list((paas.home / "services" / "redis" / "kv" / "backups").glob("*.rdb"))
    assert len(rdb) == 1 and rdb[0].read_bytes()[:5] == b"REDIS" and b"greeting" in rdb[0].read_bytes()


def test_hostile_names_and_arguments_get_one_line_and_change_nothing(paas: Paas) -> None:
    app = paas.new_app("hostile")
    paas.run("postgres:create", "good")
    before = (paas.run("postgres:list").stdout, sorted(paas.containers()))
    for args in (("postgres:create", "x;y"), ("postgres:create", "../x"), ("postgres:create", "X"),
                 ("postgres:create", "a--b"), ("redis:create", "-n"), ("postgres:create", "good"),
                 ("postgres:create", "v", "--version", "9"), ("postgres:link", "good", "missing-app"),
                 ("postgres:link", "missing", app), ("postgres:link", "good", "x;rm -rf /"),
                 ("postgres:unlink", "good", app), ("postgres:info", "nope"), ("postgres:restore", "good", "../../x"),
                 ("postgres:backup-retention", "good", "0"), ("postgres:destroy", "x;y")):
        one_line_error(paas.run(*args, check=False))
    assert (paas.run("postgres:list").stdout, sorted(paas.containers())) == before
    assert "DATABASE_URL" not in paas.run("config", app, "--json").stdout

    paas.run("postgres:link", "good", app)  # no release yet: stored for its first deploy
    assert "is linked to" in one_line_error(paas.run("postgres:destroy", "good", check=False))
    assert "already linked" in one_line_error(paas.run("postgres:link", "good", app, check=False))
    paas.run("postgres:create", "other")
    assert "already has DATABASE_URL" in one_line_error(paas.run("postgres:link", "other", app, check=False))
    paas.run("postgres:destroy", "other")
    forced = paas.run("postgres:destroy", "good", "--force")
    assert "Destroyed" in forced.stdout
    assert "DATABASE_URL" not in paas.run("config", app, "--json").stdout
    assert not docker("volume", "ls", "-q", "--filter", f"label=minipaas={paas.home}").split()


def tcp_from(paas: Paas, container: str, host: str, port: int) -> bool:
    """Whether `container` can open a TCP connection to host:port (node in the app's own container)."""
    script = (f"const s=require('net').connect({port},{json.dumps(host)});s.setTimeout(3000);"
              "s.on('connect',()=>{console.log('open');process.exit(0)});"
              "s.on('timeout',()=>{console.log('timeout');process.exit(1)});"
              "s.on('error',e=>{console.log(e.code);process.exit(1)});")
    result = subprocess.run(["docker", "exec", container, "node", "-e", script], capture_output=True, text=True,
                            timeout=30)
    return result.returncode == 0 and "open" in result.stdout


def test_an_app_reaches_its_own_service_and_nothing_of_another_app(paas: Paas) -> None:
    first, _ = paas.deploy(SERVICES_APP, prefix="iso-a")
    second, _ = paas.deploy(SERVICES_APP, prefix="iso-b")
    paas.run("postgres:create", "a-db")
    paas.run("postgres:create", "b-db")
    paas.run("redis:create", "b-cache")
    paas.run("postgres:link", "a-db", first)
    paas.run("postgres:link", "b-db", second)
    paas.run("redis:link", "b-cache", second)
    web_a = paas.container(f"{first}.web.1")
    web_b = paas.container(f"{second}.web.1")
    wait_for("the new containers of both apps", lambda: {web_a, web_b} <= set(paas.container_names()))

    def address(container: str, network: str) -> str:
        return docker("inspect", "--format", f'{{{{(index .NetworkSettings.Networks "{network}").IPAddress}}}}',
                      container).strip()

    instance = paas.instance
    assert tcp_from(paas, web_a, "postgres-a-db", 5432)  # its own, by the alias its URL names
    write(paas, first)
    assert count(paas, first) == {"rows": 1}
    # Another app's container, and services linked to another app: by address (and not even by name).
    assert tcp_from(paas, web_b, address(web_b, f"{instance}-{second}"), 5000)  # B answers on its own network
    assert not tcp_from(paas, web_a, address(web_b, f"{instance}-{second}"), 5000)
    b_db = paas.container("svc.postgres.b-db")
    assert not tcp_from(paas, web_a, address(b_db, f"{instance}-{second}"), 5432)
    assert not tcp_from(paas, web_a, address(b_db, f"{instance}.postgres.b-db"), 5432)
    assert not tcp_from(paas, web_a, "postgres-b-db", 5432)
    assert not tcp_from(paas, web_a, address(paas.container("svc.redis.b-cache"), f"{instance}-{second}"), 6379)
    # The service runs as its package's user, with no capabilities, limited like an app.
    user = docker("exec", b_db, "id", "-un").strip()
    # ... with a uid of its own, outside the ranges a host account has
    assert docker("exec", b_db, "id", "-u").strip() == "64320"
    assert docker("exec", paas.container("svc.redis.b-cache"), "id", "-u").strip() == "63790"
    caps = docker("inspect", "--format", "{{.HostConfig.CapDrop}} {{.HostConfig.Memory}} {{.HostConfig.PidsLimit}}",
                  b_db).strip()
    assert user == "postgres" and caps == f"[ALL] {256 * 1024 * 1024} 256", (user, caps)
    status = docker("exec", b_db, "grep", "^CapEff", "/proc/1/status").split()[1]
    assert int(status, 16) == 0
    # The server is PID 1, and no process of the container keeps the password in its environment.
    assert docker("exec", b_db, "cat", "/proc/1/comm").strip() == "postgres"
    # (the server's processes only: a `docker exec` gets the container's environment again)
    script = ('for p in /proc/[0-9]*; do if [ "$(cat $p/comm 2>/dev/null)" = postgres ]; then '
              'tr "\\0" "\\n" < $p/environ; fi; done')
    environments = docker("exec", b_db, "sh", "-c", script)
    assert "PGDATA" not in environments and "LANG=C.UTF-8" in environments, environments
    assert "POSTGRES_PASSWORD" not in environments


def test_a_removed_service_container_comes_back_with_its_data_on_ps_restore(paas: Paas) -> None:
    paas.run("postgres:create", "keep")
    sql(paas, "keep", SEED)
    before = checksum(paas, "keep")
    docker("rm", "-f", paas.container("svc.postgres.keep"))
    restored = paas.run("ps:restore")
    assert "Starting postgres service keep" in restored.stdout
    assert checksum(paas, "keep") == before


def test_export_and_import_stream_through_ssh(paas: Paas, sshd: Sshd, tmp_path: Path) -> None:
    """`ssh paas@host postgres:export db > db.dump` and back: bytes through the forced command, both ways;
    a deployer may not."""
    paas.run("ssh-keys:add", "alice", "--role", "admin", input=sshd.key("alice").with_suffix(".pub").read_text())
    paas.run("ssh-keys:add", "ci", "--role", "deployer", input=sshd.key("ci").with_suffix(".pub").read_text())
    paas.run("postgres:create", "shop")
    sql(paas, "shop", SEED)
    before = checksum(paas, "shop")
    exported = subprocess.run([*sshd.ssh_args("alice"), "postgres:export", "shop"], capture_output=True, timeout=300)
    assert exported.returncode == 0 and exported.stdout[:5] == b"PGDMP", exported.stderr
    sql(paas, "shop", "DELETE FROM t WHERE id > 500;")
    assert checksum(paas, "shop").startswith("500:")
    imported = subprocess.run([*sshd.ssh_args("alice"), "postgres:import", "shop"], input=exported.stdout,
                              capture_output=True, timeout=300)
    assert imported.returncode == 0, imported.stderr
    assert checksum(paas, "shop") == before
    refused = sshd.ssh("ci", "postgres:export", "shop")
    assert refused.returncode != 0 and "may not run postgres:export" in refused.stderr and not refused.stdout
