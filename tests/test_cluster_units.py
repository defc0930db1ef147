"""The fast tier's share of the cluster: what `cluster:nodes` reads of a node's `df`, and how it prints it; the
nodes' firewall rules and the registry's account (issue 19, item 13) as text."""

from __future__ import annotations

import pytest

from minipaas.cluster import credentials, disks, firewall, registry
from minipaas.errors import Conflict, EngineError, InvalidInput


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
