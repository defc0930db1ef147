"""Locks (issue 19, item 12): every lock file is in a folder that is root's alone (an instance's `locks/`, and
/run/minipaas for the host's shared ones), checked before each lock is opened; lock files are opened without
following symlinks, close-on-exec, and never truncated. Another local account can neither plant, symlink nor
hold one, and pushes go on; the account that owns the ssh folder gets no root write through a symlink."""

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
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from minipaas.errors import Conflict
from minipaas.state import locks
from minipaas.state.settings import Settings, load
from tests.engine.test_build_limits import assert_built_with
from tests.helpers.host import APPS, Paas, commit


def _settings(tmp_path: Path) -> Settings:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    return load({"MINIPAAS_HOME": str(home)})


def _open_flags(path: Path) -> list[int]:
    """The flags of every descriptor this process has open on `path` (as /proc/self/fdinfo says)."""
    flags = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == str(path):
                info = Path(f"/proc/self/fdinfo/{fd}").read_text()
                flags.append(int(info.split("flags:")[1].split()[0], 8))
        except OSError:
            continue
    return flags


def _one_line(exc: pytest.ExceptionInfo[Conflict]) -> str:
    assert "\n" not in exc.value.message
    return exc.value.message


# -- the folders (no engine) -------------------------------------------------------------------

def test_a_lock_folder_is_made_root_only_and_any_other_is_refused_with_one_line(tmp_path: Path) -> None:
    made = locks.private_folder(tmp_path / "new")
    assert stat.S_IMODE(made.lstat().st_mode) == 0o700 and made.lstat().st_uid == os.geteuid()

    loose = tmp_path / "loose"
    loose.mkdir()
    loose.chmod(0o1777)  # as /run/lock
    with pytest.raises(Conflict) as refused, locks.host_build_lock(lambda line: None, loose / "buildkit.lock"):
        pass
    assert _one_line(refused) == (f"the lock folder {loose} must be root's alone (mode 0700), not root's with "
                                  "mode 1777: remove it (minipaas makes it again)")
    assert list(loose.iterdir()) == []  # no lock file was made there

    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o700)
    os.chown(theirs, pwd.getpwnam("nobody").pw_uid, -1)  # made by another account before root came
    with pytest.raises(Conflict, match="not nobody's with mode 0700"):
        locks.private_folder(theirs)

    link = tmp_path / "link"
    link.symlink_to(made)
    (tmp_path / "file").write_text("")
    for odd in (link, tmp_path / "file"):
        with pytest.raises(Conflict, match="not a symlink or a file: remove it"):
            locks.private_folder(odd)


def test_a_symlink_where_a_lock_should_be_is_refused_and_nothing_is_written_through_it(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    folder = locks.private_folder(settings.locks_dir)
    victim = tmp_path / "victim"
    victim.write_text("root's own file\n")
    victim.chmod(0o644)
    (folder / "hello.lock").symlink_to(victim)
    (folder / "dangling.lock").symlink_to(tmp_path / "made-through-it")
    takes: list[Callable[[Path], AbstractContextManager[object]]] = [
        lambda path: locks.held(path),
        lambda path: locks.waited(path, lambda line: None, waiting="", resumed=None, limit=1, stuck=""),
        lambda path: locks.open_file(path),
    ]
    for path in (folder / "hello.lock", folder / "dangling.lock"):
        for take in takes:
            with pytest.raises(Conflict) as refused, take(path):
                pass
            assert _one_line(refused) == f"{path} is a symlink, not a lock file: remove it"
    with pytest.raises(Conflict, match="is a symlink"), locks.app_lock(settings, "hello", lambda line: None):
        pass
    assert victim.read_text() == "root's own file\n" and stat.S_IMODE(victim.stat().st_mode) == 0o644
    assert not (tmp_path / "made-through-it").exists()


def test_lock_files_are_opened_nofollow_close_on_exec_and_never_truncated(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    kept = locks.app_lock_path(settings, "kept")
    locks.private_folder(kept.parent)
    kept.write_text("a note in the lock file\n")
    with locks.app_lock(settings, "kept", lambda line: None):
        [flags] = _open_flags(kept)
        assert flags & os.O_NOFOLLOW and flags & os.O_CLOEXEC
        with locks.try_app_lock(settings, "kept") as got:
            assert got is False  # exclusive, also against this process' own second opening
        # A program started meanwhile (without Python's own closing of descriptors) does not inherit it.
        listed = subprocess.run(["ls", "-l", "/proc/self/fd"], close_fds=False, capture_output=True, text=True)
        assert str(kept) not in listed.stdout and listed.returncode == 0
    assert kept.read_text() == "a note in the lock file\n"
    with locks.try_app_lock(settings, "kept") as got:
        assert got is True
    made = locks.instance_lock(settings, "nginx.routes")
    with locks.open_file(made):  # the shared locks' way (stacks.py): the same flags
        [flags] = _open_flags(made)
        assert flags & os.O_NOFOLLOW and flags & os.O_CLOEXEC
    assert stat.S_IMODE(made.stat().st_mode) == 0o600


def test_an_apps_lock_is_never_one_of_the_instances_own(tmp_path: Path) -> None:
    settings = load({"MINIPAAS_HOME": str(tmp_path / "home")})
    own = {locks.instance_lock(settings, name) for name in locks.INSTANCE_LOCKS}
    for app in ("proxy", "routes", "nginx", "acme", "buildkit", "hello"):
        assert locks.app_lock_path(settings, app) not in own
        contexts = {locks.build_context_lock(settings, app, kind) for kind in ("buildpack", "dockerfile")}
        assert not contexts & own and locks.app_lock_path(settings, app) not in contexts


# -- another local account, against the real pushes ------------------------------------------

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
