"""How the tests share the two workers of README's `-n 2`: two queues (the cluster's and the host's), and the
tests that restart the Docker engine (marked `engine_restart`) last, with the engine to themselves."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

# Two workers (README's test command: `-n 2`), each running one queue in the order written: the cluster's modules,
# whose apps run on dockerd nodes in containers (of this host's engine they only read: node containers, image
# copies), and every other test, one after another (some change what the whole engine holds: base images, gc, an
# engine restart). The cluster's ~10 minutes then run beside the rest.
CLUSTER_MODULES = "tests/cluster/"


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    from xdist.scheduler import LoadScopeScheduling

    class TwoQueues(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return "cluster" if nodeid.startswith(CLUSTER_MODULES) else "host"

    return TwoQueues(config, log)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `engine_restart` (they restart the machine's Docker engine) run after every other test of
    their queue, whatever their file's name: each worker sorts the same way, so xdist hands the host's queue out in
    this order, and `engine_to_itself` then waits for the other worker's queue to end. (Before this, the file was
    named test_engine_restart.py to be collected last, an order any new file name could break.)"""
    items.sort(key=lambda item: item.get_closest_marker("engine_restart") is not None)  # stable: the rest keep theirs


_MADE: list[str] = []  # the folder this process made (only it removes it)


def pytest_configure(config: pytest.Config) -> None:
    """With workers, a folder where each says it is done (the workers inherit its name), removed at the end."""
    if getattr(config.option, "numprocesses", None) and "PYTEST_XDIST_WORKER" not in os.environ:
        _MADE.append(tempfile.mkdtemp(prefix="minipaas-tests-"))
        os.environ["MINIPAAS_TESTS_WORKERS"] = _MADE[-1]


def pytest_unconfigure(config: pytest.Config) -> None:
    # Only the process that made the folder removes it: a pytest that a test starts inherits its name (a test of
    # the suite's own collection once removed it mid-run, and the engine restart then waited for an hour).
    while _MADE:
        shutil.rmtree(_MADE.pop(), ignore_errors=True)


def pytest_sessionfinish(session: pytest.Session) -> None:
    folder, worker = os.environ.get("MINIPAAS_TESTS_WORKERS"), os.environ.get("PYTEST_XDIST_WORKER")
    if folder and worker:
        Path(folder).mkdir(mode=0o700, parents=True, exist_ok=True)  # gone (removed by hand?): said all the same
        (Path(folder) / worker).touch()


@pytest.fixture
def engine_to_itself() -> None:
    """For a test that restarts the Docker engine: wait until the other workers ran all their tests (the cluster's
    node containers would die with the engine)."""
    folder, me = os.environ.get("MINIPAAS_TESTS_WORKERS"), os.environ.get("PYTEST_XDIST_WORKER")
    if not folder or not me:
        return
    others = {f"gw{i}" for i in range(int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))} - {me}
    deadline = time.monotonic() + 3600
    while not all((Path(folder) / other).exists() for other in others):
        if time.monotonic() > deadline:
            pytest.fail(f"the other workers ({', '.join(sorted(others))}) did not finish within an hour")
        time.sleep(1)


