"""App networks (adapters/networks.py) against the real engine: many creators at once on one pool."""

from __future__ import annotations

import ipaddress
import uuid
from concurrent.futures import ThreadPoolExecutor

from minipaas.adapters import networks
from tests.helpers.host import docker


def test_networks_created_at_once_each_get_their_own_subnet(engine_ready: None) -> None:
    """Eight creators racing for the first free /26 of a small pool: every one gets a network, no
    two share a subnet (the engine refuses the overlap; the loser moves on to the next subnet)."""
    tag = uuid.uuid4().hex[:8]
    names = [f"mp-test-{tag}-{i}" for i in range(8)]
    labels = {"minipaas-test": tag}
    pool = f"10.214.{int(tag[:2], 16) & 0xfe}.0/23"  # 8 /26s: exactly enough, so any loss shows
    try:
        with ThreadPoolExecutor(len(names)) as pool_threads:
            list(pool_threads.map(lambda n: networks.ensure_app_network(n, pool=pool, labels=labels), names))
        subnets = [docker("network", "inspect", "--format", "{{(index .IPAM.Config 0).Subnet}}", n).strip()
                   for n in names]
        assert len(set(subnets)) == len(names), subnets
        assert all(ipaddress.ip_network(s).subnet_of(ipaddress.ip_network(pool)) for s in subnets), subnets
        # Asking again for an existing network changes nothing.
        networks.ensure_app_network(names[0], pool=pool, labels=labels)
        assert len(docker("network", "ls", "-q", "--filter", f"label=minipaas-test={tag}").split()) == 8
    finally:
        found = docker("network", "ls", "-q", "--filter", f"label=minipaas-test={tag}").split()
        if found:
            docker("network", "rm", *found)
