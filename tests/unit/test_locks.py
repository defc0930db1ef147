"""Locks (issue 19, item 12): every lock file is in a folder that is root's alone (an instance's `locks/`, and
/run/minipaas for the host's shared ones), checked before each lock is opened; lock files are opened without
following symlinks, close-on-exec, and never truncated. Another local account can neither plant, symlink nor
hold one, and pushes go on; the account that owns the ssh folder gets no root write through a symlink."""

from __future__ import annotations

import os
import pwd
import stat
import subprocess
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from minipaas.errors import Conflict
from minipaas.state import locks
from minipaas.state.settings import Settings, load


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


