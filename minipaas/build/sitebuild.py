"""Which folder of a built image a static-build site is served from: the one the build created or changed.

A repository may hold a source folder named like an output folder (an Eleventy starter's `public/`, whose
files Eleventy copies into `_site/`): serving it would show the sources, not the site. So each candidate
folder of the image is compared with the same folder of the commit, file by file, by git blob id, and a
folder the commit holds unchanged is passed over. The `static-dir` setting names the folder outright.
Extracting the chosen folder into a release directory is sites.py's job.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from minipaas.adapters import engine, gitrepo
from minipaas.errors import BuildFailed


@dataclass(frozen=True)
class Output:
    """What a folder copied out of an image holds."""

    files: dict[str, str]  # path inside the folder → git blob id of its content (a symlink: of its target)
    is_link: bool  # the folder itself is a symlink

    @property
    def has_index(self) -> bool:
        return "index.html" in self.files


def blob_id(data: bytes, *, sha256: bool = False) -> str:
    """The id git gives a file of these bytes (`git hash-object`)."""
    digest = hashlib.sha256() if sha256 else hashlib.sha1(usedforsecurity=False)
    digest.update(b"blob %d\0" % len(data))
    digest.update(data)
    return digest.hexdigest()


def scan(archive: io.BytesIO, *, sha256: bool = False) -> Output:
    """Read a tar of one folder as Docker's archive API gives it (`name/...`); rewinds it for extraction."""
    files: dict[str, str] = {}
    is_link = False
    try:
        with tarfile.open(fileobj=archive, mode="r:*") as tar:
            for member in tar:
                _, _, rest = member.name.removeprefix("./").partition("/")
                if not rest:
                    is_link = is_link or member.issym() or member.islnk()
                    continue
                if member.isfile():
                    source = tar.extractfile(member)
                    files[rest] = blob_id(source.read() if source else b"", sha256=sha256)
                elif member.issym():
                    files[rest] = blob_id(member.linkname.encode(), sha256=sha256)
    except (tarfile.TarError, EOFError, zlib.error):  # the engine's copy cut short (it went away mid-copy)
        raise BuildFailed("the build's output folder came as a damaged archive") from None
    archive.seek(0)
    return Output(files=files, is_link=is_link)


def unchanged(output: Output, committed: dict[str, tuple[str, str]], root: str) -> bool:
    """Whether the image's folder is exactly the commit's folder `root` (`git ls-tree -r` entries)."""
    prefix = root.strip("/") + "/"
    in_commit = {path[len(prefix):]: obj for path, (mode, obj) in committed.items()
                 if path.startswith(prefix) and mode != "160000"}
    return bool(in_commit) and in_commit == output.files


def hint(app: str) -> str:
    return (f"if {app} is a server rather than a site, give it a `start` script in package.json or a Procfile "
            f"`web:` line; if it is a site, name its output folder with "
            f"`minipaas settings:set {app} static-dir FOLDER`")


def choose_output(repo: Path, sha: str, image: str, *, app: str, site_dir: str,
                  roots: tuple[str, ...]) -> tuple[str, io.BytesIO]:
    """The folder to serve and a tar of it: `site_dir` if set, else the first of `roots` that the build
    created or changed and that has an index.html. BuildFailed, with what to do, when there is none."""
    sha256 = len(sha) == 64
    if site_dir:
        archive = engine.copy_out(image, f"/app/{site_dir}")
        if archive is None:
            raise BuildFailed(f"static-dir {site_dir}: the build produced no such folder")
        output = scan(archive, sha256=sha256)
        if output.is_link:
            raise BuildFailed(f"static-dir {site_dir} is a symbolic link in the built app; name a real folder")
        if not output.has_index:
            raise BuildFailed(f"static-dir {site_dir} has no index.html, so it is not a site to serve")
        return site_dir, archive
    committed = gitrepo.tree_entries(repo, sha, [f"{root}/" for root in roots], recursive=True)
    as_is: list[str] = []
    without_index: list[str] = []
    for root in roots:
        archive = engine.copy_out(image, f"/app/{root}")
        if archive is None:
            continue
        output = scan(archive, sha256=sha256)
        if output.is_link:
            continue
        if unchanged(output, committed, root):
            as_is.append(f"{root}/")  # a source folder (Eleventy's public/), not what the build made
        elif output.has_index:
            return root, archive
        else:
            without_index.append(f"{root}/")
    if without_index:
        raise BuildFailed(f"this looks like a site, but the build wrote no index.html (in "
                          f"{', '.join(without_index)}); {hint(app)}")
    looked = ", ".join(f"{root}/" for root in roots)
    kept = f" ({', '.join(as_is)} is in the repository as it is, not built)" if as_is else ""
    raise BuildFailed(f"this looks like a site, but the build produced none of {looked}{kept}; {hint(app)}")
