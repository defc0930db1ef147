"""How the tests share the two workers of README's `-n 2`: two queues (the cluster's and the host's), modules
either worker may run once its queue runs low, and the tests that restart the Docker engine (marked
`engine_restart`) last, with the engine to themselves."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

# Two workers (README's test command: `-n 2`). The cluster's modules, whose apps run on dockerd nodes in containers
# (of this host's engine they only read: node containers, image copies), are one queue; the host's are another, run
# one after another (some change what the whole engine or host holds: base images, the host's nginx, the address
# pool, build turns, gc). The cluster's queue ends well before the host's (about 20 of 40 minutes), so the modules
# below, each of which makes its own home, apps, sshd and ports and touches nothing any other test reads, are units
# of their own that either worker takes when its queue runs low: the cluster's worker once its cluster is done,
# the host's at its end. The engine restart's module comes last of all (`engine_to_itself` then waits for the
# other worker to end).
CLUSTER_MODULES = "tests/cluster/"
SHARED_MODULES = tuple(f"tests/engine/test_{name}.py" for name in (
    "dashboard_browser", "ssh", "security_low", "versions", "services", "inputs", "static", "routing", "tenants",
    "letsencrypt", "postgres_roles", "tls", "site_dotfiles", "perms", "docsite_browser", "instances",
    "review_secrets", "proxy", "notify", "cron", "review_lifetime", "review_databases", "sleep", "drains",
    "s3_backups",
))
RESTART_MODULE = "tests/engine/test_engine_restart.py"
_FIRST = ("cluster", "host")  # each worker's first unit, in this order; then SHARED_MODULES', then the restart's


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    from xdist.scheduler import LoadScopeScheduling

    class Queues(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            if nodeid.startswith(CLUSTER_MODULES):
                return "cluster"
            module = nodeid.split("::", 1)[0]
            return module if module in SHARED_MODULES or module == RESTART_MODULE else "host"

        def _assign_work_unit(self, node: object) -> None:
            # xdist hands out the front unit of its queue (ordered by size): put the one we want next in front.
            wanted = [*_FIRST, *SHARED_MODULES, RESTART_MODULE]
            first = min(self.workqueue, key=lambda scope: wanted.index(scope) if scope in wanted else len(wanted))
            self.workqueue.move_to_end(first, last=False)
            super()._assign_work_unit(node)  # type: ignore[arg-type]

    return Queues(config, log)


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


