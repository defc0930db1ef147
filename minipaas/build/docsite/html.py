"""Raw HTML in docs pages, kept the way GitHub keeps it by default: sanitized with an allowlist.

The tags and attributes are GitHub's (its html-pipeline sanitization filter) less what a docs site's
Content-Security-Policy would refuse anyway (no `style` elements or attributes) and forms: headings with
`align`, `details`/`summary`, `img`, `picture`/`source`, `kbd`, `sub`/`sup`, tables, `a` with `id`/`name`
as link targets. nh3 (ammonia) drops everything else: `script` with its content, event handlers, `style`,
`iframe`, unknown tags (keeping their text), and URLs with other schemes than the web's and mail's (nh3 in
`href` and `src`, `safe_url` here in the other attributes that hold URLs).
"""

from __future__ import annotations

import re
from collections.abc import Callable

import nh3

TAGS = frozenset({
    "a", "abbr", "b", "bdi", "bdo", "blockquote", "br", "caption", "center", "cite", "code", "col", "colgroup",
    "dd", "del", "details", "dfn", "div", "dl", "dt", "em", "figcaption", "figure", "h1", "h2", "h3", "h4", "h5",
    "h6", "hr", "i", "img", "ins", "kbd", "li", "mark", "ol", "p", "picture", "pre", "q", "rp", "rt", "ruby", "s",
    "samp", "small", "source", "span", "strike", "strong", "sub", "summary", "sup", "table", "tbody", "td",
    "tfoot", "th", "thead", "time", "tr", "tt", "u", "ul", "var", "wbr",
})
# Removed with everything inside them, not only their tags.
CLEAN_CONTENT = frozenset({"script", "style", "template", "noscript", "textarea", "select", "iframe", "object",
                           "embed", "svg", "math"})
# On every tag (GitHub's list, less forms' and frames' attributes).
GLOBAL_ATTRIBUTES = frozenset({
    "abbr", "align", "alt", "aria-describedby", "aria-hidden", "aria-label", "aria-labelledby", "axis", "border",
    "cellpadding", "cellspacing", "char", "charoff", "cite", "clear", "color", "cols", "colspan", "compact",
    "datetime", "dir", "headers", "height", "hreflang", "hspace", "id", "itemprop", "label", "lang", "nowrap",
    "open", "rel", "rev", "role", "rows", "rowspan", "rules", "scope", "size", "span", "start", "summary",
    "title", "type", "valign", "value", "vspace", "width",
})
TAG_ATTRIBUTES = {
    "a": {"href", "name"},
    "img": {"src", "longdesc", "loading", "srcset", "sizes"},
    "source": {"srcset", "media", "sizes", "src"},
    "ol": {"reversed"},
    "div": {"itemscope", "itemtype"},
    "pre": {"class"}, "code": {"class"}, "span": {"class"}, "th": {"class"}, "td": {"class"},  # highlighting
}
URL_SCHEMES = frozenset({"http", "https", "mailto"})
# Attributes that hold URLs nh3 does not check (it checks href and src): GitHub's filter holds longdesc and
# cite to the same schemes, and a srcset or an itemtype is URLs too.
URL_ATTRIBUTES = frozenset({"longdesc", "cite", "srcset", "itemtype"})
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")
_C0_AND_SPACE = "".join(map(chr, range(0x21)))


def safe_url(value: str) -> bool:
    """Whether the URL a browser reads in `value` is relative or of URL_SCHEMES (a browser strips C0 controls
    and spaces around a URL and drops tabs and newlines within it: ` java\tscript:` is javascript:)."""
    scheme = _SCHEME.match(re.sub(r"[\t\n\r]", "", value.strip(_C0_AND_SPACE)))
    return scheme is None or scheme.group(1).lower() in URL_SCHEMES


def _urls(attribute: str, value: str) -> list[str]:
    """The URLs of an attribute's value: a srcset's candidates (`a.png 1x, b.png 2x`), else the value."""
    if attribute != "srcset":
        return [value]
    return [candidate.split()[0] for candidate in value.split(",") if candidate.strip()]


def attributes() -> dict[str, set[str]]:
    allowed = {tag: set(names) for tag, names in TAG_ATTRIBUTES.items()}
    allowed["*"] = set(GLOBAL_ATTRIBUTES)
    return allowed


def sanitize(body: str, link_filter: Callable[[str], str], *, reserved_ids: frozenset[str] = frozenset()) -> str:
    """Keep what GitHub keeps of `body`. `link_filter` rewrites each `a href` (links to `.md` pages); ids and
    names in `reserved_ids` (the layout's) are dropped."""
    def attribute_filter(tag: str, attribute: str, value: str) -> str | None:
        if attribute in ("id", "name") and value in reserved_ids:
            return None
        if attribute in URL_ATTRIBUTES and not all(safe_url(url) for url in _urls(attribute, value)):
            return None
        if tag == "a" and attribute == "href":
            return link_filter(value)
        return value

    return nh3.clean(body, tags=set(TAGS), clean_content_tags=set(CLEAN_CONTENT), attributes=attributes(),
                     attribute_filter=attribute_filter, url_schemes=set(URL_SCHEMES), link_rel=None,
                     strip_comments=True)


def hrefs(fragment: str) -> list[str]:
    """The `a href`s of a piece of raw HTML that sanitizing keeps, as written (for the link check)."""
    found: list[str] = []

    def attribute_filter(tag: str, attribute: str, value: str) -> str | None:
        if tag == "a" and attribute == "href":
            found.append(value)
        return value

    nh3.clean(fragment, tags=set(TAGS), clean_content_tags=set(CLEAN_CONTENT), attributes=attributes(),
              attribute_filter=attribute_filter, url_schemes=set(URL_SCHEMES), link_rel=None)
    return found
