"""`report`'s folder sizes (running/disksizes.py): du measures a folder again only when a change it knows of touched
it (a release folder added or removed, a push's objects, git's gc); otherwise the kept size. Real folders and a
real bare repository receiving a real push; no engine."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from minipaas.adapters import diskuse
from minipaas.running import disksizes
from minipaas.state.settings import load


def git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                   env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                        "GIT_COMMITTER_EMAIL": "t@t"})


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def test_a_folder_is_measured_again_only_when_what_changes_it_happened(home: Path, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load({"MINIPAAS_HOME": str(home), "MINIPAAS_DOMAIN": "paas.test"})
    site, repo, work = home / "static" / "shop", home / "repos" / "shop.git", tmp_path / "work"
    (site / "1").mkdir(parents=True)
    (site / "1" / "index.html").write_bytes(b"x" * 5000)
    git("init", "-q", "--bare", str(repo), cwd=tmp_path)
    git("init", "-q", "-b", "main", str(work), cwd=tmp_path)
    (work / "a.txt").write_bytes(os.urandom(20_000))  # incompressible: the repository grows by about as much
    git("add", ".", cwd=work)
    git("commit", "-qm", "one", cwd=work)
    git("push", "-q", str(repo), "main", cwd=work)

    measured: list[list[Path]] = []
    # A folder changed within the last second is measured again each time (its mtime may not have ticked yet)...
    disksizes.sizes(settings, [site], [repo])
    assert disksizes.sizes(settings, [site], [repo]) and not (home / "cache" / "disk-sizes.json").read_text().count(
        str(site))
    monkeypatch.setattr(disksizes, "SETTLE_NS", 0)  # ...which the rest of this test need not wait for
    real = diskuse.usage
    monkeypatch.setattr(diskuse, "usage", lambda paths: measured.append(list(paths)) or real(paths))

    def du(path: Path) -> int:  # what du says now, not counted as disksizes' own
        return real([path])[path]

    first = disksizes.sizes(settings, [site], [repo])
    assert first == {site: du(site), repo: du(repo)} and measured == [[site, repo]]
    assert disksizes.sizes(settings, [site], [repo]) == first and len(measured) == 1  # nothing changed: no du

    (site / "2").mkdir()  # a deploy's new release folder
    (site / "2" / "index.html").write_bytes(b"y" * 9000)
    second = disksizes.sizes(settings, [site], [repo])
    assert measured[-1] == [site] and second[site] == du(site) > first[site]

    (work / "b.txt").write_bytes(os.urandom(30_000))  # a push: its objects arrive through git's quarantine
    git("add", ".", cwd=work)
    git("commit", "-qm", "two", cwd=work)
    git("push", "-q", str(repo), "main", cwd=work)
    third = disksizes.sizes(settings, [site], [repo])
    assert measured[-1] == [repo] and third[repo] == du(repo) >= first[repo] + 20_000

    git("gc", "-q", "--prune=now", cwd=repo)  # git's own gc: packed
    assert disksizes.sizes(settings, [site], [repo])[repo] == du(repo) and measured[-1] == [repo]
    assert disksizes.sizes(settings, [site], [home / "repos" / "gone.git"])[home / "repos" / "gone.git"] == 0
