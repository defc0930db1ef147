"""Link targets of docs pages, as GitHub makes them, and the links between pages that lead nowhere.

Heading ids follow GitHub's slugs (lower case, punctuation dropped but `-` and `_`, each space a `-`, unicode
letters kept; the plugin numbers repeats `-1`, `-2`), so in-page links written for GitHub work here; raw
HTML's `id` and `<a name>` count as targets too. After rendering, every relative link of every page is
checked: a missing page or file, or a fragment no element of the target page has, is a broken link, reported
as a warning (a docs push still succeeds).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import unquote

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_NOT_IN_SLUG = re.compile(r"[^\w\- ]")
# In HTML the renderer or nh3 wrote (attributes always double-quoted): ids of any element, names of anchors.
_ID = re.compile(r'<[a-zA-Z][^>]*?\sid="([^"]*)"')
_NAME = re.compile(r'<a\s[^>]*?\bname="([^"]*)"')
# Fragments a browser goes to without an element of that id: the top of the page.
_ALWAYS_THERE = frozenset({"", "top"})


def slugify(text: str) -> str:
    """GitHub's heading id for `text`: lower case, punctuation dropped (but `-`, `_`), each space a hyphen."""
    return _NOT_IN_SLUG.sub("", text.lower()).replace(" ", "-") or "section"


def slug_avoiding(reserved: frozenset[str]) -> Callable[[str], str]:
    """A slug function for the anchors plugin that never hands out one of `reserved` (the layout's ids)."""
    def slug(text: str) -> str:
        base = slugify(text)
        return f"{base}-1" if base in reserved else base

    return slug


def html_anchors(html: str) -> set[str]:
    """The ids and `<a name>`s of a rendered body: where `#fragment` links can land."""
    return {unescape_attr(v) for v in _ID.findall(html)} | {unescape_attr(v) for v in _NAME.findall(html)}


def unescape_attr(value: str) -> str:
    return (value.replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">").replace("&#x27;", "'")
            .replace("&#39;", "'").replace("&amp;", "&"))


@dataclass(frozen=True)
class PageLinks:
    src: str  # the Markdown file, relative to the docs root
    links: tuple[str, ...]  # its hrefs, as written
    anchors: frozenset[str]  # the fragments it offers


@dataclass(frozen=True)
class BrokenLink:
    src: str
    href: str

    def __str__(self) -> str:
        return f"{self.src} links to {self.href}, which does not exist"


def broken_links(pages: list[PageLinks], files: Iterable[str]) -> list[BrokenLink]:
    """Relative links of `pages` whose page, file or fragment does not exist; `files`: every file of the docs."""
    by_src = {page.src: page for page in pages}
    existing = set(files)
    folders = {posixpath.dirname(path) for path in existing}
    while (parents := {posixpath.dirname(f) for f in folders} - folders):
        folders |= parents
    broken = []
    for page in pages:
        for href in page.links:
            if not _checked(href):
                continue
            path, _, fragment = href.partition("#")
            path = path.partition("?")[0]
            target = page
            if path:
                relative_to = "" if path.startswith("/") else posixpath.dirname(page.src)
                resolved = posixpath.normpath(posixpath.join(relative_to, unquote(path).lstrip("/")))
                if resolved in by_src:
                    target = by_src[resolved]
                elif resolved in existing or resolved in folders or resolved == ".":
                    continue  # a file or folder: its fragments (`#L10`) are not ours to check
                else:
                    broken.append(BrokenLink(page.src, href))
                    continue
            if unquote(fragment) not in target.anchors and fragment not in _ALWAYS_THERE:
                broken.append(BrokenLink(page.src, href))
    return broken


def _checked(href: str) -> bool:
    """Relative links only: not `https:`, `mailto:`, `//host`, nor empty."""
    return bool(href) and not href.startswith("//") and not _SCHEME.match(href)
