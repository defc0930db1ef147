"""One reading of a commit (source/commit.py) and one health plan run against a target (deploy/health.py), without
an engine: a real git repository, and a real HTTP server on the loopback standing for a Swarm task at node:port."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from minipaas.deploy import health
from minipaas.errors import BuildFailed, DeployFailed, InvalidInput
from minipaas.source import procfile
from minipaas.source.commit import read_commit
from tests.helpers.host import commit, git


def _repo(tmp_path: Path, files: dict[str, str], name: str = "work") -> tuple[Path, str]:
    work = tmp_path / name
    work.mkdir()
    git(work, "init", "-q", "-b", "master")
    for name, text in files.items():
        (work / name).write_text(text)
    return work / ".git", commit(work, "files")


def test_a_commit_is_read_once_into_what_every_step_needs(tmp_path: Path) -> None:
    app_json = {"formation": {"worker": {"quantity": 2}},
                "healthchecks": {"web": [{"type": "startup", "path": "/ready", "attempts": 1}]}}
    repo, sha = _repo(tmp_path, {"Procfile": "web: node server.js\nworker: node worker.js\n",
                                 "app.json": json.dumps(app_json), "CHECKS": "/ hello\n",
                                 "package.json": '{"name": "shop", "scripts": {"start": "node server.js"}}'})
    read = read_commit(repo, sha)
    assert read.sha == sha and {"Procfile", "app.json", "CHECKS", "package.json"} <= read.paths
    assert read.procs == {"web": "node server.js", "worker": "node worker.js"}
    assert read.formation == {"worker": 2}
    assert read.package.scripts == {"start": "node server.js"}
    assert read.checks_file is not None and read.checks_file.checks == (health.Check("/", "hello"),)
    # app.json's startup checks come first; without them, the CHECKS file; without it, the app's path.
    plan = health.plan(read, path="/up", timeout=7)
    assert plan.app_json is not None and [c.path for c in plan.app_json.run] == ["/ready"] and plan.timeout == 7
    assert plan.goal() == "pass app.json's check-1 (GET /ready)"
    without = health.plan(read, path="/up", timeout=7, app_json=False)
    assert without.goal(each=True) == "answers GET / containing 'hello'"


def test_a_commit_without_those_files_reads_as_defaults(tmp_path: Path) -> None:
    repo, sha = _repo(tmp_path, {"index.html": "<p>hi</p>"})
    read = read_commit(repo, sha)
    assert (read.procs, read.formation, read.app_json_checks, read.checks_file) == ({}, {}, None, None)
    assert health.plan(read, path="/up", timeout=5).goal() == "answer GET /up"


def test_a_broken_file_is_refused_where_it_is_used_not_at_the_reading(tmp_path: Path) -> None:
    repo, sha = _repo(tmp_path, {"app.json": "{", "CHECKS": "not a path\n"})
    read = read_commit(repo, sha)  # read: nothing parsed yet but the Procfile
    with pytest.raises(InvalidInput, match=r"app\.json is not valid JSON"):
        _ = read.formation
    with pytest.raises(InvalidInput, match="CHECKS line 1"):
        _ = read.checks_file
    broken, sha = _repo(tmp_path, {"Procfile": "web node\n"}, name="broken")
    with pytest.raises(BuildFailed, match="Procfile line 1 is not `type: command`"):
        read_commit(broken, sha)


def test_a_process_runs_its_procfile_line_through_one_shell_command() -> None:
    assert procfile.process_command({"web": "node server.js"}, "web") == ["/bin/sh", "-c", "exec node server.js"]
    assert procfile.process_command({"web": "node server.js"}, "worker") is None
    assert procfile.shell("./migrate", replaced=False) == ["/bin/sh", "-c", "./migrate"]


@pytest.fixture
def server() -> Iterator[str]:
    """An HTTP server on the loopback answering `/` with "hello" and anything else with 404."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"hello" if self.path == "/" else b"no"
            self.send_response(200 if self.path == "/" else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_one_plan_runs_against_a_task_at_its_address(server: str) -> None:
    said: list[str] = []
    passing = health.Plan(5, health.parse_checks("/ hello\n"))
    assert health.run(passing, health.Task("web-7", server, gone=lambda: None), progress=said.append) >= 0
    assert said == ["       passed: GET / containing 'hello'"]
    failing = health.Plan(1, health.parse_checks("/missing\n"))
    with pytest.raises(DeployFailed, match=rf"web-7 at {server} did not pass GET /missing in time \(last: HTTP 404"):
        health.run(failing, health.Task("web-7", server, gone=lambda: None), progress=said.append)
    with pytest.raises(DeployFailed, match=rf"web-7 at {server} stopped before answering the health check: shut"):
        health.run(failing, health.Task("web-7", server, gone=lambda: "shut down"), progress=said.append)


def test_app_json_checks_a_task_cannot_run_are_said_and_not_run(server: str, tmp_path: Path) -> None:
    checks = {"healthchecks": {"web": [{"name": "cmd", "command": "true"}, {"name": "root", "path": "/"}]}}
    repo, sha = _repo(tmp_path, {"app.json": json.dumps(checks)})
    said: list[str] = []
    health.run(health.plan(read_commit(repo, sha), path="/", timeout=5),
               health.Task("web-7", server, gone=lambda: None), progress=said.append)
    assert said == ["       not run in a cluster: cmd (`/bin/sh -c true` exiting 0; a command runs in the container, "
                    "on its node)", f"       passed: root (GET /) at {server}"]
