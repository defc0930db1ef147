"""A docs site's pages around their content: the sidebar from the folder tree, each page's table of
contents, the layout, the 404 page, and the assets (theme, code styles, search index and script)."""

from __future__ import annotations

import html
import json
import posixpath
import re
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from urllib.parse import quote

from pygments.formatters import HtmlFormatter

from minipaas.build.docsite.files import write_text
from minipaas.build.docsite.model import (
    CSP,
    FAVICON,
    SCRIPT,
    SEARCH_INDEX,
    STYLESHEET,
    Folder,
    Heading,
    Locator,
    Page,
    prettify,
)


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


def asset_text(name: str) -> str:
    return resources.files("minipaas.build.docsite").joinpath("assets", name).read_text(encoding="utf-8")


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


_LIGHT_CODE_STYLE = "default"


_DARK_CODE_STYLE = "github-dark"


def generated_index(pages: list[Page], title: str) -> Page:
    """The root page when the repository has neither README.md nor index.md: a list of every page."""
    items = "".join(f'<li><a href="{link(page.out)}">{text(page.title)}</a></li>' for page in pages)
    body = f"<h1>{text(title)}</h1>\n<ul class=\"ds-page-list\">{items}</ul>\n"
    return Page(src="", out="index.html", title=title, body=body)
