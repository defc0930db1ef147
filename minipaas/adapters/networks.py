"""Docker networks: one bridge network per app, on a small subnet of minipaas' own address pool.

An app's containers live on a network of their own (`<instance>-<app>`), so that no app's container
can open a connection to another app's, and so that an address nginx routes to can only ever belong
to a container of the same app: when a container goes away outside minipaas (a `docker rm -f`, an
engine restart), the next container to take its address is on the same network, hence the same
app's. The host (nginx, the health check) reaches every network's addresses.

Each network gets a /26 (62 containers) from `MINIPAAS_SUBNETS` (default 10.213.0.0/16: 1024 apps),
not from Docker's default pools, which run out after about thirty networks.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

import docker.errors

from minipaas.adapters import engine
from minipaas.errors import EngineError

PREFIX = 26  # addresses per app network: 64, of which 62 for containers
ATTEMPTS = 32


def free_subnet(pool: str, taken: Iterable[str], prefix: int = PREFIX) -> str | None:
    """The first /`prefix` of `pool` that overlaps none of `taken` (CIDRs); None when the pool is full."""
    used = [ipaddress.ip_network(t, strict=False) for t in taken]
    for candidate in ipaddress.ip_network(pool).subnets(new_prefix=prefix):
        if not any(candidate.overlaps(u) for u in used):
            return str(candidate)
    return None


def _subnets_in_use() -> list[str]:
    found = []
    for network in engine.client().api.networks():
        for config in ((network.get("IPAM") or {}).get("Config") or []):
            if config.get("Subnet") and ":" not in config["Subnet"]:
                found.append(config["Subnet"])
    return found


def ensure_app_network(name: str, *, pool: str, labels: dict[str, str]) -> None:
    """Create the app's network unless it exists (idempotent; two creators at once are fine)."""
    api = engine.client().api
    try:
        api.inspect_network(name)
        return
    except docker.errors.NotFound:
        pass
    refused: list[str] = []  # subnets the engine said overlap, though no listed network holds them
    for _ in range(ATTEMPTS):
        # another process may take the subnet between our look and our create, and a network being
        # removed holds its pool a moment after it leaves the list: either way, try the next one
        subnet = free_subnet(pool, [*_subnets_in_use(), *refused])
        if subnet is None:
            raise EngineError(f"no free /{PREFIX} left in MINIPAAS_SUBNETS ({pool}) for the network {name}")
        ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=subnet)])
        try:
            api.create_network(name, driver="bridge", ipam=ipam, labels=labels, check_duplicate=True)
            return
        except docker.errors.APIError as exc:
            if exc.status_code == 409 or "already exists" in str(exc):
                return  # created meanwhile by another process
            if "overlap" not in str(exc).lower():
                raise EngineError(f"cannot create docker network {name}: {engine.reason(exc)}") from None
            refused.append(subnet)
    raise EngineError(f"cannot create docker network {name}: {ATTEMPTS} subnets in a row were taken meanwhile")


def exists(name: str) -> bool:
    return attached(name) is not None


def attached(name: str) -> list[str] | None:
    """The ids of the containers on the network; None when there is no such network."""
    try:
        found = engine.client().api.inspect_network(name)
    except docker.errors.NotFound:
        return None
    return sorted((found.get("Containers") or {}).keys())


def remove(name: str) -> None:
    """Remove a network (absent is fine; one still in use is left for the next cleanup)."""
    api = engine.client().api
    try:
        api.remove_network(name)
    except docker.errors.NotFound:
        return
    except docker.errors.APIError:
        return  # a container is still attached: gc or the next destroy removes it
