"""A docs page's Markdown to HTML: CommonMark through markdown-it-py (tables, strikethrough), fenced code
highlighted by Pygments, links between pages rewritten, headings collected for the table of contents."""

from __future__ import annotations

import functools
import html
import re
from collections.abc import Callable

from markdown_it import MarkdownIt
from markdown_it.token import Token
from mdit_py_plugins.anchors import anchors_plugin
from pygments import highlight as pygments_highlight
from pygments.formatters import HtmlFormatter
from pygments.lexer import Lexer
from pygments.lexers import get_lexer_by_name
from pygments.util import ClassNotFound

from minipaas.build.docsite import html as dochtml
from minipaas.build.docsite import links as doclinks
from minipaas.build.docsite.files import rewrite_link
from minipaas.build.docsite.model import LAYOUT_IDS, Heading, Page, default_title


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


_ALIGN = re.compile(r"text-align:(left|right|center)")
