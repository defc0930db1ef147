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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if ENGINE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.engine)


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

