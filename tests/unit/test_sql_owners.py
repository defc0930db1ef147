"""SQL is written in `minipaas/state/` only (issue 23): each table has its owner module there, and the layers above
call its functions. Fast tier: reads the source, runs nothing.

The rule, checked on the syntax tree of every module outside `state/`:
- no `.execute`, `.executemany` or `.executescript` (called or not): in minipaas these names mean SQL and nothing
  else (the ssh adapter's remote command is `sshclient.attached`);
- no way to hold a connection to run one on: no `.db` attribute (`Host.db`), no `store.connect` or
  `store.transaction`, no `import sqlite3`.
The second half is what makes the first honest: a statement needs a connection, and outside `state/` none can be had,
and a method taken without a call (`run = db.execute`) is caught as well.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = next(p for p in Path(__file__).resolve().parents if (p / "minipaas" / "state").is_dir())
PACKAGE = ROOT / "minipaas"
SQL_CALLS = frozenset({"execute", "executemany", "executescript"})
CONNECTION_MAKERS = frozenset({"connect", "transaction"})


def offences(text: str) -> list[str]:
    """Each place in a module's source that writes SQL or reaches for a connection, as `line: what`."""
    found = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Attribute) and node.attr in SQL_CALLS:
            found.append(f"{node.lineno}: .{node.attr}")
        elif isinstance(node, ast.Attribute) and node.attr == "db":
            found.append(f"{node.lineno}: .db (a connection)")
        elif isinstance(node, ast.Attribute) and node.attr in CONNECTION_MAKERS \
                and isinstance(node.value, ast.Name) and node.value.id == "store":
            found.append(f"{node.lineno}: store.{node.attr}")
        elif isinstance(node, ast.Import | ast.ImportFrom):
            modules = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            if "sqlite3" in modules:
                found.append(f"{node.lineno}: import sqlite3")
    return found


def outside_state() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if (PACKAGE / "state") not in p.parents)


@pytest.mark.parametrize("path", outside_state(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_sql_outside_state(path: Path) -> None:
    found = offences(path.read_text(encoding="utf-8"))
    assert not found, f"{path.relative_to(ROOT)} writes SQL (give it to a module of minipaas/state/): {found}"


def test_the_rule_sees_sql_and_its_ways_around() -> None:
    text = '''
import sqlite3
from minipaas.state import store

def f(host, conn):
    host.db.execute("SELECT 1")
    conn.executemany("INSERT INTO t VALUES (?)", [(1,)])
    run = conn.executescript
    with store.transaction(conn) as db:
        pass
'''
    assert sorted(offences(text)) == ["2: import sqlite3", "6: .db (a connection)", "6: .execute",
                                      "7: .executemany", "8: .executescript", "9: store.transaction"]


def test_state_writes_sql_so_the_rule_has_something_to_find() -> None:
    """Were the rule blind (a wrong folder, a changed attribute name), state/ would pass it too."""
    assert offences((PACKAGE / "state" / "releaselog.py").read_text(encoding="utf-8"))
