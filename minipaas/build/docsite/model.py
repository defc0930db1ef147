"""A docs site's model: its pages, headings and folders, the paths of its generated assets, page titles from
file names, and the Content-Security-Policy its pages carry (in a <meta> and, from nginx, as a header:
proxy.py reads it here, without loading the Markdown renderer)."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass, field

ASSETS = "assets"
STYLESHEET = f"{ASSETS}/docsite.css"
SCRIPT = f"{ASSETS}/search.js"
SEARCH_INDEX = f"{ASSETS}/search-index.json"
FAVICON = f"{ASSETS}/favicon.svg"
NOT_FOUND = "404.html"
GENERATED = frozenset({STYLESHEET, SCRIPT, SEARCH_INDEX, FAVICON})
LAYOUT_IDS = frozenset({"ds-content", "ds-menu-button", "ds-search", "ds-results", "ds-nav", "ds-toc-title"})

# Defence in depth: even if something slipped through escaping or sanitizing, the browser runs no inline
# script, no script from elsewhere, and no inline style. External images stay allowed (README badges).
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: http: https:; "
       "media-src 'self' http: https:; object-src 'none'; base-uri 'none'; form-action 'none'; frame-src 'none'")


Locator = Callable[[str], str]  # a site path (`guide/install.html`) → the href to it from the page being written


@dataclass(frozen=True)
class Heading:
    level: int
    text: str
    id: str


@dataclass
class Page:
    """One Markdown file and the page it becomes; paths are POSIX, relative to the source/output root."""

    src: str
    out: str
    title: str = ""
    body: str = ""
    headings: list[Heading] = field(default_factory=list)
    links: list[str] = field(default_factory=list)  # its hrefs as written, for the link check

    @property
    def depth(self) -> int:
        return self.out.count("/")


@dataclass
class Folder:
    """A folder of the navigation tree: its index page (if any), its other pages and its sub-folders."""

    name: str
    index: Page | None = None
    pages: list[Page] = field(default_factory=list)
    folders: dict[str, Folder] = field(default_factory=dict)


def is_markdown(name: str) -> bool:
    return name.lower().endswith(".md")


def prettify(name: str) -> str:
    """`02-getting_started.md` → `Getting started`."""
    stem = name[:-3] if is_markdown(name) else name
    words = " ".join(re.sub(r"[-_]+", " ", re.sub(r"^\d+[-_. ]+(?=\S)", "", stem)).split())
    return words[:1].upper() + words[1:] if words else name


def default_title(page: Page) -> str:
    if posixpath.basename(page.out) == "index.html" and posixpath.dirname(page.out):
        return prettify(posixpath.basename(posixpath.dirname(page.out)))
    if page.out == "index.html":
        return "Home"
    return prettify(posixpath.basename(page.src))
