"""The engine tier: which tests need the Docker engine (marked `engine`), the gate that gives it to them or
skips them without one, and the default base image made once per run."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.helpers.host import CA

# Tests that need the Docker engine (and nginx): every test using one of these fixtures, and every test
# of a module marked `pytestmark = pytest.mark.engine`. `pytest -m "not engine"` runs the rest, the fast tier.
ENGINE_FIXTURES = frozenset({"paas", "sshd", "engine_ready"})
TESTS = Path(__file__).resolve().parent.parent
ENGINE_TIERS = ("engine", "cluster")  # tests/engine, tests/cluster: every test there is marked engine


def misplaced(path: Path, marked_engine: bool) -> str | None:
    """Why a test at `path` (marked engine or not) is not in its tier's folder, or None: the folder says the
    tier, so `pytest tests/unit` is the fast tier and each folder's tests need what its name says."""
    if not path.is_relative_to(TESTS):
        return None  # not one of this suite's tests
    tier = path.relative_to(TESTS).parts[0]
    if tier == "unit" and marked_engine:
        return "needs the Docker engine (marked engine, or asks for paas, sshd or engine_ready): put it in tests/engine"
    if tier in ENGINE_TIERS and not marked_engine:
        return f"needs no engine (not marked engine) but lives in tests/{tier}: move it to tests/unit"
    if tier not in ("unit", *ENGINE_TIERS):
        return "lives outside the tiers' folders: put it in tests/unit, tests/engine or tests/cluster"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Marks the tests that need the engine, then refuses the run if a test is in the wrong tier's folder (a
    new test that asks for `paas` in tests/unit would otherwise slow down and break the fast tier)."""
    wrong = []
    for item in items:
        if ENGINE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.engine)
        why = misplaced(item.path, item.get_closest_marker("engine") is not None)
        if why:
            wrong.append(f"{item.nodeid} {why}")
    if wrong:
        raise pytest.UsageError("tests in the wrong tier's folder:\n" + "\n".join(wrong))


@functools.cache
def _engine_answers() -> bool:
    return subprocess.run(["docker", "info"], capture_output=True).returncode == 0


@pytest.fixture(scope="session")
def engine_ready() -> None:
    """The Docker engine answers, and the default base image exists (made once per run)."""
    if not _engine_answers():
        pytest.skip("no Docker engine answers: run ./install.sh --deps-only (or start dockerd)")
    _default_base_image()


@pytest.fixture(autouse=True)
def _engine_for_marked(request: pytest.FixtureRequest) -> None:
    """Engine tests get the engine (or skip without one); fast-tier tests never wait for it."""
    if request.node.get_closest_marker("engine") is not None:
        request.getfixturevalue("engine_ready")


def _default_base_image() -> None:
    """The default base image (the newest release of MINIPAAS_NODE_MAJOR, also tagged minipaas/node:26),
    made once per run by `minipaas stack:build` in a throwaway home: a second on a host that has it, a
    build (about a minute) on one that does not. Tests then never depend on what the host had."""
    top = Path(tempfile.mkdtemp(prefix="minipaas-stack-", dir="/var/tmp"))
    env = {**os.environ, "MINIPAAS_HOME": str(top / "home")}
    if os.path.exists(CA):
        env["MINIPAAS_BUILD_CA"] = CA
    try:
        result = subprocess.run([sys.executable, "-m", "minipaas", "stack:build"], env=env, text=True,
                                capture_output=True, timeout=1800)
    finally:
        shutil.rmtree(top, ignore_errors=True)
    if result.returncode != 0:
        pytest.exit(f"cannot make the default base image (minipaas stack:build):\n{result.stdout}{result.stderr}", 2)

