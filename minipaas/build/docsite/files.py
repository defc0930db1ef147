"""A docs site's files: reading the untrusted repository (no symlinks, no hidden entries, no special
files), which Markdown file becomes which page, links between pages rewritten, and writing the output."""

from __future__ import annotations

import os
import posixpath
import re
import shutil
import stat
from pathlib import Path
from urllib.parse import quote, unquote

from minipaas.build.docsite.model import Page, is_markdown
from minipaas.errors import BuildFailed

WELL_KNOWN = ".well-known"
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def scan(src: Path, *, skip: Path | None = None) -> tuple[list[str], list[str]]:
    """List the regular files under `src` as sorted POSIX paths: (Markdown files, other files).

    Symlinks (to files or folders), hidden entries (`.git`, `.env`, ...), special files and the `skip`
    folder (the output, if it lies inside the source) are left out; but the folder `.well-known` at the root
    (security.txt and the like, RFC 8615), whose files are copied as they are, none of them a page.
    """
    skip_id = _inode(skip) if skip is not None else None
    markdown: list[str] = []
    other: list[str] = []
    pending = [""]
    while pending:
        rel = pending.pop()
        with os.scandir(src / rel if rel else src) as entries:
            for entry in entries:
                well_known = not rel and entry.name == WELL_KNOWN
                if (entry.name.startswith(".") and not well_known) or entry.is_symlink():
                    continue
                path = f"{rel}/{entry.name}" if rel else entry.name
                if entry.is_dir(follow_symlinks=False):
                    if _inode(Path(entry.path)) != skip_id:
                        pending.append(path)
                elif entry.is_file(follow_symlinks=False) and not well_known:
                    page = is_markdown(entry.name) and not path.startswith(WELL_KNOWN + "/")
                    (markdown if page else other).append(path)
    return sorted(markdown), sorted(other)


def _inode(path: Path) -> tuple[int, int] | None:
    try:
        info = path.stat(follow_symlinks=False)
    except OSError:
        return None
    return info.st_dev, info.st_ino


def read_bytes(root: Path, rel: str) -> bytes:
    """Read a regular file without following a symlink at its last component (the walk skipped the rest)."""
    fd = os.open(root / rel, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as stream:
        if not stat.S_ISREG(os.fstat(stream.fileno()).st_mode):
            raise BuildFailed(f"{rel} is not a regular file")
        return stream.read()


def read_text(root: Path, rel: str) -> str:
    try:
        data = read_bytes(root, rel)
    except OSError as error:
        raise BuildFailed(f"could not read {rel}: {error.strerror}") from error
    return data.decode("utf-8", errors="replace").removeprefix("\ufeff")


def copy_file(src: Path, out: Path, rel: str) -> None:
    try:
        fd = os.open(src / rel, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as error:
        raise BuildFailed(f"could not read {rel}: {error.strerror}") from error
    with os.fdopen(fd, "rb") as source:
        if not stat.S_ISREG(os.fstat(source.fileno()).st_mode):
            return
        target = out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "wb") as sink:
            shutil.copyfileobj(source, sink)


def write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8", newline="\n")


def map_pages(markdown_files: list[str]) -> list[Page]:
    """Give each Markdown file its output path; a folder's index.md (else README.md) becomes its index.html.

    Files whose output path is already taken (`a.md` and `a.MD`) are dropped, the first in sort order wins.
    """
    index_source: dict[str, str] = {}
    for rel in sorted(markdown_files, key=_index_preference):
        folder = posixpath.dirname(rel)
        if _is_index_name(rel):
            index_source.setdefault(folder, rel)
    pages: list[Page] = []
    taken: set[str] = set()
    for rel in markdown_files:
        folder = posixpath.dirname(rel)
        out = posixpath.join(folder, "index.html") if index_source.get(folder) == rel else html_name(rel)
        if out in taken:
            continue
        taken.add(out)
        pages.append(Page(src=rel, out=out))
    return pages


def _is_index_name(rel: str) -> bool:
    return posixpath.basename(rel)[:-3].lower() in {"index", "readme"}


def _index_preference(rel: str) -> tuple[bool, str]:
    return posixpath.basename(rel)[:-3].lower() != "index", rel


def html_name(rel: str) -> str:
    """`guide/install.md` → `guide/install.html` (the plain rule, without folder indexes)."""
    return rel[:-3] + ".html"


def rewrite_link(href: str, page_src: str, out_of: dict[str, str]) -> str:
    """Point a relative link at a `.md` file to the page it became, keeping `?query` and `#fragment`.

    Links with a scheme (`https:`, `mailto:`), protocol-relative ones (`//host`), fragments alone and
    links to anything but `.md` are returned unchanged.
    """
    if not href or href.startswith(("#", "//")) or _SCHEME.match(href):
        return href
    path, hash_sign, fragment = href.partition("#")
    path, question, query = path.partition("?")
    if not is_markdown(path):
        return href
    folder = posixpath.dirname(path)
    relative_to = "" if path.startswith("/") else posixpath.dirname(page_src)
    target = posixpath.normpath(posixpath.join(relative_to, unquote(path).lstrip("/")))
    default = "index.html" if _is_index_name(target) else posixpath.basename(html_name(target))
    new_name = posixpath.basename(out_of.get(target, default))
    new_path = posixpath.join(folder, quote(new_name)) if folder else quote(new_name)
    return new_path + question + query + hash_sign + fragment
