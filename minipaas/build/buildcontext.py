"""An app's build context as a folder that follows its pushes, for BuildKit.

BuildKit takes a folder context through its own file sync, which sends only what changed since the
last build of the same folder, and starts at once; a tar on stdin is unpacked in full into a new
snapshot first (0.1 s for a small app here, more for a large one, on every push). So each app has
`HOME/build/APP/` (root's alone, as its repository is), where git keeps a folder at the pushed
commit with an index of its own: `read-tree --reset -u` rewrites only the files that changed and
removes the ones the commit no longer has, as `git checkout` does. A buildpack's build has the
commit under `src/` and its .dockerignore beside it; the Dockerfile reaches the builder on stdin.

Files are written with git's modes (0644/0755), as `git archive` gives them: what the image gets.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from minipaas.adapters import gitrepo, proc
from minipaas.errors import BuildFailed, no_space
from minipaas.state import locks, perms
from minipaas.state.settings import Settings

GIT_TIMEOUT = 300
KINDS = ("dockerfile", "buildpack")  # the app's own Dockerfile's context, a buildpack's (the commit under src/)


def folder(settings: Settings, app: str) -> Path:
    return settings.layout.build_dir / app


@contextmanager
def checked_out(settings: Settings, app: str, sha: str, *, prefix: str, extra: dict[str, bytes]) -> Iterator[Path]:
    """The app's context folder, with the commit under `prefix` ("src" for a buildpack's build, "" for the
    app's own Dockerfile) and `extra` files beside it (a buildpack's .dockerignore). One build of an app
    at a time uses it."""
    top = folder(settings, app)
    top.parent.mkdir(mode=0o700, exist_ok=True)
    top.mkdir(mode=0o700, exist_ok=True)
    kind = "buildpack" if prefix else "dockerfile"  # one folder each: a switch between the two starts afresh
    with locks.held(locks.build_context_lock(settings, app, kind)):
        context = top / kind
        work = context / prefix if prefix else context
        work.mkdir(parents=True, exist_ok=True)
        work.chmod(0o755)  # as git's folders below: the image's /app gets what its context has
        _sync(settings.repo_path(app), sha, work, top / f"{kind}.index")
        written = []
        for name, data in extra.items():  # only beside `prefix`: never over the commit's own files
            perms.write_file(context / name, data, 0o644)
            written.append(context / name)
        try:
            yield context
        finally:
            for path in written:
                path.unlink(missing_ok=True)


def _sync(repo: Path, sha: str, work: Path, index: Path) -> None:
    argv = ["git", "--git-dir", str(repo), "--work-tree", str(work), "read-tree", "--reset", "-u",
            gitrepo.check_sha(sha)]
    try:
        # umask 022: git's modes (0644, 0755), as an archive of the commit has them; the folder above is 0700.
        result = subprocess.run(argv, env={"GIT_INDEX_FILE": str(index), "PATH": "/usr/bin:/bin"},
                                capture_output=True, timeout=GIT_TIMEOUT, umask=0o022)
    except subprocess.TimeoutExpired:
        raise BuildFailed(f"checking out {sha[:7]} for the build took over {GIT_TIMEOUT} s") from None
    if result.returncode != 0:
        lines = result.stderr.decode(errors="replace").strip().splitlines()
        if proc.NO_SPACE in result.stderr:
            raise no_space(f"of {work}")
        raise BuildFailed(f"cannot check out {sha[:7]} for the build: {lines[-1] if lines else 'git failed'}")


def folders(settings: Settings, app: str) -> list[Path]:
    """The app's context folders that exist (one per kind of build it had)."""
    return [folder(settings, app) / kind for kind in KINDS if (folder(settings, app) / kind).is_dir()]


def remove(settings: Settings, app: str) -> None:
    """`apps:destroy`: the context folder goes with the app."""
    shutil.rmtree(folder(settings, app), ignore_errors=True)
