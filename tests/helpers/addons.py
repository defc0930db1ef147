"""Postgres and Redis for tests: the service images made once per module (an autouse fixture a test module
imports), and the services app's counters read and written over HTTP."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable

import pytest

from tests.helpers.host import Paas


@pytest.fixture(scope="module", autouse=True)
def _service_images(engine_ready: None, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The service images, built once for the run when the host lacks them (cached on the host after)."""
    from minipaas.build import hostimages
    from minipaas.state.settings import load

    settings = load({"MINIPAAS_HOME": str(tmp_path_factory.mktemp("images-home"))})
    for kind in hostimages.SPECS:
        hostimages.ensure(settings, kind, lambda _line: None)


def wait_for(what: str, check: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def count(paas: Paas, app: str) -> dict[str, int]:
    response = paas.get(app, "/count")
    assert response.status == 200, response.body
    return json.loads(response.body)


def write(paas: Paas, app: str) -> None:
    response = paas.get(app, "/write", method="POST", body="")
    assert response.status == 200, response.body


# A table of 1000 rows whose content a checksum covers.
SEED = ("CREATE TABLE t (id int PRIMARY KEY, note text NOT NULL);\n"
        "INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 1000) g;\n")
CHECKSUM = "SELECT count(*) || ':' || md5(string_agg(id || '=' || note, ',' ORDER BY id)) FROM t;"


def sql(paas: Paas, name: str, statement: str) -> str:
    result = paas.run("postgres:connect", name, input=statement)
    return result.stdout


def checksum(paas: Paas, name: str) -> str:
    out = subprocess.run([*paas.command(), "postgres:connect", name], env=paas.env, input=f"\\t on\n{CHECKSUM}",
                         capture_output=True, text=True, check=True).stdout
    return [line.strip() for line in out.splitlines() if ":" in line][-1]


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]
