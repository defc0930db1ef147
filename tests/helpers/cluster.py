"""Reading a cluster's state in tests: its services, what nginx routes an app to, the registry's manifests, a
node's Swarm state, tasks running and serving, and a push with faults injected while it runs."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import requests

from tests.helpers.cluster_nodes import (
    Cluster,
    Node,
    registry_account,
)
from tests.helpers.host import Paas, commit


def service_names(manager: Node) -> list[str]:
    return sorted(manager.docker("service", "ls", "--format", "{{.Name}}").split())


def routed_addresses(paas: Paas, app: str) -> list[str]:
    from minipaas.routing import routes
    from minipaas.state.settings import load

    return sorted(routes.addresses(load(paas.env), app))


MANIFEST_TYPES = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json"


def registry_address_and_ca(paas: Paas, manager: Node) -> tuple[str, str]:
    return f"https://{manager.address}:5000", str(paas.home / "cluster" / "ca.crt")


def registry_manifest(paas: Paas, manager: Node, repository: str, tag: str) -> requests.Response:
    base, ca = registry_address_and_ca(paas, manager)
    return requests.get(f"{base}/v2/{repository}/manifests/{tag}", headers={"Accept": MANIFEST_TYPES}, verify=ca,
                        auth=registry_account(paas), timeout=10)


def one_line_error(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode == 1, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for word in words:
        assert word in lines[0], lines[0]


def swarm_state(node) -> str:  # type: ignore[no-untyped-def]
    return node.docker("info", "--format", "{{.Swarm.LocalNodeState}}").strip()


REPLICAS = 6


def running_tasks(cluster: Cluster, service: str) -> dict[str, str]:
    """The service's running tasks: `node address:published port` → node hostname."""
    hosts = {f"node-{i}": node.address for i, node in enumerate(cluster.nodes, 1)}
    out = cluster.nodes[0].docker("service", "ps", service, "--filter", "desired-state=running",
                                  "--format", "{{.Node}}|{{.CurrentState}}|{{.Ports}}", check=False)
    found = {}
    for line in out.splitlines():
        node, state, ports = line.split("|")
        if state.startswith("Running") and "->" in ports:
            found[f"{hosts[node]}:{ports.split('->')[0].rsplit(':', 1)[1]}"] = node
    return found


def commit_release(checkout: Path, text: str, *, slow_start: float = 0) -> str:
    """A commit of tests/apps/dockerfile answering `text` (after `slow_start` seconds of 503s); returns its body."""
    body = f"{text}\n"
    (checkout / "server.js").write_text(
        'const http = require("http");\n'
        "const started = Date.now();\n"
        "http.createServer((req, res) => {\n"
        f"  if (Date.now() - started < {int(slow_start * 1000)}) {{ res.statusCode = 503; return res.end(); }}\n"
        f"  res.end({body!r});\n"
        "}).listen(process.env.PORT || 5000);\n")
    commit(checkout, text)
    return body


def push_while(paas: Paas, checkout: Path, faults: dict[str, Callable[[], object]]) -> tuple[int, str]:
    """A `git push` whose output is read as it comes: at the first line holding a key of `faults`, that fault starts
    (in a thread of its own: the push goes on meanwhile). Returns the push's exit code and output, once the faults
    are over."""
    push = subprocess.Popen(["git", "push", "paas", "master"], cwd=checkout, env=paas.env, text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert push.stderr is not None
    pending, started, errors, lines = dict(faults), [], [], []

    def run(fault: Callable[[], object]) -> None:
        try:
            fault()
        except BaseException as exc:  # said by the test's thread
            errors.append(exc)

    for line in push.stderr:
        lines.append(line)
        for key in [k for k in pending if k in line]:
            started.append(threading.Thread(target=run, args=(pending.pop(key),)))
            started[-1].start()
    code = push.wait(timeout=600)
    for thread in started:
        thread.join(timeout=180)
    output = "".join(lines)
    assert not errors, (errors, output)
    assert not pending, f"the push never printed {list(pending)}:\n{output}"
    return code, output


def serving_tasks(cluster: Cluster, service: str) -> dict[str, str]:
    """The service's task containers that run, as each node's own engine lists them (the Swarm's view may lack their
    ports): `node address:published port` → node hostname. Nodes whose engine does not answer are left out."""
    found = {}
    for index, node in enumerate(cluster.nodes, 1):
        if not node.answers():
            continue
        out = node.docker("ps", "--filter", f"label=com.docker.swarm.service.name={service}", "--format",
                          "{{.Ports}}", check=False)
        for ports in out.split():
            if "->" in ports:
                found[f"{node.address}:{ports.split('->')[0].rsplit(':', 1)[1]}"] = f"node-{index}"
    return found


def pending_or_retiring(paas: Paas, app: str) -> list[str]:
    """Rows a deploy left unfinished: releases still `pending`, retirements not done."""
    import sqlite3

    db = sqlite3.connect(paas.home / "minipaas.db")
    try:
        rows = db.execute("SELECT 'release ' || number FROM releases WHERE app = ? AND status = 'pending' "
                          "UNION ALL SELECT 'retirement ' || container FROM retirements WHERE app = ?",
                          (app, app)).fetchall()
    finally:
        db.close()
    return [row[0] for row in rows]


def settled(paas: Paas, made: Cluster, app: str, service: str, replicas: int = REPLICAS) -> bool:
    """The app's only service is `service`, its route exactly its running tasks (as the nodes' engines list them),
    and no release pending nor retirement left."""
    serving = serving_tasks(made, service)
    return (service_names(made.nodes[0]) == [service] and len(serving) == replicas
            and routed_addresses(paas, app) == sorted(serving) and not pending_or_retiring(paas, app))
