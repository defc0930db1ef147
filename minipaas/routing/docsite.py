"""Markdown docs sites: a repository of `.md` files becomes a folder of static HTML that nginx serves.

This module owns everything between a checked-out tree of Markdown files and that folder: which page each
file becomes (`a/b.md` → `a/b.html`, a folder's README.md or index.md → its `index.html`), rendering
(CommonMark through markdown-it-py, with tables and strikethrough, fenced code highlighted by Pygments),
rewriting links between pages, the sidebar built from the folder tree, each page's table of contents, the
search index and its script, the theme, the 404 page, and copying images and other files as they are.
Heading ids and the check of links between pages are doclinks.py's; what raw HTML may keep is dochtml.py's.

The repository is untrusted: raw HTML in Markdown is sanitized as GitHub does (or, when asked, escaped),
`javascript:` links are never live, every page carries a Content-Security-Policy that forbids inline
scripts, and symlinks and hidden entries are never read nor copied, so a link cannot expose host files.
Deciding *when* an app is a docs site and configuring nginx are not done here.
"""

from __future__ import annotations

import functools
import html
import json
import os
import posixpath
import re
import shutil
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from urllib.parse import quote, unquote

from markdown_it import MarkdownIt
from markdown_it.token import Token
from mdit_py_plugins.anchors import anchors_plugin
from pygments import highlight as pygments_highlight
from pygments.formatters import HtmlFormatter
from pygments.lexer import Lexer
from pygments.lexers import get_lexer_by_name
from pygments.util import ClassNotFound

from minipaas.errors import BuildFailed
from minipaas.routing import dochtml, doclinks
from minipaas.routing.doclinks import BrokenLink

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

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_ALIGN = re.compile(r"text-align:(left|right|center)")
_LIGHT_CODE_STYLE = "default"
_DARK_CODE_STYLE = "github-dark"

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


# --- public entry point ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rendered:
    pages: int  # pages written
    broken: list[BrokenLink]  # links between pages (or to anchors) that lead nowhere


def render_site(src: Path, out: Path, *, title: str, allow_html: bool = False) -> int:
    """Render every `.md` under `src` into a static site in `out`; return the number of pages written."""
    return render_docs(src, out, title=title, allow_html=allow_html).pages


def render_docs(src: Path, out: Path, *, title: str, allow_html: bool = False) -> Rendered:
    """Render every `.md` under `src` into a static site in `out`; say how many pages, and which links broke.

    `out` is created if needed and is best given empty: files are written, never removed. With
    `allow_html`, raw HTML in the Markdown is kept but sanitized as GitHub does (no scripts, event handlers,
    styles or `javascript:` URLs); otherwise it is shown escaped, as text.
    """
    if not src.is_dir():
        raise BuildFailed(f"docs source {src} is not a folder")
    title = title.strip() or "Documentation"
    out.mkdir(parents=True, exist_ok=True)
    if out.resolve() == src.resolve():
        raise BuildFailed("the docs site cannot be written into its own source folder")
    markdown_files, other_files = scan(src, skip=out)
    pages = map_pages(markdown_files)
    out_of = {page.src: page.out for page in pages}
    renderer = Renderer(allow_html=allow_html)
    for page in pages:
        renderer.render(page, read_text(src, page.src), out_of)
    broken = doclinks.broken_links(
        [doclinks.PageLinks(page.src, tuple(page.links), frozenset(doclinks.html_anchors(page.body)))
         for page in pages], markdown_files + other_files)
    if not any(page.out == "index.html" for page in pages):
        pages.append(generated_index(pages, title))
    tree = build_tree(pages)
    taken = {page.out for page in pages} | GENERATED
    copied = [rel for rel in other_files if rel not in taken]
    icon = "favicon.ico" if "favicon.ico" in copied else FAVICON
    site = Site(title=title, tree=tree, icon=icon)
    for page in pages:
        write_text(out / page.out, page_html(site, page))
    if not any(page.out == NOT_FOUND for page in pages):
        write_text(out / NOT_FOUND, not_found_html(site))
    write_assets(out, pages)
    for rel in copied:
        copy_file(src, out, rel)
    return Rendered(pages=len(pages), broken=broken)


# --- reading the repository ------------------------------------------------------------------------------


def scan(src: Path, *, skip: Path | None = None) -> tuple[list[str], list[str]]:
    """List the regular files under `src` as sorted POSIX paths: (Markdown files, other files).

    Symlinks (to files or folders), hidden entries (`.git`, `.env`, ...), special files and the `skip`
    folder (the output, if it lies inside the source) are left out.
    """
    skip_id = _inode(skip) if skip is not None else None
    markdown: list[str] = []
    other: list[str] = []
    pending = [""]
    while pending:
        rel = pending.pop()
        with os.scandir(src / rel if rel else src) as entries:
            for entry in entries:
                if entry.name.startswith(".") or entry.is_symlink():
                    continue
                path = f"{rel}/{entry.name}" if rel else entry.name
                if entry.is_dir(follow_symlinks=False):
                    if _inode(Path(entry.path)) != skip_id:
                        pending.append(path)
                elif entry.is_file(follow_symlinks=False):
                    (markdown if is_markdown(entry.name) else other).append(path)
    return sorted(markdown), sorted(other)


def _inode(path: Path) -> tuple[int, int] | None:
    try:
        info = path.stat(follow_symlinks=False)
    except OSError:
        return None
    return info.st_dev, info.st_ino


def is_markdown(name: str) -> bool:
    return name.lower().endswith(".md")


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


# --- which file becomes which page -----------------------------------------------------------------------


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


# --- Markdown to HTML ------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=128)
def _lexer(name: str) -> Lexer:
    return get_lexer_by_name(name)


_CODE_FORMATTER = HtmlFormatter(nowrap=True)


def highlight_code(code: str, lang: str, _attrs: str = "") -> str:
    """Pygments-highlighted `<pre>` for a known language; "" lets markdown-it print plain escaped text."""
    if not lang:
        return ""
    try:
        lexer = _lexer(lang.lower())
    except ClassNotFound:
        return ""
    spans = pygments_highlight(code, lexer, _CODE_FORMATTER)
    return f'<pre class="highlight"><code class="language-{html.escape(lang)}">{spans}</code></pre>'


def inline_text(token: Token) -> str:
    """The plain text of an inline token (a heading's words, without markup)."""
    parts: list[str] = []
    for child in token.children or []:
        if child.type in ("text", "code_inline"):
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append(" ")
    return " ".join("".join(parts).split())


class Renderer:
    """Markdown → HTML body, headings (with ids) and title, for one page at a time."""

    def __init__(self, *, allow_html: bool) -> None:
        self.allow_html = allow_html
        self.md = MarkdownIt("commonmark", {"html": allow_html, "highlight": highlight_code})
        self.md.enable(["table", "strikethrough"])
        # Every heading gets GitHub's id, numbered when repeated, never one the layout uses.
        anchors_plugin(self.md, min_level=1, max_level=6, slug_func=doclinks.slug_avoiding(LAYOUT_IDS))

    def render(self, page: Page, text: str, out_of: dict[str, str]) -> None:
        env: dict[str, object] = {}
        tokens = self.md.parse(text, env)
        links = functools.partial(rewrite_link, page_src=page.src, out_of=out_of)
        page.headings, h1, page.links = annotate(tokens, links, raw_html=self.allow_html)
        page.title = h1 or default_title(page)
        body = self.md.renderer.render(tokens, self.md.options, env)
        page.body = dochtml.sanitize(body, links, reserved_ids=LAYOUT_IDS) if self.allow_html else body


def annotate(tokens: list[Token], links: Callable[[str], str], *,
             raw_html: bool = False) -> tuple[list[Heading], str, list[str]]:
    """Read headings (the anchors plugin gave them ids), rewrite links, turn table alignment into classes;
    return (headings, first H1, the links as written, also those of raw HTML when it is kept)."""
    headings: list[Heading] = []
    written: list[str] = []
    first_h1 = ""
    for position, token in enumerate(tokens):
        if token.type == "heading_open":
            text = inline_text(tokens[position + 1])
            heading = Heading(level=int(token.tag[1]), text=text, id=str(token.attrGet("id") or ""))
            headings.append(heading)
            if heading.level == 1 and not first_h1:
                first_h1 = text
        elif token.type in ("th_open", "td_open"):
            _align_class(token)
        elif token.type == "html_block" and raw_html:
            written.extend(dochtml.hrefs(token.content))
        elif token.type == "inline":
            for child in token.children or []:
                if child.type == "link_open":
                    href = str(child.attrGet("href") or "")
                    written.append(href)
                    child.attrSet("href", links(href))
                elif child.type == "html_inline" and raw_html:
                    written.extend(dochtml.hrefs(child.content))
    return headings, first_h1, written


def _align_class(token: Token) -> None:
    """`style="text-align:right"` → `class="ds-align-right"`: the CSP allows no inline style."""
    style = str(token.attrGet("style") or "")
    if token.attrs.pop("style", None) is not None and (match := _ALIGN.fullmatch(style)):
        token.attrSet("class", f"ds-align-{match.group(1)}")


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


def generated_index(pages: list[Page], title: str) -> Page:
    """The root page when the repository has neither README.md nor index.md: a list of every page."""
    items = "".join(f'<li><a href="{link(page.out)}">{text(page.title)}</a></li>' for page in pages)
    body = f"<h1>{text(title)}</h1>\n<ul class=\"ds-page-list\">{items}</ul>\n"
    return Page(src="", out="index.html", title=title, body=body)


# --- navigation ------------------------------------------------------------------------------------------


def natural_key(name: str) -> tuple[list[int | str], str]:
    """Sort `2-b` before `10-a`, case-insensitively, ties broken by the exact name."""
    parts: list[int | str] = [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]
    return parts, name


def build_tree(pages: list[Page]) -> Folder:
    root = Folder(name="")
    for page in pages:
        folder = root
        parts = page.out.split("/")
        for part in parts[:-1]:
            folder = folder.folders.setdefault(part, Folder(name=part))
        if parts[-1] == "index.html":
            folder.index = page
        else:
            folder.pages.append(page)
    _sort_tree(root)
    return root


def _sort_tree(folder: Folder) -> None:
    folder.pages.sort(key=lambda page: natural_key(posixpath.basename(page.src)))
    folder.folders = dict(sorted(folder.folders.items(), key=lambda item: natural_key(item[0])))
    for child in folder.folders.values():
        _sort_tree(child)


def folder_title(folder: Folder) -> str:
    return folder.index.title if folder.index else prettify(folder.name)


def contains(folder: Folder, page: Page | None) -> bool:
    if page is None:
        return False
    if folder.index is page or any(item is page for item in folder.pages):
        return True
    return any(contains(child, page) for child in folder.folders.values())


def relative_url(target: str, from_folder: str) -> str:
    """The shortest relative path from a page in `from_folder` to `target` (both relative to the site root)."""
    here = from_folder.split("/") if from_folder else []
    there = target.split("/")
    common = 0
    while common < min(len(here), len(there) - 1) and here[common] == there[common]:
        common += 1
    return "../" * (len(here) - common) + "/".join(there[common:])


def nav_link(page: Page, label: str, current: Page | None, url: Locator) -> str:
    mark = ' class="ds-current" aria-current="page"' if page is current else ""
    return f'<a href="{link(url(page.out))}"{mark}>{text(label)}</a>'


def nav_items(folder: Folder, current: Page | None, url: Locator) -> Iterator[str]:
    for page in folder.pages:
        yield f"<li>{nav_link(page, page.title, current, url)}</li>"
    for child in folder.folders.values():
        label = folder_title(child)
        head = (nav_link(child.index, label, current, url) if child.index
                else f'<span class="ds-section-title">{text(label)}</span>')
        active = " ds-active" if contains(child, current) else ""
        inner = "".join(nav_items(child, current, url))
        yield f'<li class="ds-section{active}">{head}<ul>{inner}</ul></li>'


def nav_html(tree: Folder, current: Page | None, url: Locator) -> str:
    home = f"<li>{nav_link(tree.index, tree.index.title, current, url)}</li>" if tree.index else ""
    return f'<ul class="ds-tree">{home}{"".join(nav_items(tree, current, url))}</ul>'


def toc_html(headings: list[Heading]) -> str:
    entries = [heading for heading in headings if heading.level in (2, 3)]
    if not entries:
        return ""
    items = "".join(f'<li class="ds-toc-h{heading.level}"><a href="#{attr(heading.id)}">{text(heading.text)}</a></li>'
                    for heading in entries)
    return (f'<nav class="ds-toc" aria-labelledby="ds-toc-title"><p class="ds-toc-title" id="ds-toc-title">'
            f"On this page</p><ul>{items}</ul></nav>")


# --- page templates --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Site:
    title: str
    tree: Folder
    icon: str


def text(value: str) -> str:
    return html.escape(value, quote=False)


def attr(value: str) -> str:
    return html.escape(value, quote=True)


def link(path: str) -> str:
    """An href attribute value for a site path: percent-encoded (`#`, `?`, spaces in file names), escaped."""
    return attr(quote(path))


def document_title(page_title: str, site_title: str) -> str:
    return site_title if page_title == site_title else f"{page_title} – {site_title}"


def page_html(site: Site, page: Page) -> str:
    folder = posixpath.dirname(page.out)
    return layout(site, current=page, root="../" * page.depth, url=lambda target: relative_url(target, folder),
                  title=document_title(page.title, site.title), body=page.body, toc=toc_html(page.headings))


def not_found_html(site: Site) -> str:
    """Served by nginx for any missing path, at any depth: so its links are absolute from the site root."""
    body = ("<h1>Page not found</h1>\n<p>There is no page at this address. It may have been moved or renamed.</p>\n"
            '<p>Try the search box, or go back to the <a href="/index.html">home page</a>.</p>\n')
    return layout(site, current=None, root="/", url=lambda target: "/" + target,
                  title=document_title("Page not found", site.title), body=body, toc="")


def layout(site: Site, *, current: Page | None, root: str, url: Locator, title: str, body: str, toc: str) -> str:
    """The HTML around a page body; `root` leads from the page to the site root, `url` maps site paths."""
    home = link(url("index.html"))
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="{attr(CSP)}">
<title>{text(title)}</title>
<link rel="icon" href="{link(url(site.icon))}">
<link rel="stylesheet" href="{link(url(STYLESHEET))}">
<script src="{link(url(SCRIPT))}" defer></script>
</head>
<body data-root="{attr(root)}">
<a class="ds-skip" href="#ds-content">Skip to content</a>
<div class="ds-layout">
<aside class="ds-sidebar">
<div class="ds-brand"><a class="ds-site-title" href="{home}">{text(site.title)}</a>
<button class="ds-menu-button" id="ds-menu-button" type="button" aria-expanded="false"
 aria-controls="ds-nav">Menu</button>
</div>
<div class="ds-search" role="search">
<input id="ds-search" type="search" placeholder="Search…" aria-label="Search the documentation" autocomplete="off">
<ul id="ds-results" class="ds-results" hidden></ul>
</div>
<nav id="ds-nav" class="ds-nav" aria-label="Pages">{nav_html(site.tree, current, url)}</nav>
</aside>
<main id="ds-content" class="ds-main">
<div class="ds-page{" ds-has-toc" if toc else ""}">
{toc}
<article class="ds-article">
{body}
</article>
</div>
</main>
</div>
</body>
</html>
"""


# --- assets ----------------------------------------------------------------------------------------------


def asset_text(name: str) -> str:
    return resources.files("minipaas").joinpath("docsite_assets", name).read_text(encoding="utf-8")


def code_stylesheet() -> str:
    """Pygments token colours: a light style, and a dark one for browsers that prefer dark."""
    light = HtmlFormatter(style=_LIGHT_CODE_STYLE).get_token_style_defs(".highlight")
    dark = HtmlFormatter(style=_DARK_CODE_STYLE).get_token_style_defs(".highlight")
    return ("/* Code highlighting: Pygments */\n" + "\n".join(light) + "\n@media (prefers-color-scheme: dark) {\n"
            + "\n".join(f"  {line}" for line in dark) + "\n}\n")


def search_index(pages: list[Page]) -> str:
    entries = [{"title": page.title, "url": quote(page.out),
                "headings": [{"text": heading.text, "id": heading.id} for heading in page.headings
                             if heading.level in (2, 3)]}
               for page in sorted(pages, key=lambda page: page.out)]
    return json.dumps(entries, ensure_ascii=False, sort_keys=True, separators=(",", ":")) + "\n"


def write_assets(out: Path, pages: list[Page]) -> None:
    write_text(out / STYLESHEET, asset_text("docsite.css") + "\n" + code_stylesheet())
    write_text(out / SCRIPT, asset_text("search.js"))
    write_text(out / FAVICON, asset_text("favicon.svg"))
    write_text(out / SEARCH_INDEX, search_index(pages))
