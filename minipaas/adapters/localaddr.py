"""Which of this host's addresses its packets to another host leave from (the kernel's route choice).

In a cluster, nginx and the health checks on the manager open connections to the tasks' `node:port`; the nodes'
firewall lets a task's published port answer that one address (cluster/firewall.py). A UDP socket's `connect`
sends nothing: it only asks the kernel for the route, whose source address `getsockname` then gives.
"""

from __future__ import annotations

import ipaddress
import socket

from minipaas.errors import EngineError


def source_toward(address: str) -> str:
    """This host's address on the route to `address` (an IP): what the host there sees as the source."""
    family = socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect((address, 9))  # the discard port; nothing is sent
        except OSError as exc:
            raise EngineError(f"this host has no route to {address}: {exc.strerror or exc}") from None
        return str(probe.getsockname()[0])
