"""Property-based tests (Hypothesis) of what a static or Markdown site's deploy reads: Markdown pages (with raw
HTML kept sanitized, as GitHub does, or escaped) and the tar archives a site's files arrive in (git archive of the
commit, the built image's output folder). Whatever they hold: no script, event handler, style or `javascript:`
URL reaches a page, however it is spelled (entities, tabs, case, leading blanks); a tar entry writes a regular
file or folder under the release folder where its name says, or nothing (links, devices, `..`, absolute paths),
and nothing outside it; a refusal is one line. Pure functions and temporary folders: no engine."""

from __future__ import annotations

import html.parser
import io
import json
import os
import re
import shutil
import stat
import tarfile
import tempfile
from pathlib import Path, PurePosixPath

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from minipaas.build import sitebuild
from minipaas.build.docsite import html as dochtml
from minipaas.build.docsite import site
from minipaas.build.docsite.model import LAYOUT_IDS, Page
from minipaas.build.docsite.render import Renderer
from minipaas.errors import MinipaasError
from minipaas.routing import sites
from tests.helpers.host import assert_one_line_refusal

SOME = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -- Markdown ------------------------------------------------------------------------------------------------

ATTACKS = [
    "<script>alert(1)</script>", "<SCRIPT SRC=//evil.test/x.js></SCRIPT>", "<img src=x onerror=alert(1)>",
    '<a href="javascript:alert(1)">x</a>', '<a href="jav&#x09;ascript:alert(1)">x</a>', '<a href=" javascript:x">y</a>',
    '<a href="java\tscript:alert(1)//x.md">y</a>', "<a href='JaVaScRiPt:alert(1)'>y</a>",
    '<a href="&#106;avascript:alert(1)">y</a>', '<a href="\x01javascript:alert(1)">y</a>', "<svg onload=alert(1)>",
    "<style>body{display:none}</style>", '<div style="color:red">x</div>', "<iframe src=//evil.test></iframe>",
    "<object data=x></object>", '<meta http-equiv=refresh content="0;url=javascript:alert(1)">',
    "<base href=//evil.test/>", "<form action=javascript:alert(1)><button>go</button></form>",
    "<details open ontoggle=alert(1)><summary>s</summary></details>", '<math><mi xlink:href="javascript:alert(1)">',
    "<!-- <script>alert(1)</script> -->", "<![CDATA[<script>alert(1)</script>]]>", '<a href="vbscript:msgbox(1)">y</a>',
    '<a href="data:text/html,<script>alert(1)</script>">y</a>', '<img src="data:image/svg+xml,<svg onload=alert(1)>">',
    '<img srcset="javascript:alert(1) 1x, x.png 2x">', '<a href="file:///etc/passwd">y</a>',
    '<noscript><p title="</noscript><img src=x onerror=alert(1)>">', "<textarea><script>alert(1)</script>",
    "<template><script>alert(1)</script></template>", '<a href="page.md" onclick="alert(1)">p</a>',
    '<a id="ds-content" name="ds-search">x</a>', '<p id="ds-nav">x</p>', '<img src=x.png alt="a" width=1>',
    "[x](javascript:alert(1))", "[x](<javascript:alert(1)>)", "[x](JAVASCRIPT:alert(1))", "[x]( javascript:alert(1))",
    "[x](java%0ascript:alert(1))", "[x](&#106;avascript:alert(1))", "<javascript:alert(1)>", "<mailto:a@b.test>",
    "![i](javascript:alert(1))", "![i](data:image/png;base64,AAAA)", "[r]: javascript:alert(1)\n\n[x][r]",
    "[x](page.md)", "[x](../up.md#h)", "[x](javascript:alert(1).md)", "[x](<java\tscript:x.md>)",
    '[x](a.md "t\\" onclick=alert(1)")', "```js\n</code><script>alert(1)</script>\n```",
    '```"><script>alert(1)</script>\nx\n```', "``` onload=alert(1)\nx\n```", "# <script>h</script>",
    "# ds-content", "## Search", "| a | b |\n|:-|-:|\n| <script>x</script> | `y` |", "~~x~~", "</div></article>",
    "\x00", "\u2028", "&lt;script&gt;", "&#0;", "<https://example.test/a?b=<c>>",
    '<img src=a.png longdesc="javascript:alert(1)">', '<blockquote cite="java&#x0A;script:x">q</blockquote>',
    '<q cite=" vbscript:x">q</q>', '<div itemtype="javascript:x">d</div>', '<source srcset="data:text/html,x">',
]
TEXT = st.text(st.sampled_from([*"ab <>&\"'`=:/#[]()!*_-\n\t", "é", "\u00a0", "\x0b"]), max_size=20)
MARKDOWN = st.lists(st.one_of(st.sampled_from(ATTACKS), TEXT), max_size=6).flatmap(
    lambda parts: st.lists(st.sampled_from(["", " ", "\n", "\n\n"]), min_size=len(parts), max_size=len(parts)).map(
        lambda seps: "".join(sep + part for sep, part in zip(seps, parts, strict=True))))

# What markdown-it and Pygments write (the page's own markup), and what raw HTML may add when sanitized.
MARKDOWN_TAGS = {"p", "h1", "h2", "h3", "h4", "h5", "h6", "a", "img", "pre", "code", "em", "strong", "ul", "ol",
                 "li", "blockquote", "hr", "br", "table", "thead", "tbody", "tr", "th", "td", "s", "span"}
URL_ATTRIBUTES = {"href", "src", "srcset", "longdesc", "cite", "action", "formaction", "data", "poster",
                  "background", "xlink:href", "ping", "codebase", "manifest", "icon", "lowsrc", "dynsrc"}
ALLOWED_SCHEMES = {"http", "https", "mailto"}
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")


def scheme(url: str) -> str | None:
    """The scheme a browser reads in an attribute's value (WHATWG URL: C0 controls and spaces around it
    stripped, tabs and newlines anywhere removed); None for a relative URL."""
    cleaned = re.sub(r"[\t\n\r]", "", url.strip("".join(map(chr, range(0x21)))))
    found = _SCHEME.match(cleaned)
    return found.group(1).lower() if found else None


class Elements(html.parser.HTMLParser):
    """Every element with its attributes (entities decoded, as a browser reads them)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[str, list[tuple[str, str]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, [(name, value or "") for name, value in attrs]))


def elements(markup: str) -> list[tuple[str, list[tuple[str, str]]]]:
    parser = Elements()
    parser.feed(markup)
    parser.close()
    return parser.found


def assert_no_live_script(markup: str, *, tags: set[str], layout: bool = False) -> None:
    for tag, attrs in elements(markup):
        if layout and tag == "script":  # the layout's one script: the search, from the site's own assets
            assert attrs == [("src", attrs[0][1]), ("defer", "")] and attrs[0][1].endswith("assets/search.js")
            assert scheme(attrs[0][1]) is None
            continue
        assert tag in tags, f"<{tag}> in {markup!r}"
        for name, value in attrs:
            assert not name.startswith("on") and name not in ("style", "srcdoc"), f"{name}= on <{tag}>"
            if name in URL_ATTRIBUTES:
                urls = [part.strip().split(" ")[0] for part in value.split(",")] if name == "srcset" else [value]
                for url in urls:
                    found = scheme(url)
                    data_image = tag == "img" and re.match(r"data:image/(gif|png|jpeg|webp);", url.strip())
                    assert found is None or found in ALLOWED_SCHEMES or data_image, f"{name}={value!r} on <{tag}>"
            if name in ("id", "name") and not layout:
                assert value not in LAYOUT_IDS, f"{name}={value!r} takes a layout id"


@SOME
@given(MARKDOWN, st.booleans())
@example('<a href="java\tscript:alert(1)//x.md">y</a>', True)
def test_no_script_reaches_a_markdown_page_however_it_is_written(text: str, allow_html: bool) -> None:
    page = Page(src="guide/page.md", out="guide/page.html")
    Renderer(allow_html=allow_html).render(page, text, {"guide/page.md": "guide/page.html", "up.md": "up.html"})
    assert_no_live_script(page.body, tags=MARKDOWN_TAGS | (set(dochtml.TAGS) if allow_html else set()))
    if not allow_html:  # raw HTML is shown as text: every tag of the page is markdown-it's own
        assert not {tag for tag, _ in elements(page.body)} - MARKDOWN_TAGS


LAYOUT_TAGS = {"html", "head", "meta", "title", "link", "script", "body", "a", "div", "aside", "button", "input",
               "ul", "li", "nav", "main", "article", "p", "span", "h1"}
NAMES = st.lists(st.sampled_from(["<script>", "a\"b", "javascript:alert(1)", "x&amp;", "é", " ", "#", "?", "%2e",
                                  "1", "README", "index", "-", "'"]), min_size=1, max_size=3).map("".join)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.tuples(st.sampled_from(["", "docs/", "<b>/"]), NAMES,
                                 st.sampled_from([".md", ".MD", ".md"])).map("".join),
                       MARKDOWN, min_size=1, max_size=4), st.booleans(), NAMES)
def test_every_page_of_a_docs_site_carries_no_live_script_and_the_csp(files: dict[str, str], allow_html: bool,
                                                                       title: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "src", Path(tmp) / "out"
        for name, text in files.items():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            (src / name).write_text(text, encoding="utf-8", errors="surrogatepass")
        try:
            site.render_docs(src, out, title=title, allow_html=allow_html)
        except MinipaasError as refused:
            assert_one_line_refusal(refused)
            return
        pages = sorted(out.rglob("*.html"))
        assert pages and (out / "index.html").is_file() and (out / "404.html").is_file()
        tags = LAYOUT_TAGS | MARKDOWN_TAGS | (set(dochtml.TAGS) if allow_html else set())
        for page in pages:
            markup = page.read_text(encoding="utf-8")
            assert_no_live_script(markup, tags=tags, layout=True)
            assert markup.count('<meta http-equiv="Content-Security-Policy"') == 1
        for entry in json.loads((out / "assets" / "search-index.json").read_text(encoding="utf-8")):
            assert scheme(entry["url"]) is None and not entry["url"].startswith("/")
        assert not [p for p in Path(tmp).rglob("*") if p.is_symlink()]
        assert {p.name for p in Path(tmp).iterdir()} == {"src", "out"}  # written into the output folder only


# -- tar entries ---------------------------------------------------------------------------------------------

NAME_PARTS = ["a", "b", "index.html", ".env", ".well-known", "..", ".", "", "x" * 300, "é", "a b", "\n", "dist"]
MEMBER_NAME = st.lists(st.sampled_from(NAME_PARTS), min_size=1, max_size=4).flatmap(
    lambda parts: st.sampled_from(["", "./", "/", "././", "../", "dist/", "./dist/"]).map(
        lambda lead: lead + "/".join(parts)))
KINDS = [tarfile.REGTYPE, tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.FIFOTYPE,
         tarfile.CHRTYPE]
MEMBERS = st.lists(st.tuples(MEMBER_NAME, st.sampled_from(KINDS), st.binary(max_size=8),
                             st.sampled_from(["/etc/passwd", "../../outside/secret", "a", "/"])), max_size=6)


def archive(members: list[tuple[str, bytes, bytes, str]], fmt: int) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=fmt) as tar:
        for name, kind, data, link in members:
            info = tarfile.TarInfo(name)
            info.type, info.linkname, info.mode = kind, link, 0o644 if kind != tarfile.DIRTYPE else 0o755
            if kind == tarfile.REGTYPE:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
    return buffer.getvalue()


def meaning(members: list[tuple[str, bytes, bytes, str]], strip: str) -> tuple[dict[str, bytes], set[str], bool]:
    """What the archive's entries say, as the documented rule reads them: regular files and folders under
    `strip` (a leading `./` is no part of a name), each at the path its name gives; links, devices, absolute
    names and `..` nowhere. Returns (files, folders, whether they cannot all be written: a name is a file and
    a folder at once, or too long for the filesystem)."""
    files: dict[str, bytes] = {}
    folders: set[str] = set()
    impossible = False
    for name, kind, data, _link in members:
        while name.startswith("./"):
            name = name[2:]
        if not name.startswith(strip) or kind not in (tarfile.REGTYPE, tarfile.DIRTYPE):
            continue
        relative = PurePosixPath(name[len(strip):])
        if not str(relative) or str(relative) == "." or relative.is_absolute() or ".." in relative.parts:
            continue
        path = "/".join(relative.parts)
        parents = {"/".join(relative.parts[:n]) for n in range(1, len(relative.parts))}
        if any(len(part.encode()) > 255 for part in relative.parts) or parents & set(files):
            impossible = True
        if kind == tarfile.REGTYPE:
            impossible |= path in folders
            files[path] = data
        else:
            impossible |= path in files
            folders.add(path)
        folders |= parents
    return files, folders, impossible


def tree(root: Path) -> dict[str, object]:
    """Every entry under `root` with what it is: a file's bytes, a folder, a link's target."""
    found: dict[str, object] = {}
    for folder, dirs, names in os.walk(root):
        for name in dirs + names:
            path = Path(folder, name)
            info = path.lstat()
            key = str(path.relative_to(root))
            if stat.S_ISLNK(info.st_mode):
                found[key] = ("link", os.readlink(path))
            elif stat.S_ISREG(info.st_mode):
                found[key] = path.read_bytes()
            else:
                found[key] = ("folder" if stat.S_ISDIR(info.st_mode) else "other", stat.S_IFMT(info.st_mode))
    return found


@SOME
@given(MEMBERS, st.sampled_from(["", "dist/"]), st.sampled_from([tarfile.GNU_FORMAT, tarfile.PAX_FORMAT]))
@example([("./.env", tarfile.REGTYPE, b"SECRET=1", "a")], "", tarfile.GNU_FORMAT)
@example([("a", tarfile.REGTYPE, b"", "a"), ("a/b", tarfile.REGTYPE, b"", "a")], "", tarfile.GNU_FORMAT)
@example([("x" * 300, tarfile.REGTYPE, b"", "a")], "", tarfile.PAX_FORMAT)
def test_a_tar_entry_writes_where_its_name_says_inside_the_release_or_nothing(
        members: list[tuple[str, bytes, bytes, str]], strip: str, fmt: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        top = Path(tmp)
        (top / "outside").mkdir()
        (top / "outside" / "secret").write_bytes(b"kept")
        target = top / "static" / "app" / "7"
        target.mkdir(parents=True)
        (top / "static" / "app" / "6").mkdir()
        before = {key: value for key, value in tree(top).items() if not key.startswith("static/app/7/")}
        files, folders, impossible = meaning(members, strip)
        try:
            sites.extract_tar(io.BytesIO(archive(members, fmt)), target, strip=strip)
        except MinipaasError as refused:
            assert_one_line_refusal(refused)
            assert impossible, f"refused {members} ({refused.message})"
        else:
            assert not impossible
            written = tree(target)
            assert {k for k, v in written.items() if isinstance(v, bytes)} == set(files)
            assert all(written[path] == data for path, data in files.items())
            assert {k for k, v in written.items() if not isinstance(v, bytes)} == folders
        after = {key: value for key, value in tree(top).items() if not key.startswith("static/app/7/")}
        assert after == before  # nothing written, changed or linked outside the release folder


@SOME
@given(st.binary(max_size=2000), st.integers(0, 3000))
@example(b"garbage", 0)
def test_a_damaged_archive_is_one_line_and_writes_nothing_outside(noise: bytes, cut: int) -> None:
    whole = archive([("index.html", tarfile.REGTYPE, b"<p>hi</p>" * 100, ""), ("a/b.css", tarfile.REGTYPE, b"x", "")],
                    tarfile.PAX_FORMAT)
    for data in (noise, whole[:cut], whole[:cut] + noise):
        with tempfile.TemporaryDirectory() as tmp:
            target = Path(tmp) / "release"
            target.mkdir()
            try:
                sites.extract_tar(io.BytesIO(data), target)
            except MinipaasError as refused:
                assert_one_line_refusal(refused)
            try:  # what a static build's output folder is compared by, before it is extracted
                sitebuild.scan(io.BytesIO(data))
            except MinipaasError as refused:
                assert_one_line_refusal(refused)
            assert {p.name for p in Path(tmp).iterdir()} == {"release"}
            assert not [p for p in target.rglob("*") if p.is_symlink() or not (p.is_file() or p.is_dir())]
            shutil.rmtree(target)
