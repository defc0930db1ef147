"""Issue 20, the parts of concurrency that need no engine (fast tier): an app's lock shared by gc and the task
watcher but never by a deploy; a push's turn that outlives its hook until git has ended; a push refused in one
line when its branch moved while it waited; `init` refusing a home nginx's workers cannot reach."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from minipaas.adapters.gitrepo import ZERO_SHA
from minipaas.deploy import hook
from minipaas.errors import Conflict, InvalidInput
from minipaas.host import setup
from minipaas.state import locks
from minipaas.state.settings import Settings, load
from tests.helpers.host import commit, git


def _settings(tmp_path: Path) -> Settings:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    return load({"MINIPAAS_HOME": str(home)})


def test_gc_and_the_task_watcher_share_an_apps_lock_and_a_deploy_waits_for_them(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    # Two holders beside each other (a background gc, the watcher's round): neither thinks a deploy runs.
    with locks.try_app_lock(settings, "hello") as first, locks.try_app_lock(settings, "hello") as second:
        assert (first, second) == (True, True)
        # A deploy waits for them (and says so) ...
        lines: list[str] = []
        got = threading.Event()

        def deploy() -> None:
            with locks.app_lock(settings, "hello", lines.append):
                got.set()

        deployer = threading.Thread(target=deploy)
        deployer.start()
        assert not got.wait(0.5)
    deployer.join(10)
    assert got.is_set() and lines[0] == "Waiting for another deploy of hello to finish..."
    # ... and while a deploy holds the lock, they are told so.
    with locks.app_lock(settings, "hello", lambda _line: None), locks.try_app_lock(settings, "hello") as held:
        assert held is False
    with locks.try_app_lock(settings, "other") as held:  # another app's deploy is not this one's
        assert held is True


def test_a_gc_waits_for_the_gc_before_it(tmp_path: Path) -> None:
    # The background gc after a retirement, then `gc` or `gc --dry-run`: the second waits (and says so) rather than
    # skip the app as if a deploy ran, and then sees what the first left.
    settings = _settings(tmp_path)
    lines: list[str] = []
    order: list[str] = []
    with locks.gc_turn(settings, lines.append):
        second = threading.Thread(target=lambda: _gc(settings, lines, order))
        second.start()
        deadline = time.monotonic() + 10
        while not lines and time.monotonic() < deadline:  # until the second one waits
            time.sleep(0.01)
        order.append("first done")
    second.join(10)
    assert order == ["first done", "second"]
    assert lines == ["       waiting for another gc of this instance to finish..."]


def _gc(settings: Settings, lines: list[str], order: list[str]) -> None:
    with locks.gc_turn(settings, lines.append):
        order.append("second")


def test_a_push_turn_handed_over_lasts_until_git_has_ended(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    git_process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])  # stands for receive-pack
    try:
        with locks.push_turn(settings, "hello", lambda _line: None) as turn:
            turn.keep_until_gone(git_process.pid)
            assert turn.kept
        # The hook is done, git is not: the next push waits, and is told so.
        lines: list[str] = []
        with pytest.raises(Conflict, match="another push to hello has held its turn"), \
                locks.push_turn(settings, "hello", lines.append, limit=1.0):
            pass
        assert lines == ["Waiting for another push to hello to finish..."]
    finally:
        git_process.kill()
        git_process.wait()
    # git ended: the keeper ends with it, and the turn is free.
    started = time.monotonic()
    with locks.push_turn(settings, "hello", lambda _line: None, limit=5.0):
        assert time.monotonic() - started < 2
    # Nothing to wait for (not under git): the turn ends with the hook's `with`, the next push does not wait.
    with locks.push_turn(settings, "hello", lambda _line: None) as turn:
        turn.keep_until_gone(None)
        assert not turn.kept
    lines = []
    with locks.push_turn(settings, "hello", lines.append, limit=0.2):
        assert lines == []


def test_a_push_whose_branch_moved_while_it_waited_is_refused_in_one_line(tmp_path: Path) -> None:
    repo = tmp_path / "app.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "master", str(repo))
    work = tmp_path / "work"
    git(tmp_path, "init", "-q", "-b", "master", str(work))
    first = commit(work, "first")
    git(work, "push", "-q", str(repo), "master")
    second = commit(work, "second")
    ours = [[first, second, "refs/heads/master"]]
    assert hook._moved(repo, ours) is None  # the branch is where this push found it
    git(work, "push", "-q", str(repo), "master")  # another push got there first
    line = hook._moved(repo, [[first, commit(work, "third"), "refs/heads/master"]])
    assert line == (f"!     master moved to {second[:7]} while this push waited for another; nothing was deployed: "
                    "fetch, then push again")
    assert hook._moved(repo, [[ZERO_SHA, second, "refs/heads/feature"]]) is None  # a new branch, still new
    git(work, "push", "-q", str(repo), f"{second}:refs/heads/feature")
    assert "feature moved to" in (hook._moved(repo, [[ZERO_SHA, second, "refs/heads/feature"]]) or "")
    git(work, "push", "-q", str(repo), ":feature")
    assert "feature was deleted while" in (hook._moved(repo, [[second, first, "refs/heads/feature"]]) or "")


@pytest.mark.skipif(os.geteuid() != 0, reason="nginx's workers run as another account only under root")
def test_init_refuses_a_home_that_nginx_workers_cannot_reach(tmp_path: Path) -> None:
    top = Path(tempfile.mkdtemp(dir="/var/tmp"))
    try:
        private = top / "private"
        private.mkdir(mode=0o700)
        top.chmod(0o711)
        home = private / "home"
        env = {**os.environ, "MINIPAAS_HOME": str(home), "MINIPAAS_NGINX": "private"}
        result = subprocess.run([sys.executable, "-m", "minipaas", "init"], env=env, capture_output=True, text=True,
                                timeout=60)
        assert result.returncode == 1 and result.stdout == ""
        assert result.stderr == (f"error: www-data (nginx's workers) cannot pass through {private}, above "
                                 f"MINIPAAS_HOME {home}: it could not serve static sites; move the home, or let others "
                                 "pass through that folder (chmod o+x)\n")
        assert not home.exists()  # nothing written
        # A folder above it that does not exist yet would be made root's alone: said too.
        with pytest.raises(InvalidInput, match=f"^{top / 'missing'}, above MINIPAAS_HOME .* does not exist"):
            setup._check_host_files(load({"MINIPAAS_HOME": str(top / "missing" / "home"),
                                              "MINIPAAS_NGINX": "private"}))
        # The same home where nginx's workers pass through every folder above it: no objection.
        private.chmod(0o711)
        setup._check_host_files(load({"MINIPAAS_HOME": str(home), "MINIPAAS_NGINX": "private"}))
    finally:
        subprocess.run(["rm", "-rf", str(top)], check=False)
