"""File modes under MINIPAAS_HOME (perms.py): another local account reads nothing, nginx's workers
reach only what they serve, `init` repairs an older install, and files written later keep the modes."""

from __future__ import annotations

import grp
import json
import os
import pwd
import signal
import stat
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from minipaas.adapters import nginx
from minipaas.errors import InvalidInput
from minipaas.state import perms
from minipaas.state.settings import load
from tests.engine.test_tls import enable_https, https_get
from tests.helpers.host import APPS, EXAMPLE, ROOT, Paas, commit

WORKERS = "www-data"

# Run as another account: tries each (operation, path) and prints what happened, by errno name.
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


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


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


# -- the policy table (no Docker, no nginx) ----------------------------------------------------

def test_the_home_is_a_gate_and_anything_others_may_read_sits_behind_one() -> None:
    home = perms.rule_for("")
    assert home is not None and home.mode == perms.GATE_DIR and home.workers_group
    for rule in perms.POLICY:
        if rule.mode & 0o077 and not rule.workers_group:
            # readable beyond root: only a served folder, and only inside a gate of the workers' group
            parent = perms.enclosing_rule(rule.path)
            assert rule.below is perms.Below.SERVED, rule
            assert parent.workers_group and parent.mode == perms.GATE_DIR, rule
        if rule.workers_group:
            assert rule.mode == perms.GATE_DIR, rule  # pass through only: neither list nor read
        assert not rule.mode & 0o007 or rule.below is perms.Below.SERVED, rule


@pytest.mark.parametrize("target", ["static", "nginx/tmp", "acme/webroot"])
def test_what_nginx_workers_must_reach_has_a_path_of_gates(target: str) -> None:
    parts = target.split("/")
    for depth in range(len(parts) + 1):
        rule = perms.rule_for("/".join(parts[:depth]))
        assert rule is not None and rule.folder
        assert (rule.workers_group and rule.mode & 0o010) or rule.mode & 0o001, rule


@pytest.mark.parametrize(("relative", "now", "folder", "wanted"), [
    ("", 0o755, True, 0o710),
    ("minipaas.db", 0o644, False, 0o600),
    ("minipaas.db-wal", 0o644, False, 0o600),
    ("settings.toml", 0o644, False, 0o600),
    ("repos", 0o755, True, 0o700),
    ("repos/app.git/hooks/pre-receive", 0o755, False, 0o700),  # stays executable
    ("repos/app.git/objects/ab/cdef", 0o444, False, 0o400),
    ("logs/access.log", 0o644, False, 0o600),
    ("certs/app/privkey.pem", 0o600, False, 0o600),
    ("certs/app/fullchain.pem", 0o644, False, 0o600),
    ("nginx/sites/app.conf", 0o644, False, 0o600),
    ("acme/account.key", 0o644, False, 0o600),
    ("stray-file", 0o666, False, 0o600),
    ("static", 0o755, True, 0o710),
    ("static/app", 0o700, True, 0o755),
    ("static/app/3/index.html", 0o600, False, 0o644),
    ("static/app/3/assets", 0o700, True, 0o755),
    ("acme/webroot/.well-known/acme-challenge/token", 0o600, False, 0o644),
    ("nginx/control/control.sock", 0o666, False, None),  # nginx's: its root-only folder is the gate
    ("nginx/run/front.pid", 0o644, False, None),
    ("nginx/tmp/body", 0o700, True, None),
    ("cache/debian-rootfs.tar", 0o644, False, None),
])
def test_target_mode(relative: str, now: int, folder: bool, wanted: int | None) -> None:
    assert perms.target_mode(relative, now, is_folder=folder) == wanted


def test_the_workers_account_is_a_setting_checked_at_load(tmp_path: Path) -> None:
    assert load({"MINIPAAS_HOME": str(tmp_path)}).nginx_user == WORKERS  # root's default
    assert load({"MINIPAAS_HOME": str(tmp_path), "MINIPAAS_NGINX_USER": "nobody"}).nginx_user == "nobody"
    assert 'nginx_user = "www-data"' in load({"MINIPAAS_HOME": str(tmp_path)}).to_toml()
    # What `init` writes reads back the same, whatever the values hold (quotes, backslashes, control characters).
    odd = load({"MINIPAAS_HOME": str(tmp_path / 'a"b\\c\x01d'), "MINIPAAS_BUILD_CA": ""})
    assert tomllib.loads(odd.to_toml())["home"] == str(tmp_path / 'a"b\\c\x01d')
    with pytest.raises(InvalidInput, match="MINIPAAS_NGINX_USER names no account"):
        load({"MINIPAAS_HOME": str(tmp_path), "MINIPAAS_NGINX_USER": "no-such-account-x"})
    result = subprocess.run([sys.executable, "-m", "minipaas", "apps:list"], capture_output=True, text=True,
                            env={**os.environ, "MINIPAAS_HOME": str(tmp_path / "h"),
                                 "MINIPAAS_NGINX_USER": "no-such-account-x"})
    assert result.returncode == 1
    assert result.stderr == "error: MINIPAAS_NGINX_USER names no account on this host: 'no-such-account-x'\n"


def test_a_home_the_workers_cannot_reach_is_named(tmp_path: Path) -> None:
    # pytest's own temp folders are 0700: www-data stops at the first of them
    settings = load({"MINIPAAS_HOME": str(tmp_path / "home")})
    blocked = perms.workers_blocked_at(settings)
    assert blocked is not None and tmp_path.is_relative_to(blocked) and not mode(blocked) & 0o001
    open_top = Path(tempfile.mkdtemp(dir="/var/tmp"))
    try:
        open_top.chmod(0o711)
        assert perms.workers_blocked_at(load({"MINIPAAS_HOME": str(open_top / "home")})) is None
    finally:
        open_top.rmdir()


@pytest.mark.parametrize(("directive", "user"), [("user nobody nogroup;", "nobody"), ("", "nobody"),
                                                 ("user www-data;", "www-data")])
def test_the_host_nginx_workers_account_is_read_from_its_configuration(tmp_path: Path, directive: str,
                                                                        user: str) -> None:
    # what init compares with MINIPAAS_NGINX_USER in system mode (the host's nginx must pass the gates)
    conf = tmp_path / "nginx.conf"
    conf.write_text(f"{directive}\nerror_log {tmp_path}/error.log;\npid {tmp_path}/nginx.pid;\n"
                    "events {}\nhttp { server { listen 127.0.0.1:9; } }\n")
    assert nginx.system_user(conf) == user
    conf.write_text("this is not nginx\n")
    assert nginx.system_user(conf) is None


def test_without_root_modes_are_set_owners_left_alone_and_nothing_crashes() -> None:
    top = Path(tempfile.mkdtemp(dir="/var/tmp"))
    nobody = pwd.getpwnam("nobody")
    try:
        top.chmod(0o711)
        home = top / "home"
        (home / "logs").mkdir(parents=True)
        (home / "logs" / "root-owned.log").write_text("x")  # root's: nobody may not chmod it
        for path in (home, home / "logs"):
            os.chown(path, nobody.pw_uid, nobody.pw_gid)
            path.chmod(0o755)
        # Import as root (the interpreter lives under /root), then really become nobody.
        script = (
            "import json, os, sys\n"
            "from minipaas.state import perms, settings\n"
            f"os.setgroups([]); os.setgid({nobody.pw_gid}); os.setuid({nobody.pw_uid})\n"
            "perms.restrict_umask()\n"
            "s = settings.load({'MINIPAAS_HOME': sys.argv[1]})\n"
            "print(json.dumps([s.nginx_user, perms.secure_home(s, repair=True)]))\n"
        )
        result = subprocess.run([sys.executable, "-c", script, str(home)], capture_output=True, text=True,
                                env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True, timeout=60)
        user, problems = json.loads(result.stdout)
        assert user == ""  # the workers run as whoever runs minipaas
        assert problems == [f"{home}/logs/root-owned.log: cannot chmod: Operation not permitted"]
        assert (mode(home), home.stat().st_uid, home.stat().st_gid) == (0o710, nobody.pw_uid, nobody.pw_gid)
        assert mode(home / "logs") == 0o700 and mode(home / "repos") == 0o700
        assert (mode(home / "static"), home.joinpath("static").stat().st_gid) == (0o710, nobody.pw_gid)
    finally:
        subprocess.run(["rm", "-rf", str(top)], check=True)


# -- the attack, through the real entry points -------------------------------------------------

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


# -- an old install, repaired by init ----------------------------------------------------------

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


# -- what is written later keeps the modes -----------------------------------------------------

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
