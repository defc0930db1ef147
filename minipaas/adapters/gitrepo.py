"""The git adapter: bare repositories, their hooks, and reading pushed commits.

Calls the git binary with argument lists. In a pre-receive hook git sets the object-quarantine
environment (GIT_OBJECT_DIRECTORY, ...); these calls inherit it so that the pushed, not yet
accepted objects are readable.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from pathlib import Path

from minipaas.adapters import proc
from minipaas.errors import InvalidInput, NotFound

SHA = re.compile(r"[0-9a-f]{40}([0-9a-f]{24})?")
ZERO_SHA = "0" * 40


def _git(repo: Path, *args: str, input: bytes | None = None, check: bool = True) -> bytes:
    return proc.run(["git", "--git-dir", str(repo), *args], input=input, check=check).stdout


def init_bare(repo: Path, *, home: Path, app: str, hook_template: Path) -> None:
    proc.run(["git", "init", "--bare", "--quiet", "--initial-branch=master", str(repo)])
    configure(repo)
    install_hook(repo, home=home, app=app, template=hook_template)


def configure(repo: Path) -> None:
    """The repository settings minipaas relies on (init_bare; `minipaas init` for existing repos)."""
    # Damaged objects are refused at the door; receive.denyDeletes is enforced by the hook with a
    # clearer message. No automatic gc: a rejected push's commit is kept for `minipaas deploy`.
    _git(repo, "config", "receive.fsckObjects", "true")
    _git(repo, "config", "gc.auto", "0")
    # `git push -o verbose` (and other push options) reach the hook.
    _git(repo, "config", "receive.advertisePushOptions", "true")
    keep_private(repo)


def keep_private(repo: Path) -> None:
    """Whoever pushes (and whatever their umask), git creates this repo's files 0600 (0400 objects)
    and folders 0700: an app's source is root's alone (see perms.py)."""
    _git(repo, "config", "core.sharedRepository", "0600")


def install_hook(repo: Path, *, home: Path, app: str, template: Path) -> None:
    """Write the pre-receive hook from `template` (settings.HOOK_TEMPLATE): it runs minipaas' own
    interpreter with this home and app baked in."""
    text = template.read_text(encoding="utf-8")
    text = (
        text.replace("@PYTHON@", sys.executable)
        .replace("@HOME@", repr(str(home)))
        .replace("@APP@", repr(app))
    )
    hook = repo / "hooks" / "pre-receive"
    tmp = hook.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.chmod(0o700)  # git runs it as root, who pushes (locally, or through ssh-command)
    os.replace(tmp, hook)


def remove(repo: Path) -> None:
    shutil.rmtree(repo, ignore_errors=True)


def keep_pushed(repo: Path, sha: str) -> None:
    """Copy a pushed commit (and what it needs) out of git's quarantine into the repository itself.

    In a pre-receive hook the pushed objects sit in a quarantine folder that git deletes when the push
    is rejected or the pusher goes away. Kept in the repository, the commit can still be built after
    the pusher disconnected, and deployed later with `minipaas deploy APP` after a rejected push.
    """
    if not os.environ.get("GIT_QUARANTINE_PATH"):
        return  # not in a hook: the objects are in the repository already
    objects = _git(repo, "rev-list", "--objects", check_sha(sha), "--not", "--all")
    pack = _git(repo, "pack-objects", "--stdout", "-q", input=objects)
    main = {k: v for k, v in os.environ.items()
            if k not in ("GIT_OBJECT_DIRECTORY", "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_QUARANTINE_PATH")}
    proc.run(["git", "--git-dir", str(repo), "index-pack", "--stdin"], input=pack, env=main)


def ref_value(repo: Path, ref: str) -> str:
    """The commit a ref of the repository names now (ZERO_SHA where it does not exist), as git's receive-pack
    compares it with the old value a push expects before it updates the ref."""
    result = proc.run(["git", "--git-dir", str(repo), "rev-parse", "--verify", "--quiet", ref], check=False)
    return result.stdout.decode().strip() if result.returncode == 0 else ZERO_SHA


def branches(repo: Path) -> set[str]:
    """The branches the repository has (raises when it cannot be read: never taken for a repository without any)."""
    out = _git(repo, "for-each-ref", "--format=%(refname)", "refs/heads/")
    return {line.removeprefix("refs/heads/") for line in out.decode("utf-8", "surrogateescape").splitlines() if line}


def receive_pack_pid() -> int | None:
    """In a hook: git's receive-pack (the hook's parent, which updates the refs once the hook exited 0)."""
    parent = os.getppid()
    try:
        cmdline = Path(f"/proc/{parent}/cmdline").read_bytes()
    except OSError:
        return None
    return parent if b"receive-pack" in cmdline else None


def check_sha(sha: str) -> str:
    if not SHA.fullmatch(sha):
        raise InvalidInput(f"invalid commit id {sha!r}")
    return sha


def archive(repo: Path, sha: str, *, prefix: str = "") -> bytes:
    """A tar of the commit's tree (what `git archive` gives: no .git, no untracked files)."""
    args = ["archive", "--format=tar"]
    if prefix:
        args.append(f"--prefix={prefix}")
    return _git(repo, *args, check_sha(sha))


def read_file(repo: Path, sha: str, path: str) -> bytes | None:
    result = proc.run(["git", "--git-dir", str(repo), "cat-file", "blob", f"{check_sha(sha)}:{path}"], check=False)
    return result.stdout if result.returncode == 0 else None


def resolve(repo: Path, rev: str) -> str:
    result = proc.run(["git", "--git-dir", str(repo), "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"],
                      check=False)
    if result.returncode != 0:
        raise NotFound(f"no commit {rev!r} in {repo.name}")
    return result.stdout.decode().strip()


def all_files(repo: Path, sha: str) -> list[str]:
    """Every file path of the commit (for buildpack detection)."""
    out = _git(repo, "ls-tree", "-r", "--name-only", "-z", check_sha(sha))
    return [p for p in out.decode("utf-8", errors="replace").split("\0") if p]


def tree_entries(repo: Path, sha: str, paths: list[str], *, recursive: bool = False) -> dict[str, tuple[str, str]]:
    """The commit's entries at (or, recursive, under) `paths`: path → (mode, object id). Mode 120000 is a
    symlink, 160000 a submodule; with `recursive` only files and links are listed, never folders."""
    if not paths:
        return {}
    args = ["ls-tree", "-z", *(["-r"] if recursive else []), check_sha(sha), "--", *paths]
    entries = {}
    for line in _git(repo, *args).decode("utf-8", errors="replace").split("\0"):
        if line:
            info, _, path = line.partition("\t")
            mode, _kind, obj = info.split(" ")
            entries[path] = (mode, obj)
    return entries
