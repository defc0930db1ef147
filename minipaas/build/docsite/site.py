"""Markdown docs sites: a repository of `.md` files becomes a folder of static HTML that nginx serves.

This module is the entry point (`render_docs`): everything between a checked-out tree of Markdown files
and that folder, in steps kept in their own modules: reading the repository and which file becomes which
page (`a/b.md` → `a/b.html`, a folder's README.md or index.md → its `index.html`) and rewriting links
between pages, files.py; rendering (CommonMark through markdown-it-py, with tables and strikethrough,
fenced code highlighted by Pygments), render.py; the sidebar built from the folder tree, each page's
table of contents, the search index and its script, the theme and the 404 page, pages.py; pages,
headings and the site's CSP, model.py. Heading ids and the check of links between pages are
links.py's; what raw HTML may keep is html.py's.

The repository is untrusted: raw HTML in Markdown is sanitized as GitHub does (or, when asked, escaped),
`javascript:` links are never live, every page carries a Content-Security-Policy that forbids inline
scripts, and symlinks and hidden entries are never read nor copied, so a link cannot expose host files.
Deciding *when* an app is a docs site and configuring nginx are not done here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from minipaas.build.docsite import links
from minipaas.build.docsite.files import copy_file, map_pages, read_text, scan, write_text
from minipaas.build.docsite.links import BrokenLink
from minipaas.build.docsite.model import FAVICON, GENERATED, NOT_FOUND
from minipaas.build.docsite.pages import Site, build_tree, generated_index, not_found_html, page_html, write_assets
from minipaas.build.docsite.render import Renderer
from minipaas.errors import BuildFailed

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
    broken = links.broken_links(
        [links.PageLinks(page.src, tuple(page.links), frozenset(links.html_anchors(page.body)))
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


# --- Markdown to HTML ------------------------------------------------------------------------------------


# --- navigation ------------------------------------------------------------------------------------------


# --- page templates --------------------------------------------------------------------------------------


# --- assets ----------------------------------------------------------------------------------------------


