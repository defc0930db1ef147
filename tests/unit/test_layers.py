"""The package's shape (docs/architecture.md): import-linter's contracts of pyproject.toml hold (layers,
independence, adapters, no cycles), and every module is under 400 lines with a docstring saying what it
owns. Fast tier: no engine, no nginx."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "minipaas"
MAX_LINES = 400


def test_import_linter_contracts_hold() -> None:
    program = Path(sys.executable).parent / "lint-imports"
    if not program.exists():
        pytest.skip("import-linter is not installed (pip install -e '.[test]')")
    # This checkout's minipaas, whatever the venv has installed.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run([str(program), "--no-cache"], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, f"lint-imports:\n{result.stdout}\n{result.stderr}"
    assert "0 broken" in result.stdout


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_a_module_is_short_and_says_what_it_owns(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.count("\n") <= MAX_LINES, f"{path.name} has {text.count(chr(10))} lines; split it"
    assert ast.get_docstring(ast.parse(text)), f"{path.name} has no docstring"


def test_hooks_written_before_the_layers_still_find_their_entry_point() -> None:
    """Repositories created by an earlier minipaas keep a pre-receive hook that imports minipaas.hook."""
    from minipaas import hook
    from minipaas.deploy import hook as deploy_hook

    assert hook.main is deploy_hook.main
    assert "from minipaas.deploy.hook import main" in (ROOT / "hooks" / "pre-receive").read_text()


def test_a_push_imports_no_library_it_does_not_use() -> None:
    """The hook runs in a new process at every push: paramiko (ssh, 0.1 s) and scramp (Postgres verifiers) are
    imported where they are used, not by the modules every push imports."""
    script = ("import sys, minipaas.deploy.hook, minipaas.deploy.reviewapps, minipaas.deploy.rollout\n"
              "print(sorted(m for m in ('paramiko', 'scramp', 'selenium') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                            cwd=Path(__file__).resolve().parents[2])
    assert result.stdout.strip() == "[]", result.stdout
