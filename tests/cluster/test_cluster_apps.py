"""Issue 15: the everyday commands in a cluster work as on one host (docs/cluster-design.md, items 1 and 3).

One 3-node cluster for the whole module (made by `cluster:init` through the CLI: `cluster_nodes.manager_host`),
one app of 3 web tasks pushed once; the tests run in order on it: `ps` shows each task's node and
`node:port` as `docker service ps` does; `logs` shows the tasks' output with their task and node (and follows
it); `config:set` makes a new service whose tasks see the value (`{{` included: the Swarm expands templates in
env), the old one retired; `releases:rollback` makes a service of the registry image of that release, with no
build; `ps:restart` and `resource:limit` (the limits in the task template); `ps:restore` after `docker service
update --force` reroutes to the new tasks and removes a service a crashed deploy left; a review app gets its own
service and answers at its host name; app.json's checks gate each task.

Real things only: dockerd node containers, a real Swarm and registry, real pushes, nginx on this test host.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from tests.helpers.cluster import routed_addresses, service_names
from tests.helpers.cluster_nodes import Cluster, Node, blocked, manager_host, probe, registry_account, wait_for
from tests.helpers.host import APPS, Paas, commit, git, paas_host

pytestmark = pytest.mark.engine

SERVER = """\
const http = require("http");
const port = process.env.PORT || 5000;
http.createServer((req, res) => {
  console.log("request " + req.url);
  res.end("v1 " + (process.env.GREETING || "") + "\\n");
}).listen(port, () => console.log("listening on " + port));
"""
PROCFILE = """\
web: node /srv/server.js
release: node -e "console.log('release command ran, GREETING=' + (process.env.GREETING || ''))"
"""


@dataclass
class Deployed:
    paas: Paas
    cluster: Cluster
    app: str
    checkout: Path
    first_push: str
    seen: dict[str, str] = field(default_factory=dict)  # what a test leaves for the next

    @property
    def manager(self) -> Node:
        return self.cluster.nodes[0]

    def service(self, release: int, app: str | None = None) -> str:
        return f"{self.paas.instance}-{app or self.app}-web-{release}"

    def services(self) -> list[str]:
        """The app's services on the Swarm (its review app's left out)."""
        return [s for s in service_names(self.manager) if s.startswith(self.service(0)[:-1])]


@pytest.fixture(scope="module")
def deployed(engine_ready: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
    with paas_host(tmp_path_factory.mktemp("cluster-apps") / "work") as paas, manager_host(paas) as cluster:
        app = paas.new_app()
        paas.run("ps:scale", app, "web=3")
        paas.run("settings:set", app, "drain-seconds", "1")
        checkout = paas.checkout(app, APPS / "env-echo")
        (checkout / "server.js").write_text(SERVER)
        (checkout / "Procfile").write_text(PROCFILE)
        commit(checkout, "logs its requests; a release command")
        pushed = paas.push(checkout).stderr
        yield Deployed(paas, cluster, app, checkout, pushed)


def _task_addresses(manager: Node, service: str) -> set[str]:
    """`node:port` of the service's running tasks, as the Swarm reports them (not through minipaas)."""
    nodes = dict(line.split() for line in manager.docker(
        "node", "inspect", *manager.docker("node", "ls", "-q").split(), "--format", "{{.ID}} {{.Status.Addr}}")
        .splitlines())
    ids = manager.docker("service", "ps", service, "--filter", "desired-state=running", "-q").split()
    found = set()
    for line in manager.docker("inspect", *ids, "--format", "{{.NodeID}} {{.Status.State}} "
                               "{{range .Status.PortStatus.Ports}}{{.PublishedPort}}{{end}}").splitlines():
        node, state, *port = line.split()  # no port yet: a task still starting
        if state == "running" and port:
            found.add(f"{nodes[node]}:{port[0]}")
    return found


def _wait_live(d: Deployed, service: str, body: str) -> None:
    """Only `service` left (the others retired after the drain delay), and every answer is `body`."""
    wait_for(lambda: d.services() == [service], f"only {service} left", 60)
    answers = {d.paas.get(d.app).body for _ in range(9)}
    assert answers == {body}, answers
    assert set(routed_addresses(d.paas, d.app)) == _task_addresses(d.manager, service)


def test_ps_shows_each_task_with_its_node_and_address(deployed: Deployed) -> None:
    d = deployed
    assert "release command ran, GREETING=" in d.first_push, d.first_push  # on the manager, on the overlay
    service = d.service(1)
    rows = json.loads(d.paas.run("ps", d.app, "--json").stdout)
    swarm = [line.split()[:2] for line in d.manager.docker(
        "service", "ps", service, "--filter", "desired-state=running", "--format", "{{.Name}} {{.Node}}")
        .splitlines()]
    assert sorted((r["name"], r["node"]) for r in rows) == sorted(
        (f"web.{name.rsplit('.', 1)[1]}", node) for name, node in swarm), (rows, swarm)
    assert {r["address"] for r in rows} == _task_addresses(d.manager, service) == set(routed_addresses(d.paas, d.app))
    assert [(r["state"], r["health"], r["release"]) for r in rows] == [("running", "serving", 1)] * 3, rows

    text = d.paas.run("ps", d.app).stdout
    assert text.split()[:6] == ["TASK", "RELEASE", "STATE", "NODE", "HEALTH", "ADDRESS"], text
    for r in rows:
        assert any(
            line.split() == [r["name"], "1", "running", r["node"], "serving", r["address"]]
            for line in text.splitlines()), text
    d.seen["image 1"] = d.manager.docker("service", "inspect", service, "--format",
                                         "{{.Spec.TaskTemplate.ContainerSpec.Image}}").strip()


def test_logs_show_each_tasks_output_with_its_node_and_follow(deployed: Deployed) -> None:
    d = deployed
    rows = json.loads(d.paas.run("ps", d.app, "--json").stdout)
    out = d.paas.run("logs", d.app, "-n", "50").stdout
    for r in rows:
        assert f"{r['name']}@{r['node']} | listening on " in out, out

    marker = uuid.uuid4().hex
    follower = subprocess.Popen([sys.executable, "-m", "minipaas", "logs", d.app, "-f", "-n", "0"], env=d.paas.env,
                                stdout=subprocess.PIPE, text=True)
    lines: list[str] = []
    assert follower.stdout is not None
    reader = threading.Thread(target=lambda: lines.extend(iter(follower.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        # A request each try: the follow may not have started streaming at the first one.
        wait_for(lambda: d.paas.get(d.app, f"/{marker}").status == 200 and any(marker in line for line in lines),
                 "a request's line in `logs -f`", 60)
    finally:
        follower.terminate()
        follower.wait(timeout=30)
    line = next(line for line in lines if marker in line)
    assert line.split(" | ")[0] in {f"{r['name']}@{r['node']}" for r in rows}, line


def test_config_set_makes_a_new_service_whose_tasks_see_it(deployed: Deployed) -> None:
    d = deployed
    # `{{`: the Swarm expands templates in a service's env; a config value must reach the app as it was set.
    out = d.paas.run("config:set", d.app, "GREETING=bar {{.Task.Slot}}")
    assert "release command ran, GREETING=bar {{.Task.Slot}}" in out.stdout + out.stderr, out
    _wait_live(d, d.service(2), "v1 bar {{.Task.Slot}}\n")


def test_rollback_reuses_the_release_image_without_a_build(deployed: Deployed) -> None:
    """Rollback makes a service of release 1's image by the digest it was first pushed with; every node pulls it
    again by that digest (the references dropped first), with the login the Swarm hands its tasks."""
    d = deployed
    repository = f"{d.manager.address}:5000/{d.paas.repository(d.app)}"
    digest = d.seen["image 1"].rpartition("@")[2]
    assert d.seen["image 1"] == f"{repository}:1@{digest}" and digest.startswith("sha256:"), d.seen
    for node in d.cluster.nodes:
        node.docker("image", "rm", "-f", f"{repository}@{digest}", check=False)
        assert f"{repository}@{digest}" not in _repo_digests(node, repository)
    out = d.paas.run("releases:rollback", d.app, "1")
    said = out.stdout + out.stderr
    assert "Rolling" in said and "Building" not in said and "Step 1/" not in said, said
    assert "Building" in d.first_push or "Step 1/" in d.first_push, d.first_push  # what a build says
    service = d.service(3)
    _wait_live(d, service, "v1 \n")  # release 1's config: no GREETING
    image = d.manager.docker("service", "inspect", service, "--format",
                             "{{.Spec.TaskTemplate.ContainerSpec.Image}}").strip()
    assert image == d.seen["image 1"], (image, d.seen)
    running_on = {node.address: node for node in d.cluster.nodes if node.docker(
        "ps", "-q", "--filter", f"label=com.docker.swarm.service.name={service}").strip()}
    assert len(running_on) == 3, running_on
    for node in running_on.values():  # pulled again, by digest
        assert f"{repository}@{digest}" in _repo_digests(node, repository), node.name
    # The tasks' containers on every node run the very image release 1 was built as on the manager.
    built = d.manager.docker("image", "inspect", d.paas.image(d.app, 1), "--format", "{{.Id}}").strip()
    engines = {node.address: node for node in d.cluster.nodes}
    for task in d.manager.docker("service", "ps", service, "--filter", "desired-state=running", "-q").split():
        node_id, container = d.manager.docker("inspect", task, "--format",
                                              "{{.NodeID}} {{.Status.ContainerStatus.ContainerID}}").split()
        address = d.manager.docker("node", "inspect", node_id, "--format", "{{.Status.Addr}}").strip()
        assert engines[address].docker("inspect", container, "--format", "{{.Image}}").strip() == built


def _repo_digests(node: Node, repository: str) -> list[str]:
    return node.docker("image", "ls", "--digests", "--format", "{{.Repository}}@{{.Digest}}", repository).split()


def test_restart_and_resource_limit_make_new_services(deployed: Deployed) -> None:
    d = deployed
    d.paas.run("ps:restart", d.app)
    _wait_live(d, d.service(4), "v1 \n")
    d.paas.run("resource:limit", d.app, "--memory", "300m", "--cpus", "0.25")
    service = d.service(5)
    _wait_live(d, service, "v1 \n")
    limits = json.loads(d.manager.docker("service", "inspect", service, "--format",
                                         "{{json .Spec.TaskTemplate.Resources.Limits}}"))
    assert limits == {"MemoryBytes": 300 * 2**20, "NanoCPUs": 250_000_000, "Pids": 512}, limits


def _gone(pid: int) -> bool:
    """No such process, or only its zombie (a parent that has not reaped it yet)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_restore_reroutes_to_new_tasks_and_removes_a_stray_service(deployed: Deployed) -> None:
    d = deployed
    live = d.service(5)
    before = _task_addresses(d.manager, live)
    # A service a crashed deploy left: the app's labels, neither live nor retiring.
    stray = d.service(99)
    d.manager.docker("service", "create", "--detach", "--name", stray, "--replicas", "0",
                     "--label", f"minipaas.service={d.paas.home}", "--label", f"minipaas.app={d.app}",
                     d.seen["image 1"])
    # The watcher would route the new tasks itself (tests/cluster/test_cluster_failures.py): stopped, as after a reboot.
    pid = int((d.paas.home / "nginx" / "run" / "watch.pid").read_text())
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: _gone(pid), "the watcher gone", 30)
    d.manager.docker("service", "update", "--force", "--detach", live)
    wait_for(lambda: len(_task_addresses(d.manager, live)) == 3 and not _task_addresses(d.manager, live) & before,
             "3 new tasks of the live service", 120)
    fresh = _task_addresses(d.manager, live)
    assert set(routed_addresses(d.paas, d.app)) == before != fresh  # the route is stale

    d.paas.run("ps:restore")
    # The tasks read again: no stale address left, every routed one a live task that answers (the Swarm may have
    # replaced one more task since `fresh` was read: the rolling update's last step), and the watcher back.
    routed = set(routed_addresses(d.paas, d.app))
    assert routed and not routed & before, (routed, before)
    for address in routed:
        assert _get(address) == "v1 \n", address
    wait_for(lambda: set(routed_addresses(d.paas, d.app)) == _task_addresses(d.manager, live),
             "the route = the live tasks", 60)
    assert service_names(d.manager) == [live]  # the stray is gone
    assert d.paas.get(d.app).body == "v1 \n"


def _get(address: str) -> str:
    """GET / from one task at its node:port, past nginx."""
    host, port = address.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", "/")
        return conn.getresponse().read().decode()
    finally:
        conn.close()


def test_a_review_app_gets_its_own_service(deployed: Deployed) -> None:
    d = deployed
    git(d.checkout, "checkout", "-q", "-b", "feature/x")
    (d.checkout / "server.js").write_text(SERVER.replace('"v1 "', '"review "'))
    commit(d.checkout, "review")
    pushed = d.paas.push(d.checkout, "feature/x").stderr
    review = f"{d.app}--feature-x"
    assert f"Review app {review}" in pushed, pushed
    service = d.service(1, app=review)
    assert service in service_names(d.manager), service_names(d.manager)
    assert d.paas.get("", host=f"feature-x.{d.app}.paas.test").body == "review \n"
    assert d.paas.get(d.app).body == "v1 \n"  # the app keeps its own
    rows = json.loads(d.paas.run("ps", review, "--json").stdout)
    assert rows and {r["health"] for r in rows} == {"serving"}, rows


def test_app_json_healthchecks_gate_each_task(deployed: Deployed) -> None:
    """app.json's startup checks run against every task at its `node:port`: one that never passes refuses the
    push (its service removed, the live one serving), one that passes is said for each task."""
    d = deployed
    live = d.service(5)
    git(d.checkout, "checkout", "-q", "master")
    check = {"type": "startup", "name": "greets", "path": "/", "content": "nope", "attempts": 2, "wait": 1}
    (d.checkout / "app.json").write_text(json.dumps({"healthchecks": {"web": [check]}}))
    commit(d.checkout, "a check no task passes")
    refused = d.paas.push(d.checkout, expect_ok=False).stderr
    assert "did not pass greets" in refused and "in 2 attempts" in refused, refused
    assert d.services() == [live]
    assert d.paas.get(d.app).body == "v1 \n"

    (d.checkout / "app.json").write_text(json.dumps({"healthchecks": {"web": [{**check, "content": "v1"}]}}))
    commit(d.checkout, "a check every task passes")
    pushed = d.paas.push(d.checkout).stderr
    assert pushed.count("passed: greets") == 3, pushed
    _wait_live(d, d.service(7), "v1 \n")


def test_deploy_of_the_live_commit_rolls_out_only_when_its_tasks_do_not_run(deployed: Deployed) -> None:
    """`deploy APP` of the live commit does nothing while the live service runs its tasks; after `ps:stop` (the
    service kept, at 0 tasks) it rolls the commit out again."""
    d = deployed
    said = d.paas.run("deploy", d.app)
    assert "is already live as release 7; nothing to do" in said.stdout + said.stderr, said
    d.paas.run("ps:stop", d.app)
    assert d.services() == [d.service(7)] and d.paas.get(d.app).status == 503
    said = d.paas.run("deploy", d.app)
    assert "nothing to do" not in said.stdout + said.stderr, said
    _wait_live(d, d.service(8), "v1 \n")


VICTIM = """\
const http = require("http");
http.createServer((req, res) => res.end("victim " + process.env.SECRET + "\\n")).listen(process.env.PORT || 5000);
"""


def _task_containers(d: Deployed, service: str) -> dict[str, tuple[Node, str]]:
    """Node address → (node, container id) of one running task of the service there."""
    found = {}
    for node in d.cluster.nodes:
        ids = node.docker("ps", "-q", "--filter", f"label=com.docker.swarm.service.name={service}").split()
        if ids:
            found[node.address] = (node, ids[0])
    return found


def _overlay_addresses(d: Deployed, service: str) -> list[str]:
    """The overlay addresses of the service's running tasks (on the app's `..._swarm` network)."""
    ids = d.manager.docker("service", "ps", service, "--filter", "desired-state=running", "-q").split()
    out = d.manager.docker("inspect", *ids, "--format",
                           "{{range .NetworksAttachments}}{{.Network.Spec.Name}}={{range .Addresses}}{{.}}{{end}} "
                           "{{end}}")
    return [entry.split("=", 1)[1].split("/")[0] for entry in out.split() if entry.split("=")[0].endswith("_swarm")]


def test_a_tenant_task_reaches_no_other_app_nor_the_registry(deployed: Deployed) -> None:
    """Issue 19, item 13, the attack: from inside a tenant's task on each node, the other app's tasks at their
    `node:port` (on any node, through the node itself too) and at their overlay addresses, and the registry: none
    answers; the registry refuses the anonymous catalog and manifest (401). The honest variant: the victim serves
    through nginx (on this test host: the manager's) and at each task's `node:port` from here, its own tasks reach
    each other on its overlay, and the registry answers the cluster's account. No task holds the account."""
    d = deployed
    secret = uuid.uuid4().hex
    victim = d.paas.new_app("victim")
    d.paas.run("ps:scale", victim, "web=3")
    d.paas.run("config:set", victim, f"SECRET={secret}")
    checkout = d.paas.checkout(victim, APPS / "env-echo")
    (checkout / "server.js").write_text(VICTIM)
    commit(checkout, "a victim with a secret")
    d.paas.push(checkout)
    victim_service = d.service(1, app=victim)
    assert d.paas.get(victim).body == f"victim {secret}\n"  # through nginx
    addresses = sorted(_task_addresses(d.manager, victim_service))
    assert len({a.rsplit(":", 1)[0] for a in addresses}) == 3, addresses
    for address in addresses:  # from where nginx is, straight to each task
        assert _get(address) == f"victim {secret}\n", address
    port = json.loads(d.manager.docker("service", "inspect", victim_service, "--format",
                                       "{{json .Spec.EndpointSpec.Ports}}"))[0]["TargetPort"]
    overlay = [f"{ip}:{port}" for ip in _overlay_addresses(d, victim_service)]
    assert len(overlay) == 3, overlay
    own = _task_containers(d, victim_service)
    sibling = probe(*next(iter(own.values())), overlay)["results"]
    assert all(outcome.endswith(f"victim {secret}\n") for outcome in sibling.values()), sibling  # type: ignore[union-attr]

    registry = f"{d.manager.address}:5000"
    tenants = _task_containers(d, d.service(8))
    assert sorted(tenants) == sorted(n.address for n in d.cluster.nodes), tenants  # a tenant task on every node
    targets = [*addresses, *overlay, *{f"GATEWAY:{a.rsplit(':', 1)[1]}" for a in addresses}, registry]
    account = registry_account(d.paas)
    for node, container in tenants.values():
        seen = probe(node, container, targets)
        results: dict[str, str] = seen["results"]  # type: ignore[assignment]
        for target, outcome in results.items():
            if target.split(":")[0] in {o.split(":")[0] for o in overlay}:
                assert secret not in outcome and "victim" not in outcome, (node.name, target, outcome)
            else:
                assert blocked(outcome), (node.name, target, outcome)
        assert account[1] not in json.dumps(seen["env"]), node.name  # the account is nowhere in the task
        inspected = node.docker("inspect", container, "--format", "{{json .Config.Env}} {{json .Mounts}}")
        assert account[1] not in inspected and "/cluster" not in inspected, inspected
        # From the node itself, not a container: another node's task port answers only where nginx is.
        others = [a.replace(":", "/") for a in addresses if a.rsplit(":", 1)[0] != node.address]
        reached = node.sh(" ".join(f"(timeout 3 bash -c 'exec 3<>/dev/tcp/{a}' 2>/dev/null && echo open {a} "
                                   f"|| echo closed {a}) &" for a in others) + " wait").split("\n")
        assert sorted(line for line in reached if line) == sorted(f"closed {a}" for a in others), (node.name, reached)
    assert account[1] not in d.manager.docker("service", "inspect", victim_service)

    # The registry: anonymous catalog and manifest refused; the account lists both apps' repositories.
    ca = str(d.paas.home / "cluster" / "ca.crt")
    manifest = f"https://{registry}/v2/{d.paas.repository(victim)}/manifests/1"
    for url in (f"https://{registry}/v2/_catalog", manifest):
        assert requests.get(url, verify=ca, timeout=10).status_code == 401, url
    catalog = requests.get(f"https://{registry}/v2/_catalog", verify=ca, auth=account, timeout=10).json()
    assert {d.paas.repository(victim), d.paas.repository(d.app)} <= set(catalog["repositories"]), catalog
    assert requests.get(manifest, verify=ca, auth=account, timeout=10).status_code == 200
    assert d.paas.get(d.app).body == "v1 \n"  # the tenant still serves
    d.seen["victim"] = victim
    d.seen["secret"] = secret


def test_a_tag_moved_in_the_registry_does_not_change_what_a_task_runs(deployed: Deployed) -> None:
    """The victim's service names its image by digest: the tag `:1` pointed at the tenant's image in the registry
    (as whoever held the account could), every node's reference dropped, the tasks replaced: each new task pulls
    and runs the victim's own image, and serves its own answer."""
    d = deployed
    victim, secret = d.seen["victim"], d.seen["secret"]
    service = d.service(1, app=victim)
    registry = f"{d.manager.address}:5000"
    repository = f"{registry}/{d.paas.repository(victim)}"
    pinned = d.manager.docker("service", "inspect", service, "--format",
                              "{{.Spec.TaskTemplate.ContainerSpec.Image}}").strip()
    digest = pinned.rpartition("@")[2]
    assert pinned == f"{repository}:1@{digest}" and digest.startswith("sha256:"), pinned
    user, password = registry_account(d.paas)
    d.manager.docker("login", "-u", user, "--password-stdin", registry, input=password.encode())
    try:
        tenant = d.manager.docker("service", "inspect", d.service(8), "--format",
                                  "{{.Spec.TaskTemplate.ContainerSpec.Image}}").strip().rpartition("@")[0]
        d.manager.docker("tag", tenant, f"{repository}:1")
        d.manager.docker("push", f"{repository}:1")
    finally:
        d.manager.docker("logout", registry)
    head = requests.head(f"https://{registry}/v2/{d.paas.repository(victim)}/manifests/1",
                         verify=str(d.paas.home / "cluster" / "ca.crt"), auth=(user, password), timeout=10,
                         headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"})
    assert head.headers["Docker-Content-Digest"] != digest  # the tag moved
    for node in d.cluster.nodes:
        node.docker("image", "rm", "-f", f"{repository}@{digest}", check=False)
    before = _task_addresses(d.manager, service)
    d.manager.docker("service", "update", "--force", "--detach", service)
    wait_for(lambda: len(_task_addresses(d.manager, service)) == 3 and not _task_addresses(d.manager, service) & before,
             "3 new tasks of the victim's service", 120)
    built = d.manager.docker("image", "inspect", d.paas.image(victim, 1), "--format", "{{.Id}}").strip()
    for node, container in _task_containers(d, service).values():
        assert node.docker("inspect", container, "--format", "{{.Image}}").strip() == built, node.name
    for address in _task_addresses(d.manager, service):
        assert _get(address) == f"victim {secret}\n", address


PING_REDIS = """\
const u = new URL(process.env.REDIS_URL);
const s = require("net").connect(Number(u.port || 6379), u.hostname, () => {
  s.write((u.password ? "AUTH " + decodeURIComponent(u.password) + "\\r\\n" : "") + "PING\\r\\n");
});
let got = "";
s.on("data", (d) => { got += d; if (got.includes("PONG")) { console.log("PONG"); process.exit(0); } });
s.on("error", (e) => { console.log("error " + e.message); process.exit(1); });
setTimeout(() => { console.log("no answer: " + got); process.exit(2); }, 10000);
"""


def test_a_linked_redis_answers_every_node_and_destroy_leaves_nothing(deployed: Deployed) -> None:
    """Last: a Redis linked to the app stays a container on the manager and joins the app's overlay, so a task
    on every node reaches it by its URL's name; then `apps:destroy` removes the app's services, its overlay and
    its images' manifests in the cluster's registry."""
    d = deployed
    d.paas.run("redis:create", "cache")
    d.paas.run("redis:link", "cache", d.app)
    live = wait_for(lambda: (lambda s: s[0] if len(s) == 1 and s[0] != d.service(8) else None)(d.services()),
                    "the linked release's service alone", 90)
    nodes = set()
    for node in d.cluster.nodes:
        ids = node.docker("ps", "-q", "--filter", f"label=com.docker.swarm.service.name={live}").split()
        for container in ids[:1]:
            out = node.docker("exec", container, "node", "-e", PING_REDIS, check=False)
            assert out.strip() == "PONG", (node.name, out)
            nodes.add(node.name)
    assert len(nodes) >= 2, nodes  # the manager's own and at least one other node's tasks

    repository = f"{d.paas.instance}/{d.app}"
    base, ca = f"https://{d.manager.address}:5000", str(d.paas.home / "cluster" / "ca.crt")
    auth = registry_account(d.paas)
    tags = requests.get(f"{base}/v2/{repository}/tags/list", verify=ca, auth=auth, timeout=10).json().get("tags") or []
    assert tags, "the app's images are in the registry"
    d.paas.run("redis:unlink", "cache", d.app)
    d.paas.run("apps:destroy", d.app, "--force")
    assert not d.services() and not [s for s in service_names(d.manager) if f"-{d.app}-" in s]
    # The Swarm forgets the network at once; the manager's engine lets its own copy go a moment later.
    def overlays() -> list[str]:
        listed = d.manager.docker("network", "ls", "--filter", "driver=overlay", "--format", "{{.Name}}").split()
        return [name for name in listed if d.app in name]

    wait_for(lambda: not overlays(), "the app's overlays gone", 60)
    left = requests.get(f"{base}/v2/{repository}/tags/list", verify=ca, auth=auth, timeout=10).json().get("tags") or []
    assert not left, left
