"""File modes under MINIPAAS_HOME (perms.py): another local account reads nothing, nginx's workers
reach only what they serve, `init` repairs an older install, and files written later keep the modes."""

from __future__ import annotations

import json
import os
import pwd
import stat
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import pytest

from minipaas.adapters import nginx
from minipaas.errors import InvalidInput
from minipaas.state import perms
from minipaas.state.settings import load
from tests.helpers.host import ROOT

# -- the policy table (no Docker, no nginx) ----------------------------------------------------

WORKERS = "www-data"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


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


# -- an old install, repaired by init ----------------------------------------------------------


# -- what is written later keeps the modes -----------------------------------------------------

