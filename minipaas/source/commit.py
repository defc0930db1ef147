"""One reading of a commit: what every step of a release needs of it, read from the repository once.

A push (and every release that does not build: a config change, a restart, a rollback, `ps:scale`, `ps:restore`)
reads its commit here, once, into a `Commit` that the later steps receive: the build its package.json and
Procfile, the formation its Procfile and app.json's `formation`, the health check app.json's `healthchecks` and
the CHECKS file. The files are read up front; each is parsed where it is first needed (a cached property), so a
broken app.json or CHECKS file is refused at the step that uses it, with the same line as ever.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from minipaas.adapters import gitrepo
from minipaas.source import appjson, checksfile, packagejson, procfile

FILES = ("package.json", "Procfile", "app.json", "CHECKS")  # what every release may need, read at once


@dataclass(frozen=True)
class Commit:
    """A commit's files as a release uses them: its paths, its Procfile (parsed: a bad one fails the release at
    once, as a build does), and package.json, app.json and CHECKS as read, parsed at their first use."""

    sha: str
    paths: frozenset[str]
    procs: dict[str, str]  # the Procfile: process type → command ({} without one)
    files: dict[str, bytes]  # those of FILES the commit holds, as read

    @cached_property
    def package(self) -> packagejson.Package:
        """package.json's checked facts (an empty Package without one)."""
        return packagejson.parse(self.files.get("package.json"))

    @property
    def app_json(self) -> bytes | None:
        return self.files.get("app.json")

    @cached_property
    def formation(self) -> dict[str, int]:
        """app.json's `formation` (dokku's and Heroku's): the counts until `ps:scale` sets others."""
        raw = self.app_json
        return appjson.formation(raw, process_type=procfile.PROCESS_TYPE, most=procfile.MAX_SCALE) if raw else {}

    @cached_property
    def app_json_checks(self) -> appjson.Healthchecks | None:
        """app.json's `healthchecks.web`, if it has any."""
        raw = self.app_json
        return appjson.parse(raw) if raw is not None else None

    @cached_property
    def checks_file(self) -> checksfile.Checks | None:
        """The CHECKS file's checks, if the commit has one."""
        raw = self.files.get("CHECKS")
        return checksfile.parse_checks(raw.decode("utf-8", errors="replace")) if raw is not None else None


def read_commit(repo: Path, sha: str) -> Commit:
    """The commit `sha` of the bare repository `repo`, read once: its paths and the files of FILES it holds."""
    paths = frozenset(gitrepo.all_files(repo, sha))
    files = {name: raw for name in FILES if name in paths and (raw := gitrepo.read_file(repo, sha, name)) is not None}
    procs = procfile.parse(files["Procfile"]) if "Procfile" in files else {}
    return Commit(sha=sha, paths=paths, procs=procs, files=files)
