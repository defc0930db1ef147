"""What every command module of the CLI shares: the output (`say`, tables, JSON, timestamps, escaping of
stored text) and the host and app a command works on."""

from __future__ import annotations

import datetime
import json
import unicodedata
from collections.abc import Iterable

import click

from minipaas.progress import Lines
from minipaas.state.host import Host, current

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


# Progress and results on stdout; a reader that goes away (`| head -1`) never stops the command.
say = Lines()


def current_host() -> Host:
    return current()


def existing_app(name: str) -> str:
    from minipaas.state import apps  # the store: not for `--help`

    return apps.require(current_host(), name)


def print_json(data: object) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def printable(text: str) -> str:
    """Text as one line that shows what it holds: control and format characters (newlines, terminal
    escapes, bidi overrides) are written as escapes, so stored text (a command received over ssh, a
    commit message) can neither forge rows of a table nor drive the terminal."""
    return "".join(_escape(ch) if unicodedata.category(ch) in _HIDDEN_CATEGORIES else ch for ch in text)


_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})
_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(ch: str) -> str:
    code = ord(ch)
    return _NAMED_ESCAPES.get(ch) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def table(rows: Iterable[Iterable[object]], headers: list[str]) -> None:
    """Columns padded to their widest cell; every cell printable (see `printable`): the one place a
    table's cells are written."""
    rows = [[printable(str(c)) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    click.echo("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    for row in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def iso(ts: float | None) -> str:
    """ISO 8601, in UTC: `2026-11-26T02:40:12+00:00`."""
    if not ts:
        return "-"
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).isoformat(timespec="seconds")


def when(ts: float | None) -> str:
    if not ts:
        return "-"
    return datetime.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


class ColonGroup(click.Group):
    """Lists commands in definition order, the way dokku's help does."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)


# -- host ----------------------------------------------------------------------------------


# -- apps ----------------------------------------------------------------------------------


# -- config --------------------------------------------------------------------------------


# -- domains -------------------------------------------------------------------------------


# -- processes -----------------------------------------------------------------------------


# -- releases ------------------------------------------------------------------------------


# -- TLS -----------------------------------------------------------------------------------


# -- ssh access ----------------------------------------------------------------------------


