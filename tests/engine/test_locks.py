"""Locks (issue 19, item 12) under real pushes: another local account can neither plant, symlink nor hold a lock
and pushes go on; the account that owns the ssh folder gets no root write through a symlink (the lock files'
rules without the engine: tests/unit/test_locks.py)."""

from __future__ import annotations

import json
import os
import pwd
import queue
import stat
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from minipaas.state import locks
from tests.helpers.host import APPS, Paas, commit
from tests.helpers.pushes import assert_built_with


@pytest.fixture
def stranger(local_account: str) -> str:
    return local_account



# Run as the other account: tries to plant, symlink and hold each path, says what happened (errno names), and
# then keeps holding whatever it got until it is killed.
ATTACK = r"""
import errno, fcntl, json, os, sys, time
paths, folder = json.loads(sys.argv[1]), sys.argv[2]
results, held = {}, []
def attempt(what, action):
    try:
        action()
        results[what] = "ok"
    except OSError as exc:
        results[what] = errno.errorcode.get(exc.errno, str(exc.errno))
def hold(path):
    fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o644)
    held.append(fd)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
for path in paths:
    attempt(f"create {path}", lambda: os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)))
    attempt(f"symlink {path}", lambda: os.symlink("/etc/passwd", path))
    attempt(f"hold {path}", lambda: hold(path))
attempt(f"mkdir {folder}", lambda: os.mkdir(folder, 0o777))
print(json.dumps(results), flush=True)
time.sleep(3600)
"""



OLD_BUILD_LOCK = Path("/run/lock/minipaas-buildkit.lock")  # where it was: everyone's folder



def test_another_account_can_neither_plant_nor_hold_a_lock_and_pushes_go_on(paas: Paas, stranger: str) -> None:
    paas.env["MINIPAAS_BUILDER"] = "buildkit"  # the host's build lock is BuildKit's
    app = paas.new_app("locked")
    checkout = paas.checkout(app, APPS / "dockerfile")
    paas.push(checkout)
    assert_built_with("buildkit", paas, app)
    host, own = locks.host_locks(), paas.home / "locks"
    for folder in (host, own):
        info = folder.lstat()
        assert stat.S_ISDIR(info.st_mode) and info.st_uid == 0 and stat.S_IMODE(info.st_mode) == 0o700, folder
    targets = [host / locks.HOST_BUILD_LOCK, own / f"{app}.lock", own / "nginx.proxy.lock", own / "nginx.routes.lock"]
    for target in targets:
        info = target.lstat()
        assert stat.S_ISREG(info.st_mode) and info.st_uid == 0 and stat.S_IMODE(info.st_mode) == 0o600, target
    planted = [host / "planted.lock", own / "planted.lock"]
    old_existed = OLD_BUILD_LOCK.exists()

    attack = subprocess.Popen(["runuser", "-u", stranger, "--", "/usr/bin/python3", "-I", "-c", ATTACK,
                               json.dumps([str(p) for p in [*targets, *planted, OLD_BUILD_LOCK]]), str(host)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/")
    try:
        assert attack.stdout is not None
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: lines.put(attack.stdout.readline()), daemon=True).start()
        results = json.loads(lines.get(timeout=60))
        for target in [*targets, *planted]:
            for action in ("create", "symlink", "hold"):
                assert results[f"{action} {target}"] == "EACCES", (action, target, results)
        assert results[f"mkdir {host}"] in ("EEXIST", "EACCES")
        # Whatever it holds (in the old world-writable folder, on a host where it could make that file first,
        # as long as it lives), the next push goes on: it waits at most for other pushes' builds.
        commit(checkout, "again")
        started = time.monotonic()
        paas.push(checkout)
        assert attack.poll() is None and time.monotonic() - started < 600
        assert_built_with("buildkit", paas, app)
        assert paas.get(app).status == 200
    finally:
        attack.kill()
        attack.wait(timeout=30)
        if not old_existed and OLD_BUILD_LOCK.exists() and OLD_BUILD_LOCK.lstat().st_uid != 0:
            OLD_BUILD_LOCK.unlink()  # the other account's, made in the old place during this test
    assert not any(os.path.lexists(p) for p in planted)
    for target in targets:
        assert target.lstat().st_uid == 0 and stat.S_IMODE(target.lstat().st_mode) == 0o600



def test_root_writes_nothing_through_the_ssh_accounts_symlinks(paas: Paas, stranger: str, tmp_path: Path) -> None:
    """The home of the ssh account and its .ssh are that account's own (sshd wants it so): what it plants there
    (the names an older minipaas used for its lock and temporary file, the file, the folder) is never followed."""
    top = Path(tempfile.mkdtemp(prefix="minipaas-sshhome-", dir="/var/tmp"))
    try:
        top.chmod(0o755)
        account = pwd.getpwnam(stranger)
        home = top / "home"
        home.mkdir(mode=0o755)
        os.chown(home, account.pw_uid, account.pw_gid)
        folder = home / ".ssh"
        victim = top / "victim"  # root's, outside the account's reach
        victim.write_text("root's own file\n")
        roots = top / "roots"  # a folder of root's, with a file of its own in it
        roots.mkdir(mode=0o700)
        (roots / "authorized_keys").write_text("root's own key\n")
        keys_file = folder / "authorized_keys"

        def as_account(*argv: str) -> None:
            subprocess.run(["runuser", "-u", stranger, "--", *argv], check=True, cwd="/", capture_output=True)

        def add(name: str) -> subprocess.CompletedProcess[str]:
            key = tmp_path / name
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
            return paas.run("ssh-keys:add", name, input=key.with_suffix(".pub").read_text(), check=False)

        def names() -> list[str]:
            return [k["name"] for k in json.loads(paas.run("ssh-keys:list", "--json").stdout)]

        as_account("mkdir", "-m", "700", str(folder))
        as_account("touch", str(keys_file))
        as_account("ln", "-s", str(victim), str(folder / ".authorized_keys.tmp"))
        as_account("ln", "-s", str(top / "made-by-root"), str(folder / ".authorized_keys.lock"))
        paas.env["MINIPAAS_AUTHORIZED_KEYS"] = str(keys_file)
        assert add("alice").returncode == 0
        info = keys_file.lstat()
        assert stat.S_ISREG(info.st_mode) and info.st_uid == account.pw_uid and stat.S_IMODE(info.st_mode) == 0o600
        assert "minipaas:alice" in keys_file.read_text()
        assert victim.read_text() == "root's own file\n" and victim.stat().st_uid == 0
        assert not (top / "made-by-root").exists()

        # The file replaced by a symlink to a file of root's: one line, nothing read into the account's file.
        as_account("rm", str(keys_file))
        as_account("ln", "-s", str(victim), str(keys_file))
        refused = add("bob")
        assert refused.returncode == 1 and refused.stderr == (
            f"error: cannot read {keys_file} (Too many levels of symbolic links): it must be a file, not a symlink\n")
        assert names() == ["alice"] and victim.read_text() == "root's own file\n" and keys_file.is_symlink()
        assert sorted(p.name for p in folder.iterdir()) == [".authorized_keys.lock", ".authorized_keys.tmp",
                                                            "authorized_keys"]
        # The folder replaced by a symlink to a folder of root's: one line, nothing written there.
        as_account("mv", str(folder), str(home / "old-ssh"))
        as_account("ln", "-s", str(roots), str(folder))
        refused = add("carol")
        assert refused.returncode == 1 and refused.stderr == (
            f"error: {folder} must be a folder, not a symlink or a file\n")
        assert names() == ["alice"]
        assert [p.name for p in roots.iterdir()] == ["authorized_keys"]
        assert (roots / "authorized_keys").read_text() == "root's own key\n"
    finally:
        subprocess.run(["rm", "-rf", str(top)], check=False)

