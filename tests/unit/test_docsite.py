"""Markdown docs sites (minipaas.build.docsite.site and its doc*.py): a tree of .md files rendered into static HTML,
in temp dirs only."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from minipaas.build.docsite.files import rewrite_link
from minipaas.build.docsite.links import slugify
from minipaas.build.docsite.pages import relative_url
from minipaas.build.docsite.site import render_site
from minipaas.errors import BuildFailed


def make_tree(root: Path, files: dict[str, str | bytes]) -> Path:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    return root


def render(tmp_path: Path, files: dict[str, str | bytes], *, title: str = "Site",
           allow_html: bool = False) -> tuple[Path, int]:
    src = make_tree(tmp_path / "src", files)
    out = tmp_path / "out"
    return out, render_site(src, out, title=title, allow_html=allow_html)


def read(out: Path, rel: str) -> str:
    return (out / rel).read_text(encoding="utf-8")


def article(page: str) -> str:
    return page.split('<article class="ds-article">', 1)[1].split("</article>", 1)[0]


def nav(page: str) -> str:
    return page.split('<nav id="ds-nav"', 1)[1].split("</nav>", 1)[0]


def files_under(root: Path) -> set[str]:
    return {path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file()}


SAMPLE = {
    "README.md": "# Welcome\n\nStart with [installing](guide/install.md).\n",
    "guide/README.md": "# The guide\n\nRead [install](install.md#requirements).\n",
    "guide/install.md": "# Installing\n\n## Requirements\n\n## Steps\n\n### Docker\n",
    "guide/deep/02-more_things.md": "Some words, no heading.\n",
    "faq.md": "# FAQ\n",
    "img/logo.png": b"\x89PNG fake",
}


# --- pages and their paths ---------------------------------------------------------------------------------


def test_each_markdown_file_becomes_a_page_and_readme_becomes_index(tmp_path: Path) -> None:
    out, count = render(tmp_path, SAMPLE)
    assert count == 5
    assert files_under(out) == {
        "index.html", "faq.html", "guide/index.html", "guide/install.html", "guide/deep/02-more_things.html",
        "img/logo.png", "404.html",
        "assets/docsite.css", "assets/search.js", "assets/search-index.json", "assets/favicon.svg",
    }
    assert (out / "img/logo.png").read_bytes() == b"\x89PNG fake"
    assert "<h1 id=\"welcome\">Welcome</h1>" in read(out, "index.html")


def test_index_md_is_the_folder_index_and_wins_over_readme(tmp_path: Path) -> None:
    out, count = render(tmp_path, {
        "index.md": "# Home\n\nSee [the readme](README.md) and [docs](docs/index.md).\n",
        "README.md": "# Readme\n",
        "docs/index.md": "# Docs\n",
    })
    assert count == 3
    assert "<h1 id=\"home\">Home</h1>" in read(out, "index.html")
    assert "<h1 id=\"readme\">Readme</h1>" in read(out, "README.html")
    body = article(read(out, "index.html"))
    assert '<a href="README.html">the readme</a>' in body
    assert '<a href="docs/index.html">docs</a>' in body


def test_an_index_page_is_generated_when_the_root_has_no_readme(tmp_path: Path) -> None:
    out, count = render(tmp_path, {"a.md": "# Alpha\n", "sub/b.md": "# Beta\n"}, title="My docs")
    assert count == 3
    index = read(out, "index.html")
    assert "<title>My docs</title>" in index
    body = article(index)
    assert '<a href="a.html">Alpha</a>' in body
    assert '<a href="sub/b.html">Beta</a>' in body


def test_page_titles_come_from_the_first_h1_else_the_file_name(tmp_path: Path) -> None:
    out, _ = render(tmp_path, {**SAMPLE, "guide/getting-started.md": "text\n\n# Later H1\n\n# Second H1\n"},
                    title="Docs")
    assert "<title>Installing – Docs</title>" in read(out, "guide/install.html")
    assert "<title>More things – Docs</title>" in read(out, "guide/deep/02-more_things.html")
    assert "<title>Later H1 – Docs</title>" in read(out, "guide/getting-started.html")


def test_site_title_and_page_titles_are_escaped(tmp_path: Path) -> None:
    out, _ = render(tmp_path, {"README.md": "# a <b> & c\n"}, title="<Docs>")
    page = read(out, "index.html")
    assert "<title>a &lt;b&gt; &amp; c – &lt;Docs&gt;</title>" in page
    assert "<Docs>" not in page


# --- links ------------------------------------------------------------------------------------------------


def test_links_between_markdown_files_are_rewritten(tmp_path: Path) -> None:
    out, _ = render(tmp_path, {
        "README.md": "\n".join([
            "[a](guide/install.md)", "[b](guide/install.md#requirements)", "[c](guide/README.md)",
            "[d](./faq.md?x=1#top)", "[e](<my page.md>)", "[f](https://example.com/x.md)", "[g](//cdn.example/x.md)",
            "[h](mailto:me@example.com)", "[i](#local)", "[j](img/logo.png)", "![k](img/logo.png)",
            "[l](missing/README.md)", "[m](/guide/install.md)",
        ]) + "\n",
        "guide/README.md": "[up](../README.md) [sibling](install.md#steps)\n",
        "guide/install.md": "# Installing\n",
        "faq.md": "# FAQ\n",
        "my page.md": "# Mine\n",
        "img/logo.png": b"png",
    })
    body = article(read(out, "index.html"))
    for expected in ['<a href="guide/install.html">a</a>', '<a href="guide/install.html#requirements">b</a>',
                     '<a href="guide/index.html">c</a>', '<a href="./faq.html?x=1#top">d</a>',
                     '<a href="my%20page.html">e</a>', '<a href="https://example.com/x.md">f</a>',
                     '<a href="//cdn.example/x.md">g</a>', '<a href="mailto:me@example.com">h</a>',
                     '<a href="#local">i</a>', '<a href="img/logo.png">j</a>', '<img src="img/logo.png" alt="k"',
                     '<a href="missing/index.html">l</a>', '<a href="/guide/install.html">m</a>']:
        assert expected in body
    guide = article(read(out, "guide/index.html"))
    assert '<a href="../index.html">up</a>' in guide
    assert '<a href="install.html#steps">sibling</a>' in guide
    assert (out / "my page.html").is_file()


@pytest.mark.parametrize(("href", "expected"), [
    ("x.md", "x.html"),
    ("x.md#frag", "x.html#frag"),
    ("dir/README.md", "dir/index.html"),
    ("dir/index.md#a", "dir/index.html#a"),
    ("../x.MD", "../x.html"),
    ("x.markdown", "x.markdown"),
    ("https://host/x.md", "https://host/x.md"),
    ("//host/x.md", "//host/x.md"),
    ("#x.md", "#x.md"),
    ("", ""),
])
def test_rewrite_link(href: str, expected: str) -> None:
    assert rewrite_link(href, "page.md", {}) == expected


# --- sidebar, table of contents, search -------------------------------------------------------------------


def test_sidebar_lists_the_folder_tree_and_marks_the_current_page(tmp_path: Path) -> None:
    out, _ = render(tmp_path, SAMPLE)
    sidebar = nav(read(out, "guide/install.html"))
    assert re.findall(r'<a href="([^"]+)"', sidebar) == [
        "../index.html", "../faq.html", "index.html", "install.html", "deep/02-more_things.html",
    ]
    assert '<a href="install.html" class="ds-current" aria-current="page">Installing</a>' in sidebar
    assert sidebar.count("aria-current") == 1
    assert '<li class="ds-section ds-active"><a href="index.html">The guide</a>' in sidebar
    assert '<span class="ds-section-title">Deep</span>' in sidebar

    deep = nav(read(out, "guide/deep/02-more_things.html"))
    assert '<a href="../../index.html">Welcome</a>' in deep
    assert '<a href="02-more_things.html" class="ds-current" aria-current="page">More things</a>' in deep

    root = read(out, "index.html")
    assert '<a href="index.html" class="ds-current" aria-current="page">Welcome</a>' in nav(root)
    assert 'href="assets/docsite.css"' in root
    assert 'href="../../assets/docsite.css"' in read(out, "guide/deep/02-more_things.html")


def test_headings_get_unique_ids_and_h2_h3_make_the_table_of_contents(tmp_path: Path) -> None:
    markdown = "# Top\n\n## Set up\n\n### Set up\n\n## Set up\n\n#### Deep\n\n## `code` & Co.\n"
    out, _ = render(tmp_path, {"README.md": markdown})
    page = read(out, "index.html")
    body = article(page)
    for heading in ['<h1 id="top">', '<h2 id="set-up">', '<h3 id="set-up-1">', '<h2 id="set-up-2">',
                    '<h4 id="deep">', '<h2 id="code--co">']:
        assert heading in body
    toc = page.split('<nav class="ds-toc"', 1)[1].split("</nav>", 1)[0]
    assert re.findall(r'href="#([^"]+)"', toc) == ["set-up", "set-up-1", "set-up-2", "code--co"]
    assert '<li class="ds-toc-h3"><a href="#set-up-1">Set up</a></li>' in toc


@pytest.mark.parametrize(("target", "folder", "expected"), [
    ("index.html", "", "index.html"),
    ("a/b.html", "a", "b.html"),
    ("index.html", "a/b", "../../index.html"),
    ("a/x/y.html", "a/b", "../x/y.html"),
    ("ab/c.html", "a", "../ab/c.html"),
    ("a/index.html", "a", "index.html"),
])
def test_relative_url(target: str, folder: str, expected: str) -> None:
    assert relative_url(target, folder) == expected


def test_heading_ids_never_repeat_the_layout_ids(tmp_path: Path) -> None:
    out, _ = render(tmp_path, {"README.md": "# Home\n\n## ds search\n"})
    page = read(out, "index.html")
    assert '<h2 id="ds-search-1">ds search</h2>' in page
    assert page.count('id="ds-search"') == 1


def test_slugify_keeps_unicode_letters() -> None:
    assert slugify("Héllo, Wörld!") == "héllo-wörld"
    assert slugify("!!!") == "section"


def test_search_index_lists_titles_and_headings_with_root_relative_urls(tmp_path: Path) -> None:
    out, _ = render(tmp_path, SAMPLE)
    index = json.loads(read(out, "assets/search-index.json"))
    by_url = {entry["url"]: entry for entry in index}
    assert set(by_url) == {"index.html", "faq.html", "guide/index.html", "guide/install.html",
                           "guide/deep/02-more_things.html"}
    assert by_url["guide/install.html"] == {
        "title": "Installing", "url": "guide/install.html",
        "headings": [{"text": "Requirements", "id": "requirements"}, {"text": "Steps", "id": "steps"},
                     {"text": "Docker", "id": "docker"}],
    }
    script = read(out, "assets/search.js")
    assert "assets/search-index.json" in script
    assert 'data-root="../"' in read(out, "guide/install.html")


def test_not_found_page_has_the_sidebar(tmp_path: Path) -> None:
    out, _ = render(tmp_path, SAMPLE, title="Docs")
    page = read(out, "404.html")
    assert "<title>Page not found – Docs</title>" in page
    assert "Page not found</h1>" in page
    # nginx serves it for missing paths at any depth: links start at the site root
    assert '<a href="/guide/install.html">Installing</a>' in nav(page)
    assert 'href="/assets/docsite.css"' in page
    assert "aria-current" not in page


# --- Markdown features ------------------------------------------------------------------------------------


def test_tables_render_with_alignment_classes_and_no_inline_style(tmp_path: Path) -> None:
    out, _ = render(tmp_path, {"README.md": "| a | b |\n|:--|--:|\n| 1 | 2 |\n\n~~gone~~\n"})
    body = article(read(out, "index.html"))
    assert "<table>" in body
    assert '<th class="ds-align-left">a</th>' in body
    assert '<td class="ds-align-right">2</td>' in body
    assert "style=" not in body
    assert "<s>gone</s>" in body


def test_fenced_code_is_highlighted_by_pygments(tmp_path: Path) -> None:
    out, _ = render(tmp_path, {"README.md": "```python\ndef f():\n    return 1\n```\n\n```nope-lang\n<b>x</b>\n```\n"})
    body = article(read(out, "index.html"))
    assert '<pre class="highlight"><code class="language-python"><span class="k">def</span>' in body
    assert '<span class="nf">f</span>' in body
    assert '<pre><code class="language-nope-lang">&lt;b&gt;x&lt;/b&gt;\n</code></pre>' in body
    css = read(out, "assets/docsite.css")
    assert ".highlight .k " in css
    assert "prefers-color-scheme: dark" in css


def test_theme_loads_nothing_from_elsewhere(tmp_path: Path) -> None:
    out, _ = render(tmp_path, SAMPLE)
    css = read(out, "assets/docsite.css")
    assert "@import" not in css
    assert "url(" not in css
    assert "@font-face" not in css
    page = read(out, "guide/install.html")
    for tag in re.findall(r"<(?:link|script)\b[^>]*>", page):
        assert "http" not in tag and "//" not in tag
    assert "script-src 'self'" in page.replace("&#x27;", "'")


def test_non_utf8_markdown_is_decoded_with_replacement(tmp_path: Path) -> None:
    out, _ = render(tmp_path, {"README.md": b"# Caf\xe9\n\nok\n"})
    assert "Caf\ufffd" in read(out, "index.html")


# --- untrusted repositories -------------------------------------------------------------------------------


HOSTILE = "<script>alert(1)</script>\n\n<img src=x onerror=alert(1)>\n\n[x](javascript:alert(1))\n"


def test_raw_html_is_escaped_by_default(tmp_path: Path) -> None:
    out, _ = render(tmp_path, {"README.md": HOSTILE})
    body = article(read(out, "index.html"))
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    assert "&lt;img src=x onerror=alert(1)&gt;" in body
    assert "<script" not in body
    assert "<img" not in body
    assert "<a " not in body
    assert "[x](javascript:alert(1))" in body


def test_allowed_html_is_sanitized(tmp_path: Path) -> None:
    out, _ = render(tmp_path, {
        "README.md": HOSTILE + '\n<a href="javascript:alert(2)">j</a> <a href="other.md" onclick="x()">o</a>\n\n'
                     "<details><summary>More</summary>\n\nhidden *text*\n\n</details>\n\n"
                     '<p style="color:red">styled</p><iframe src="https://evil.example"></iframe>\n\n'
                     "## Heading\n\n```python\nx = 1\n```\n",
        "other.md": "# Other\n",
    }, allow_html=True)
    body = article(read(out, "index.html"))
    lowered = body.lower()
    for banned in ("<script", "alert(1)<", "onerror", "onclick", 'href="javascript', "<iframe", "style="):
        assert banned not in lowered
    assert "<p>[x](javascript:alert(1))</p>" in body  # text, not a link
    assert '<img src="x">' in body
    assert '<a href="other.html">o</a>' in body
    assert "<details><summary>More</summary>" in body
    assert "<em>text</em>" in body
    assert '<h2 id="heading">Heading</h2>' in body
    assert '<span class="n">x</span>' in body


def test_javascript_links_are_never_live(tmp_path: Path) -> None:
    for allow_html in (False, True):
        out, _ = render(tmp_path / str(allow_html), {
            "README.md": "[x](javascript:alert(1)) [y](JAVASCRIPT:alert(1)) [z][r]\n\n[r]: javascript:void(0)\n",
        }, allow_html=allow_html)
        body = article(read(out, "index.html")).lower()
        assert "<a " not in body
        assert "href" not in body


def test_symlinks_are_never_followed_nor_copied(tmp_path: Path) -> None:
    secret = tmp_path / "host"
    (secret / "folder").mkdir(parents=True)
    (secret / "secret.md").write_text("# TOP SECRET\n")
    (secret / "folder" / "inner.md").write_text("# INNER SECRET\n")
    (secret / "key.pem").write_text("PRIVATE KEY")
    src = make_tree(tmp_path / "src", {"README.md": "# Home\n\n[s](leak.md)\n", "docs/page.md": "# Page\n"})
    os.symlink(secret / "secret.md", src / "leak.md")
    os.symlink(secret / "folder", src / "docs" / "linked")
    os.symlink(secret / "key.pem", src / "key.pem")
    os.symlink(secret, src / "all")
    out = tmp_path / "out"
    assert render_site(src, out, title="Site") == 2
    assert files_under(out) - {p for p in files_under(out) if p.startswith("assets/")} == {
        "index.html", "docs/page.html", "404.html"}
    everything = "".join(path.read_text(errors="replace") for path in out.rglob("*") if path.is_file())
    assert "SECRET" not in everything
    assert "PRIVATE KEY" not in everything
    assert not any(path.is_symlink() for path in out.rglob("*"))


def test_hidden_folders_and_files_are_skipped(tmp_path: Path) -> None:
    out, count = render(tmp_path, {"README.md": "# Home\n", ".git/HEAD.md": "# git\n", ".env": "TOKEN=1",
                                   "docs/.hidden/x.md": "# hidden\n", "docs/.secret.png": b"x"})
    assert count == 1
    assert {p for p in files_under(out) if not p.startswith("assets/")} == {"index.html", "404.html"}


def test_output_inside_the_source_is_not_rendered_again(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src", {"README.md": "# Home\n", "a.md": "# A\n"})
    out = src / "_site"
    assert render_site(src, out, title="Site") == 2
    assert render_site(src, out, title="Site") == 2
    assert not (out / "_site").exists()
    with pytest.raises(BuildFailed):
        render_site(src, src, title="Site")
    with pytest.raises(BuildFailed):
        render_site(src / "nope", tmp_path / "x", title="Site")


# --- whole sites ------------------------------------------------------------------------------------------


def test_identical_input_gives_identical_output(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src", {**SAMPLE, "b/z.md": "# Z\n", "b/a.md": "# A\n", "c.md": "```js\nx\n```\n"})
    first, second = tmp_path / "one", tmp_path / "two"
    render_site(src, first, title="Site")
    render_site(src, second, title="Site")
    assert files_under(first) == files_under(second)
    for rel in files_under(first):
        assert (first / rel).read_bytes() == (second / rel).read_bytes(), rel


def test_two_hundred_pages_render(tmp_path: Path) -> None:
    files: dict[str, str | bytes] = {"README.md": "# Home\n"}
    for number in range(199):
        files[f"section{number % 10}/page{number}.md"] = (
            f"# Page {number}\n\n## Usage\n\nSee [home](../README.md) and [next](page{number + 10}.md).\n\n"
            "| a | b |\n|---|---|\n| 1 | 2 |\n\n```python\nprint('hello')\n```\n"
        )
    out, count = render(tmp_path, files)
    assert count == 200
    assert len([path for path in out.rglob("*.html") if path.name != "404.html"]) == 200
    assert len(json.loads(read(out, "assets/search-index.json"))) == 200
    page = read(out, "section3/page13.html")
    assert '<a href="page13.html" class="ds-current" aria-current="page">Page 13</a>' in page
    assert '<a href="page23.html">next</a>' in page


# --- written for GitHub --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("heading", "slug"), [
    ("Getting Started", "getting-started"),
    ("Files & folders", "files--folders"),
    ("What's new in v2.0?", "whats-new-in-v20"),
    ("snake_case and kebab-case", "snake_case-and-kebab-case"),
    ("Überblick: Größe", "überblick-größe"),
    ("日本語の見出し", "日本語の見出し"),
    ("C++ / C#", "c--c"),
    ("`render()` returns HTML", "render-returns-html"),
])
def test_heading_ids_are_githubs(tmp_path: Path, heading: str, slug: str) -> None:
    out, _ = render(tmp_path, {"README.md": f"# Top\n\n## {heading}\n"})
    assert f'<h2 id="{slug}">' in article(read(out, "index.html"))


def test_raw_html_is_sanitized_with_githubs_allowlist(tmp_path: Path) -> None:
    out, _ = render(tmp_path, {"README.md": (
        '<h1 align="center"><img src="logo.png" width="80" onerror="x()"></h1>\n\n'
        '<p align="right"><kbd>Ctrl</kbd> H<sub>2</sub>O x<sup>2</sup> <a id="here"></a><a name="there"></a></p>\n\n'
        '<picture><source srcset="dark.png" media="(prefers-color-scheme: dark)"><img src="light.png"></picture>\n\n'
        "<details open><summary>More</summary>\n\nText\n\n</details>\n\n"
        '<table><tr><td align="right" style="color:red">1</td></tr></table>\n\n'
        '<style>body{display:none}</style>\n\n<form action="/x"><input name="q"></form>\n\n'
        '<div id="ds-search">hijack</div> <a href="JaVaScRiPt:alert(1)">j</a> <a href="vbscript:x">v</a>\n\n'
        "<svg><script>alert(1)</script></svg>\n"
    )}, allow_html=True)
    body = article(read(out, "index.html"))
    for kept in ('<h1 align="center"><img src="logo.png" width="80"></h1>', '<p align="right">', "<kbd>Ctrl</kbd>",
                 "H<sub>2</sub>O", "x<sup>2</sup>", '<a id="here"></a>', '<a name="there"></a>',
                 '<picture><source srcset="dark.png" media="(prefers-color-scheme: dark)"><img src="light.png">',
                 "<details open=\"\"><summary>More</summary>", '<td align="right">1</td>'):
        assert kept in body, kept
    lowered = body.lower()
    for gone in ("onerror", "style", "display:none", "<form", "<input", "javascript", "vbscript", "<svg",
                 "alert", 'id="ds-search"'):
        assert gone not in lowered, gone
    assert "hijack" in body  # the text stays, its layout id goes


def test_links_to_raw_html_anchors_and_github_ids_are_not_broken(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src", {
        "README.md": ('<a id="start"></a>\n\n# Home\n\n[a](#start) [b](#legacy) [c](guide.md#files--folders) '
                      "[d](guide.md#setup-1) [e](#top) [f](img/x.png) [g](guide/) [h](https://example.com/#nope)\n\n"
                      '<a name="legacy"></a>\n'),
        "guide.md": "# Guide\n\n## Setup\n\n## Setup\n\n## Files & folders\n\n[i](README.md#home)\n",
        "guide/notes.txt": "notes",
        "img/x.png": b"png",
    })
    from minipaas.build.docsite.site import render_docs

    rendered = render_docs(src, tmp_path / "out", title="T", allow_html=True)
    assert rendered.broken == []
    escaped = render_docs(src, tmp_path / "out2", title="T", allow_html=False)  # raw anchors are text then
    assert sorted(str(link) for link in escaped.broken) == [
        "README.md links to #legacy, which does not exist", "README.md links to #start, which does not exist"]


def test_broken_links_between_pages_are_listed(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src", {
        "README.md": "# Home\n\n[a](missing.md) [b](guide/setup.md#nope) [c](#nowhere) [d](../outside.md)\n\n"
                     '<a href="guide/setup.md#install-9">raw</a>\n',
        "guide/setup.md": "# Setup\n\n## Install\n\n[e](../README.md#home) [f](../img/gone.png)\n",
    })
    from minipaas.build.docsite.site import render_docs

    rendered = render_docs(src, tmp_path / "out", title="T", allow_html=True)
    assert [str(link) for link in rendered.broken] == [
        "README.md links to missing.md, which does not exist",
        "README.md links to guide/setup.md#nope, which does not exist",
        "README.md links to #nowhere, which does not exist",
        "README.md links to ../outside.md, which does not exist",
        "README.md links to guide/setup.md#install-9, which does not exist",
        "guide/setup.md links to ../img/gone.png, which does not exist",
    ]


def test_raw_html_keeps_no_javascript_url_in_any_attribute_that_holds_one(tmp_path: Path) -> None:
    # nh3 checks href and src; GitHub's filter also longdesc and cite, and a srcset holds URLs too.
    hostile = ('<img src="a.png" longdesc="javascript:alert(1)" srcset="javascript:alert(1) 1x, b.png 2x">\n'
               '<blockquote cite="JaVaScRiPt:alert(1)">q</blockquote> <q cite=" javascript:x">q</q>\n'
               '<del cite="vbscript:x">d</del> <ins cite="java&#x09;script:x">i</ins>\n'
               '<picture><source srcset="data:text/html,x 1x"></picture> <div itemtype="javascript:x">d</div>\n')
    honest = ('<img src="c.png" longdesc="https://example.test/d" srcset="e.png 1x, https://example.test/f.png 2x">'
              '<blockquote cite="g.html">q</blockquote><div itemtype="https://schema.org/Thing">t</div>')
    out, _ = render(tmp_path, {"README.md": hostile + "\n" + honest + "\n"}, allow_html=True)
    body = article(read(out, "index.html"))
    for gone in ("javascript", "vbscript", "data:text"):
        assert gone not in body.lower(), gone
    for kept in ('longdesc="https://example.test/d"', 'srcset="e.png 1x, https://example.test/f.png 2x"',
                 'cite="g.html"', 'itemtype="https://schema.org/Thing"', 'src="a.png"'):
        assert kept in body, kept
