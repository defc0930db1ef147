"""The fast tier's share of the cluster: what `cluster:nodes` reads of a node's `df`, and how it prints it; the
nodes' firewall rules and the registry's account (issue 19, item 13) as text; the rules a push follows when a node,
the manager's engine or the registry fails meanwhile (issue 20): which tasks can be routed, which failures end the
wait, how an engine that does not answer is said."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from minipaas.adapters.engine import services
from minipaas.cluster import credentials, disks, firewall, registry, releases
from minipaas.errors import Conflict, DeployFailed, EngineError, InvalidInput


def test_df_data_line_gives_size_and_free_in_bytes() -> None:
    text = ("Filesystem        1-blocks        Used   Available Capacity Mounted on\n"
            "overlay       105089261568 22540779520 77166239744      23% /\n")
    assert disks.parse_df(text) == disks.Disk(size=105089261568, free=77166239744)


def test_df_without_a_root_line_says_nothing() -> None:
    assert disks.parse_df("") is None
    assert disks.parse_df("df: /: No such file or directory\n") is None
    assert disks.parse_df("tmpfs 1000 10 990 1% /tmp\n") is None


def test_disk_prints_as_df_h_would() -> None:
    assert disks.human(disks.Disk(size=105089261568, free=77166239744)) == "72G free of 98G"
    assert disks.human(disks.Disk(size=8 * 2**30, free=int(1.5 * 2**30))) == "1.5G free of 8.0G"
    assert disks.human(disks.Disk(size=2**40 * 3, free=512)) == "512B free of 3.0T"
    assert disks.human(None) == "?"


# -- issue 19, item 13: the nodes' firewall rules and the registry's account, as text -----------------------------

RULES = firewall.Rules(allowed=("172.18.0.1",), blocked=("172.18.0.3", "172.18.0.2"), ports="32768:60999",
                       front=(80, 443))


def test_rules_render_as_iptables_restore_text_in_two_chains_of_minipaas_own() -> None:
    assert firewall.render(RULES).splitlines() == [
        "*filter",
        ":MINIPAAS-CLUSTER - [0:0]",
        ":MINIPAAS-TENANTS - [0:0]",
        "-A MINIPAAS-CLUSTER -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN",
        "-A MINIPAAS-CLUSTER -i docker0 -j MINIPAAS-TENANTS",
        "-A MINIPAAS-CLUSTER -i docker_gwbridge -j MINIPAAS-TENANTS",
        "-A MINIPAAS-CLUSTER -i br-+ -j MINIPAAS-TENANTS",
        "-A MINIPAAS-CLUSTER -s 172.18.0.1/32 -p tcp -m conntrack --ctstate DNAT --ctorigdstport 32768:60999 "
        "-j RETURN",
        "-A MINIPAAS-CLUSTER -p tcp -m conntrack --ctstate DNAT --ctorigdstport 32768:60999 -j DROP",
        "-A MINIPAAS-TENANTS -p udp --dport 53 -j RETURN",
        "-A MINIPAAS-TENANTS -p tcp -m multiport --dports 53,80,443 -j RETURN",
        "-A MINIPAAS-TENANTS -m addrtype --dst-type LOCAL -j REJECT",
        "-A MINIPAAS-TENANTS -m conntrack --ctorigdst 172.18.0.2/32 -j REJECT",
        "-A MINIPAAS-TENANTS -m conntrack --ctorigdst 172.18.0.3/32 -j REJECT",
        "-A MINIPAAS-TENANTS -p tcp -m multiport --dports 2377,7946 -j REJECT",
        "-A MINIPAAS-TENANTS -p udp -m multiport --dports 4789,7946 -j REJECT",
        "COMMIT",
    ]


def test_rules_take_only_ip_addresses_and_a_port_range() -> None:
    for bad in ("10.0.0.1 -j ACCEPT", "node-2", "10.0.0.1/8", ""):
        with pytest.raises(InvalidInput):
            firewall.render(firewall.Rules(allowed=(bad,), blocked=(), ports="1:2", front=()))
    with pytest.raises(InvalidInput):
        firewall.render(firewall.Rules(allowed=(), blocked=(), ports="1:2 -j ACCEPT", front=()))
    # IPv6 addresses are left out (the rules are IPv4's), duplicates once.
    text = firewall.render(firewall.Rules(allowed=("fd00::1", "10.0.0.1", "10.0.0.1"), blocked=(), ports="1:2",
                                          front=()))
    assert text.count("-s 10.0.0.1/32") == 1 and "fd00" not in text


def test_port_range_reads_ip_local_port_range() -> None:
    assert firewall.port_range("32768\t60999\n") == "32768:60999"
    for bad in ("", "32768", "60999 32768", "0 10", "1 70000", "a b"):
        with pytest.raises(EngineError):
            firewall.port_range(bad)


def test_join_lines_set_the_same_rules_with_the_hosts_own_iptables_and_range() -> None:
    lines = firewall.join_lines(RULES)
    assert lines[0] == "ports=$(tr -s '\\t ' ':' < /proc/sys/net/ipv4/ip_local_port_range)"
    assert lines[1] == "iptables-restore --noflush <<EOF" and lines[-3] == "EOF"
    assert lines[2:-3] == firewall.render(RULES).replace("32768:60999", "$ports").splitlines()
    assert lines[-2:] == [
        "iptables -C DOCKER-USER -j MINIPAAS-CLUSTER 2>/dev/null || iptables -I DOCKER-USER 1 -j MINIPAAS-CLUSTER",
        "iptables -C INPUT -j MINIPAAS-CLUSTER 2>/dev/null || iptables -I INPUT 1 -j MINIPAAS-CLUSTER"]


class Recording:
    """A node's iptables as far as `apply` and `remove` ask: which binaries hold DOCKER-USER, the chains, the jumps."""

    where = "node-9"

    def __init__(self, docker_user_in: set[str], jumps: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        self.docker_user_in, self.jumps, self.chains = docker_user_in, set(jumps), set()
        self.ran: list[list[str]] = []
        self.restored: list[tuple[str, str]] = []

    def run(self, argv: list[str]) -> tuple[int, str]:
        self.ran.append(argv)
        binary, *rest = argv
        if binary == "cat":
            return 0, "32768\t60999\n"
        if rest == ["-S", "DOCKER-USER"]:
            return (0, "") if binary in self.docker_user_in else (1, "No chain/target/match by that name.")
        if rest[0] == "-S":
            return (0, "") if rest[1] in self.chains else (1, "No chain")
        if rest[0] == "-C":
            return (0, "") if rest[1] in self.jumps else (1, "Bad rule")
        if rest[0] == "-I":
            self.jumps.add(rest[1])
            return 0, ""
        if rest[0] == "-D":
            return self._delete(rest[1])
        if rest[0] == "-X":
            self.chains.discard(rest[1])
        return 0, ""

    def _delete(self, hook: str) -> tuple[int, str]:
        if hook in self.jumps:
            self.jumps.discard(hook)
            return 0, ""
        return 1, "Bad rule"

    def restore(self, binary: str, text: str) -> tuple[int, str]:
        self.restored.append((binary, text))
        self.chains |= {"MINIPAAS-CLUSTER", "MINIPAAS-TENANTS"}
        return 0, ""


def test_apply_uses_the_iptables_that_holds_docker_user_and_jumps_once() -> None:
    node = Recording({"iptables-legacy"})  # the engine on legacy tables, `iptables` being nf_tables
    rules = firewall.apply(node, allowed=["10.0.0.5"], blocked=["10.0.0.5"], front=(80, 443))
    assert rules == firewall.Rules(("10.0.0.5",), ("10.0.0.5",), "32768:60999", (80, 443))
    assert node.restored == [("iptables-legacy", firewall.render(rules))]
    assert node.jumps == {"DOCKER-USER", "INPUT"}
    inserted = [argv for argv in node.ran if argv[1] == "-I"]
    assert inserted == [["iptables-legacy", "-I", "DOCKER-USER", "1", "-j", "MINIPAAS-CLUSTER"],
                        ["iptables-legacy", "-I", "INPUT", "1", "-j", "MINIPAAS-CLUSTER"]]
    firewall.apply(node, allowed=["10.0.0.5"], blocked=["10.0.0.5"], front=(80, 443))  # again: no second jump
    assert len([argv for argv in node.ran if argv[1] == "-I"]) == 2

    firewall.remove(node)
    assert node.jumps == set() and node.chains == set()


def test_apply_refuses_a_node_whose_engine_has_no_docker_user_chain() -> None:
    node = Recording(set())
    with pytest.raises(Conflict, match="node-9 has no DOCKER-USER chain"):
        firewall.apply(node, allowed=["10.0.0.5"], blocked=[], front=())
    assert node.restored == []


def test_the_registry_takes_only_its_account_hashed_with_bcrypt() -> None:
    import bcrypt

    account = credentials.Credentials(username="minipaas", password="s3cret-Pass")
    line = credentials.htpasswd_line(account)
    user, _, hashed = line.rstrip("\n").partition(":")
    assert user == "minipaas" and hashed.startswith("$2b$05$") and line.endswith("\n")
    assert bcrypt.checkpw(b"s3cret-Pass", hashed.encode()) and not bcrypt.checkpw(b"s3cret-pass", hashed.encode())
    for config in (registry.CONFIG, registry.READONLY):
        assert "auth:\n  htpasswd:\n    realm: minipaas\n    path: /etc/docker/registry/htpasswd\n" in config


# -- issue 20: a cluster's faults during a push, the parts that are rules -------------------------------------------

def _placed(task: str, *, state: str = "running", node: str = "ready", address: str = "10.0.0.2",
            port: int | None = 32768) -> services.Placed:
    return services.Placed(id=task, state=state, node_state=node, node_address=address, port=port)


def test_a_task_is_routable_on_a_ready_node_with_its_port_or_at_the_address_minipaas_routed_it() -> None:
    placed = [
        _placed("a"),                                    # ready, port said: its node's address and port
        _placed("b", port=None),                         # the manager restarted: the worker no longer says its port
        _placed("c", node="unknown", port=None),         # ... nor has the manager heard from its node yet
        _placed("d", node="unknown", port=32770),        # not routed before: not before its node is ready
        _placed("e", node="down"),                       # its node is gone, routed or not
        _placed("f", state="starting", port=None),       # not running yet
        _placed("g", port=None, address="10.0.0.3"),     # no port, never routed: nowhere to send requests
    ]
    known = {"b": "10.0.0.2:32769", "c": "10.0.0.3:32771", "e": "10.0.0.2:32772"}
    assert releases.addresses(placed, known) == {"10.0.0.2:32768": "a", "10.0.0.2:32769": "b", "10.0.0.3:32771": "c"}
    assert releases.addresses(placed) == {"10.0.0.2:32768": "a"}  # `d`'s node is not ready
    assert releases.unaddressed(placed, known) == ["g"]
    assert releases.unaddressed(placed) == ["b", "g"]


def _waiting(monkeypatch: pytest.MonkeyPatch, placed: list[services.Placed],
             failures: list[services.Failure]) -> None:
    monkeypatch.setattr(services, "placed", lambda name: placed)
    monkeypatch.setattr(services, "failures", lambda name: failures)
    monkeypatch.setattr(releases.time, "sleep", lambda seconds: None)


def test_waiting_for_tasks_passes_over_failures_from_before_and_stops_when_no_port_can_be_known(
        monkeypatch: pytest.MonkeyPatch) -> None:
    before = services.Failure(id="x", state="failed", why="task: non-zero exit (143)")  # the engine stopped it
    _waiting(monkeypatch, [_placed("a"), _placed("b", port=32769)], [before])
    assert releases.wait_running("s", 2, deadline=1e12, web=True, ignore=frozenset({"x"})) == {
        "10.0.0.2:32768": "a", "10.0.0.2:32769": "b"}
    _waiting(monkeypatch, [_placed("a")], [before])
    with pytest.raises(DeployFailed, match=r"^a task of s failed before running: failed: task: non-zero exit \(143\)$"):
        releases.wait_running("s", 2, deadline=1e12, web=True)
    _waiting(monkeypatch, [_placed("a"), _placed("b", port=None)], [before])
    with pytest.raises(releases.PortsUnknown, match=r"^1 running task of s no longer say"):
        releases.wait_running("s", 2, deadline=1e12, web=True, ignore=frozenset({"x"}))
    assert releases.wait_running("s", 2, deadline=1e12, web=True, ignore=frozenset({"x"}),
                                 known={"b": "10.0.0.2:32769"}) == {"10.0.0.2:32768": "a", "10.0.0.2:32769": "b"}


def _pulls(monkeypatch: pytest.MonkeyPatch, *, answers: bool, tasks: set[str]) -> tuple[releases.Pulls, list[str]]:
    said: list[str] = []
    monkeypatch.setattr(registry, "answers", lambda *args: answers)
    monkeypatch.setattr(services, "task_ids", lambda name: set(tasks))
    monkeypatch.setattr(credentials, "load", lambda settings: None)
    from minipaas.state.settings import Settings

    settings = Settings.__new__(Settings)
    monkeypatch.setattr(registry, "files", lambda s: type("F", (), {"ca_cert": "/nowhere/ca.crt"})())
    return releases.Pulls(settings, "10.0.0.5:5000", said.append), said


PULL = "No such image: 10.0.0.5:5000/mp/hello:7@sha256:0123"


def test_a_pull_refused_while_the_registry_restarts_ends_the_wait_only_for_a_task_made_after_it_answered(
        monkeypatch: pytest.MonkeyPatch) -> None:
    exited = services.Failure(id="t1", state="failed", why="task: non-zero exit (3)")
    pulled = services.Failure(id="t2", state="rejected", why=PULL)
    pulls, said = _pulls(monkeypatch, answers=False, tasks={"t1", "t2", "t3"})
    assert pulls.final("s", [exited, pulled]) == [exited]  # a process that exits: at once
    assert pulls.final("s", [pulled]) == [] and pulls.final("s", [pulled]) == []  # the registry is down: wait
    assert len(said) == 1 and "does not answer: the nodes cannot pull the image of s; waiting" in said[0], said
    pulls.waiting = releases.time.monotonic() - releases.REGISTRY_WAIT - 1
    with pytest.raises(DeployFailed, match=r"^the cluster's registry \(10\.0\.0\.5:5000\) did not answer within 60s"):
        pulls.final("s", [pulled])

    pulls, said = _pulls(monkeypatch, answers=True, tasks={"t2", "t3"})  # back: t3, made before, pulls again
    assert pulls.final("s", [pulled]) == []
    assert said and "the Swarm starts the task again" in said[-1], said
    again = services.Failure(id="t4", state="rejected", why=PULL)  # made after it answered: the pull is refused
    assert pulls.final("s", [pulled, again]) == [again]


def test_an_engine_that_does_not_answer_is_said_in_one_line() -> None:
    import docker.errors
    import requests
    import urllib3

    from minipaas.adapters.engine.sdk import _Answering, not_answering, reason

    refused = requests.exceptions.ConnectionError(
        "HTTPConnectionPool(host='172.19.0.2', port=2375): Max retries exceeded with url: /v1.41/tasks (Caused by "
        "NewConnectionError('<urllib3.connection.HTTPConnection object>: Failed to establish a new connection: "
        "[Errno 111] Connection refused'))")
    assert not_answering(refused).message == (
        "the Docker engine does not answer (Connection refused); it may be restarting (`docker info` tells)")
    broken = requests.exceptions.ConnectionError("('Connection aborted.', RemoteDisconnected('closed'))")
    assert "(the connection broke)" in not_answering(broken).message

    def pushing() -> Iterator[dict[str, str]]:  # the engine goes away half-way through a push's progress
        yield {"status": "Pushing"}
        raise urllib3.exceptions.ProtocolError("Connection broken: IncompleteRead(0 bytes read)")

    class Api:
        base_url = "http://172.19.0.2:2375"

        def tasks(self) -> None:
            raise refused

        def push(self) -> Iterator[dict[str, str]]:
            return pushing()

    wrapped = _Answering(Api())
    assert wrapped.base_url == "http://172.19.0.2:2375"
    with pytest.raises(EngineError, match=r"^the Docker engine does not answer"):
        wrapped.tasks()
    stream = wrapped.push()
    assert next(stream) == {"status": "Pushing"}
    with pytest.raises(EngineError, match=r"^the Docker engine does not answer \(the connection broke\)"):
        next(stream)

    response = requests.Response()
    response.status_code = 503
    for said in ('This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" ...',
                 'rpc error: code = Unavailable desc = connection error: desc = "transport: Error while dialing '
                 'dial unix /var/run/docker/swarm/control.sock: connect: no such file or directory"'):
        exc = docker.errors.APIError("503 Server Error for http://172.19.0.2:2375/v1.41/tasks", response=response,
                                     explanation=said)
        assert reason(exc) == "the engine's Swarm does not answer (the engine stops or restarts, or it left " \
                                     "the Swarm)"
    other = docker.errors.APIError("500 Server Error", explanation="no such image")
    assert reason(other) == '500 Server Error ("no such image")'


def test_a_push_broken_off_is_said_by_its_last_words() -> None:
    assert releases._last_words('cannot push 10.0.0.5:5000/mp/hello:7: Put "https://10.0.0.5:5000/v2/mp/hello/blobs/'
                                'uploads/84?digest=sha256%3A72": EOF') == "EOF"
    assert releases._last_words('cannot log in to the registry 10.0.0.5:5000: 500 Server Error ("Get '
                                '\\"https://10.0.0.5:5000/v2/\\": dial tcp 10.0.0.5:5000: connect: connection '
                                'refused")') == "connection refused"
    assert releases._last_words("the Docker engine does not answer (the connection broke); it may be restarting "
                                "(`docker info` tells)") == "the Docker engine does not answer (the connection broke)"


def test_a_service_removed_since_it_was_listed_has_no_task_on_any_node(monkeypatch: pytest.MonkeyPatch) -> None:
    """`cluster:drain` lists the home's services, then asks each for its tasks on the node; a retirer that removed one
    meanwhile (seen under load: the Swarm's 404 "service ... not found") left no task there, not an error."""
    from types import SimpleNamespace

    import docker.errors

    class Swarm:
        def __init__(self, error: Exception) -> None:
            self.error = error

        def tasks(self, filters: dict[str, object]) -> list[dict[str, object]]:
            raise self.error

    monkeypatch.setattr(services, "_api", lambda: Swarm(docker.errors.NotFound("service web-1 not found")))
    monkeypatch.setattr(services, "labelled", lambda labels: ["web-1"])
    assert services.task_nodes("web-1") == {}
    assert releases.tasks_on_node(SimpleNamespace(home="/h"), "node-2") == {}  # type: ignore[arg-type]
    monkeypatch.setattr(services, "_api", lambda: Swarm(docker.errors.APIError("the Swarm has no leader")))
    with pytest.raises(EngineError, match=r"^the Swarm does not list the tasks of web-1: "):
        services.task_nodes("web-1")


def test_a_tasks_stop_grace_period_is_the_apps_drain_delay_within_bounds() -> None:
    assert releases.stop_grace(10) == 10
    assert releases.stop_grace(0) == 1  # a 0 s drain still lets SIGTERM be seen
    assert releases.stop_grace(3600) == releases.STOP_GRACE_MAX == 60
