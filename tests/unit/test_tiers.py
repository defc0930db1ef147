"""Tests live in tiers by folder (issue 23): tests/unit needs no engine, tests/engine and tests/cluster do, and
what tests share is in tests/helpers, never imported from another test file. A misplaced test stops any run
at collection (tests/helpers/engine.py); this checks the rule and the tree as it is."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.engine import misplaced

TESTS = Path(__file__).resolve().parents[1]
TIERS = ("unit", "engine", "cluster")


def tier_files() -> list[Path]:
    return sorted(p for p in TESTS.rglob("test_*.py") if "apps" not in p.relative_to(TESTS).parts)


def test_every_test_file_is_in_a_tiers_folder() -> None:
    outside = [str(p.relative_to(TESTS)) for p in tier_files()
               if p.parent.parent != TESTS or p.parent.name not in TIERS]
    assert outside == [], f"test files outside tests/unit, tests/engine, tests/cluster: {outside}"


def test_no_test_file_imports_another() -> None:
    """What two test files share goes to tests/helpers: a test module imported by another runs its fixtures and
    marks twice, and hides which tier the helper belongs to."""
    found = []
    for path in tier_files():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else \
                [a.name for a in node.names] if isinstance(node, ast.Import) else []
            found += [f"{path.relative_to(TESTS)}: {name}" for name in names
                      if name.split(".")[-1].startswith("test_") or name.startswith(("conftest", "tests.conftest"))]
    assert found == []


@pytest.mark.parametrize(("where", "engine", "wrong"), [
    ("unit/test_x.py", False, None), ("unit/test_x.py", True, "put it in tests/engine"),
    ("engine/test_x.py", True, None), ("cluster/test_x.py", True, None),
    ("engine/test_x.py", False, "move it to tests/unit"), ("cluster/test_x.py", False, "move it to tests/unit"),
    ("test_x.py", False, "outside the tiers' folders"), ("helpers/test_x.py", True, "outside the tiers' folders"),
])
def test_a_test_outside_its_tiers_folder_is_named_with_where_it_belongs(where: str, engine: bool,
                                                                        wrong: str | None) -> None:
    why = misplaced(TESTS / where, engine)
    assert (why is None) if wrong is None else (why is not None and wrong in why), why


def test_the_whole_suite_collects_with_every_test_in_its_tier() -> None:
    """Collecting everything runs the tier rule on every test as marked (by fixture or module mark): any test in
    the wrong folder makes the collection fail with its name."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("MINIPAAS_CI", "PYTEST_XDIST_WORKER", "MINIPAAS_TESTS_WORKERS")}
    result = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                             str(TESTS)], cwd=TESTS.parent, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "tests collected" in result.stdout.splitlines()[-1]


def test_the_modules_either_worker_may_take_exist_and_are_engine_modules() -> None:
    """A renamed module would quietly go back to the host's queue (and the run's end with it)."""
    from tests.helpers.workers import RESTART_MODULE, SHARED_MODULES

    for module in (*SHARED_MODULES, RESTART_MODULE):
        assert (TESTS.parent / module).is_file(), module
        assert module.startswith("tests/engine/"), module
