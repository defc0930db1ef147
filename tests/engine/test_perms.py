"""File modes under MINIPAAS_HOME with apps deployed (perms.py): another local account reads nothing while
nginx still serves, files written later keep the modes, `init` repairs an older install (the rest:
tests/unit/test_perms.py)."""

from __future__ import annotations

import grp
import json
import os
import pwd
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from minipaas.state import perms
from tests.helpers.host import APPS, EXAMPLE, Paas, commit
from tests.helpers.tls import enable_https, https_get

# Run as another account: tries each (operation, path) and prints what happened, by errno name.
WORKERS = "www-data"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


PROBE = r"""
import errno, json, os, socket, sys
results = {}
for op, path in json.loads(sys.argv[1]):
    try:
        if op == "read":
            with open(path, "rb") as handle:
                handle.read(1)
        elif op == "list":
            os.listdir(path)
        elif op == "connect":
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(5)
                sock.connect(path)
        results[f"{op} {path}"] = "ok"
    except OSError as exc:
        results[f"{op} {path}"] = errno.errorcode.get(exc.errno, str(exc.errno))
print(json.dumps(results))
"""



def probe(user: str, attempts: list[tuple[str, Path]]) -> dict[str, str]:
    """What `user` gets for each attempt: "ok" or an errno name (EACCES is permission denied)."""
    result = subprocess.run(["runuser", "-u", user, "--", "/usr/bin/python3", "-I", "-c", PROBE,
                             json.dumps([(op, str(path)) for op, path in attempts])],
                            capture_output=True, text=True, check=True, cwd="/", timeout=60)
    return json.loads(result.stdout)



def violations(home: Path) -> list[str]:
    """Every path under the home whose mode or owner is not what perms.POLICY says."""
    workers_gid = pwd.getpwnam(WORKERS).pw_gid
    bad = []
    for folder, dirs, files in os.walk(home):
        entries = [Path(folder)] if Path(folder) == home else []
        for path in [*entries, *(Path(folder, name) for name in (*dirs, *files))]:
            info = path.lstat()
            if not (stat.S_ISDIR(info.st_mode) or stat.S_ISREG(info.st_mode)):
                continue
            relative = "" if path == home else path.relative_to(home).as_posix()
            now = stat.S_IMODE(info.st_mode)
            wanted = perms.target_mode(relative, now, is_folder=stat.S_ISDIR(info.st_mode))
            if wanted is not None and wanted != now:
                bad.append(f"{relative or '.'}: {now:04o}, policy {wanted:04o}")
            rule = perms.rule_for(relative)
            if rule is not None:
                owner = (0, workers_gid if rule.workers_group else 0)
                if (info.st_uid, info.st_gid) != owner:
                    bad.append(f"{relative or '.'}: owned {info.st_uid}:{info.st_gid}, policy {owner[0]}:{owner[1]}")
    return bad



def front_workers(paas: Paas) -> set[str]:
    """The accounts the front nginx's worker processes run as."""
    master = int((paas.home / "nginx" / "run" / "front.pid").read_text())
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return {pwd.getpwuid(Path(f"/proc/{pid}").stat().st_uid).pw_name for pid in children}



@pytest.fixture
def attacker(local_account: str) -> str:
    return local_account



@pytest.fixture
def umask_022() -> Iterator[None]:
    """Pushes and commands started with root's usual umask: minipaas must not depend on the caller's."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)



def test_another_local_account_reads_nothing_while_nginx_still_serves(paas: Paas, attacker: str,
                                                                      tmp_path: Path) -> None:
    enable_https(paas)
    paas.env["MINIPAAS_AUTHORIZED_KEYS"] = str(tmp_path / "authorized_keys")
    app, _ = paas.deploy(EXAMPLE)
    paas.run("config:set", app, "SECRET_TOKEN=s3cr3t-value")
    paas.run("certs:generate", app)
    site, _ = paas.deploy(APPS / "static-site")
    key = tmp_path / "alice"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "alice", "-f", str(key)], check=True)
    paas.run("ssh-keys:add", "alice", input=key.with_suffix(".pub").read_text())

    home = paas.home
    assert paas.run("config:get", app, "SECRET_TOKEN").stdout.strip() == "s3cr3t-value"  # there to steal
    secrets = [
        ("read", home / "minipaas.db"), ("read", home / "minipaas.db-wal"), ("read", home / "minipaas.db-shm"),
        ("read", home / "settings.toml"), ("list", home), ("list", home / "repos"),
        ("read", home / "repos" / f"{app}.git" / "config"), ("list", home / "logs"),
        ("read", home / "logs" / "access.log"), ("read", home / "certs" / app / "privkey.pem"),
        ("read", home / "nginx" / "sites" / f"{app}.conf"), ("read", home / "locks" / "proxy.lock"),
    ]
    # Where apps' traffic goes is root's alone: nobody else may change a route (the control socket).
    secrets.append(("connect", home / "nginx" / "control" / "control.sock"))
    served = [("list", home / "static"), ("read", home / "static" / site / "current" / "index.html")]

    # A control, so that "denied" below means the modes and not a broken probe.
    open_file = Path(tempfile.mkdtemp(dir="/var/tmp")) / "open.txt"
    try:
        open_file.parent.chmod(0o755)
        open_file.write_text("anyone\n")
        open_file.chmod(0o644)
        control = probe(attacker, [("read", open_file)])
    finally:
        subprocess.run(["rm", "-rf", str(open_file.parent)], check=True)
    assert control == {f"read {open_file}": "ok"}

    seen = probe(attacker, secrets + served)
    assert seen == {f"{op} {path}": "EACCES" for op, path in secrets + served}

    # nginx's workers' account reaches what it serves, and nothing else.
    seen = probe(WORKERS, secrets + served)
    assert {k: v for k, v in seen.items() if v != "EACCES"} == {
        f"read {home / 'static' / site / 'current' / 'index.html'}": "ok",
    }

    # Meanwhile both apps answer through nginx, whose workers are www-data, not root.
    assert front_workers(paas) == {WORKERS}
    status, _, body = https_get(paas, app, str(home / "certs" / app / "fullchain.pem"))
    assert status == 200 and body
    response = paas.get(site)
    assert response.status == 200 and "Static home" in response.body



def loosen(home: Path) -> None:
    """The layout before this policy: folders 0755, files 0644 (0755 if executable), all root:root
    (nginx's own left alone)."""
    for folder, dirs, files in os.walk(home):
        if Path(folder) == home / "nginx" / "tmp":
            dirs[:] = []
            continue
        os.chown(folder, 0, 0)
        os.chmod(folder, 0o755)
        for name in files:
            path = Path(folder, name)
            if path.is_file() and not path.is_symlink():
                os.chown(path, 0, 0)
                os.chmod(path, 0o755 if mode(path) & 0o100 else 0o644)



def set_worker_user(paas: Paas, user: str) -> None:
    """Put `user` in our masters' main configurations and reload them, as an old private install ran."""
    for name in ("front",):
        conf = paas.home / "nginx" / f"{name}.conf"
        text = conf.read_text()
        conf.write_text(text.replace("user www-data www-data;", f"user {user};"))
        os.kill(int((paas.home / "nginx" / "run" / f"{name}.pid").read_text()), signal.SIGHUP)
    deadline = time.monotonic() + 10
    while front_workers(paas) != {user}:
        assert time.monotonic() < deadline, f"the front's workers did not become {user}: {front_workers(paas)}"
        time.sleep(0.05)



def test_init_repairs_an_install_with_the_old_loose_modes(paas: Paas) -> None:
    site, checkout = paas.deploy(APPS / "static-site")
    enable_https(paas)
    paas.run("certs:generate", site)
    set_worker_user(paas, "root")  # private mode used to run its workers as root
    loosen(paas.home)
    assert mode(paas.home / "minipaas.db") == 0o644 and mode(paas.home) == 0o755
    assert len(violations(paas.home)) > 20

    out = paas.run("init").stdout
    assert "www-data:www-data" in out and "warning" not in out
    assert violations(paas.home) == []
    home = paas.home
    assert (mode(home), home.stat().st_gid) == (0o710, grp.getgrnam(WORKERS).gr_gid)
    assert mode(home / "minipaas.db") == 0o600 and mode(home / "settings.toml") == 0o600
    assert mode(home / "certs" / site / "privkey.pem") == 0o600
    assert mode(home / "repos" / f"{site}.git" / "hooks" / "pre-receive") == 0o700
    assert mode(home / "static" / site / "1" / "index.html") == 0o644
    assert front_workers(paas) == {WORKERS}  # the changed main configuration was reloaded
    fullchain = str(home / "certs" / site / "fullchain.pem")
    status, _, body = https_get(paas, site, fullchain)
    assert status == 200 and b"Static home" in body

    before = {p: (mode(p), p.lstat().st_uid, p.lstat().st_gid) for p in home.rglob("*") if not p.is_symlink()}
    paas.run("init")  # idempotent
    after = {p: (mode(p), p.lstat().st_uid, p.lstat().st_gid) for p in home.rglob("*") if not p.is_symlink()}
    assert {p: v for p, v in after.items() if before.get(p) != v} == {}

    # The repaired install deploys: a push to the repaired repo, served from a new release folder.
    (checkout / "index.html").write_text((checkout / "index.html").read_text().replace("Static home", "Home v2"))
    commit(checkout, "v2")
    paas.push(checkout)
    status, _, body = https_get(paas, site, fullchain)
    assert status == 200 and b"Home v2" in body
    assert violations(home) == []



def test_files_written_later_keep_the_modes(paas: Paas, tmp_path: Path, umask_022: None) -> None:
    enable_https(paas)
    paas.env["MINIPAAS_AUTHORIZED_KEYS"] = str(tmp_path / "authorized_keys")
    assert violations(paas.home) == []
    app, app_checkout = paas.deploy(EXAMPLE)
    paas.run("config:set", app, "SECRET_TOKEN=later")
    (app_checkout / "later.txt").write_text("a new commit\n")
    commit(app_checkout, "later")
    paas.push(app_checkout)
    site, checkout = paas.deploy(APPS / "static-site")
    (checkout / "index.html").write_text((checkout / "index.html").read_text().replace("Static home", "Home v2"))
    commit(checkout, "v2")
    paas.push(checkout)
    docs, _ = paas.deploy(APPS / "markdown-docs")
    paas.run("certs:generate", site)
    key = tmp_path / "bob"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    paas.run("ssh-keys:add", "bob", input=key.with_suffix(".pub").read_text())

    home = paas.home
    assert violations(home) == []
    assert mode(home / "minipaas.db") == 0o600
    assert mode(home / "logs" / "retire.log") == 0o600  # a log file made after init
    assert mode(home / "certs" / site / "fullchain.pem") == 0o600
    objects = [p for p in (home / "repos" / f"{app}.git" / "objects").rglob("*") if p.is_file()]
    assert objects and all(not mode(p) & 0o077 for p in objects)  # pushed with umask 022
    served = [p for p in (home / "static" / docs / "current").resolve().rglob("*")]
    assert any(p.suffix == ".gz" for p in served) and any(p.name == "search-index.json" for p in served)
    assert {mode(p) for p in served} == {0o644, 0o755}
    assert "Home v2" in https_get(paas, site, str(home / "certs" / site / "fullchain.pem"))[2].decode()
    assert paas.get(docs).status == 200 and paas.get(docs, "/assets/docsite.css").status == 200

