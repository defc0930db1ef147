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
from dataclasses import dataclass

from minipaas.adapters import engine
from minipaas.errors import EngineError, NotFound

PREFIX = 26  # addresses per app network: 64, of which 62 for containers
ATTEMPTS = 32


@dataclass(frozen=True)
class PoolUsage:
    """How much of the address pool the engine's networks hold: /`prefix` networks in all, and taken (overlapping
    a network the engine has: this instance's, another instance's, anyone's)."""

    pool: str
    prefix: int
    total: int
    taken: int

    @property
    def free(self) -> int:
        return self.total - self.taken

    @property
    def nearly_full(self) -> bool:
        """A tenth or less is left (at least 2): time to say so, before an app's deploy meets a full pool."""
        return self.free <= max(2, self.total // 10)

    def summary(self) -> str:
        return f"MINIPAAS_SUBNETS {self.pool}: {self.taken} of its {self.total} /{self.prefix} networks taken"

    def warning(self) -> str | None:
        """One line when the pool is full or nearly so; None while there is room."""
        if self.free <= 0:
            return (f"MINIPAAS_SUBNETS {self.pool} has no /{self.prefix} network left (all {self.total} taken): no "
                    "app with containers, review app or service can start until one is freed or the pool is widened "
                    "(subnets in settings.toml)")
        if self.nearly_full:
            return (f"MINIPAAS_SUBNETS {self.pool} has {self.free} of its {self.total} /{self.prefix} networks left "
                    "(each app or review app with containers and each service takes one): widen it (subnets in "
                    "settings.toml) before it runs out")
        return None


def _taken_blocks(pool: ipaddress.IPv4Network, taken: Iterable[str], prefix: int) -> list[tuple[int, int]]:
    """The /`prefix` blocks of `pool` that `taken` (IPv4 CIDRs, others ignored) overlap, as sorted, merged
    [first, last] index ranges: arithmetic on integers, whatever the number of networks."""
    size = 1 << (32 - prefix)
    base, top = int(pool.network_address), int(pool.broadcast_address)
    spans = []
    for cidr in taken:
        try:
            net = ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            continue
        if net.version != 4:
            continue
        low, high = max(int(net.network_address), base), min(int(net.broadcast_address), top)
        if low <= high:
            spans.append(((low - base) // size, (high - base) // size))
    merged: list[tuple[int, int]] = []
    for first, last in sorted(spans):
        if merged and first <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], last))
        else:
            merged.append((first, last))
    return merged


def usage_of(pool: str, taken: Iterable[str], prefix: int = PREFIX) -> PoolUsage:
    """The pool's usage given the networks in use (pure)."""
    net = ipaddress.ip_network(pool)
    total = 1 << max(prefix - net.prefixlen, 0) if net.prefixlen <= prefix else 0
    used = sum(last - first + 1 for first, last in _taken_blocks(net, taken, prefix))
    return PoolUsage(pool, prefix, total, used)


def free_subnet(pool: str, taken: Iterable[str], prefix: int = PREFIX) -> str | None:
    """The first /`prefix` of `pool` that overlaps none of `taken` (CIDRs); None when the pool is full."""
    net = ipaddress.ip_network(pool)
    if net.prefixlen > prefix:
        return None
    candidate = 0
    for first, last in _taken_blocks(net, taken, prefix):
        if candidate < first:
            break
        candidate = max(candidate, last + 1)
    if candidate >= 1 << (prefix - net.prefixlen):
        return None
    return str(ipaddress.ip_network((int(net.network_address) + candidate * (1 << (32 - prefix)), prefix)))


def _subnets_in_use() -> list[str]:
    found = []
    for network in engine.wire.get("/networks"):
        for config in ((network.get("IPAM") or {}).get("Config") or []):
            if config.get("Subnet") and ":" not in config["Subnet"]:
                found.append(config["Subnet"])
    return found


def usage(pool: str) -> PoolUsage:
    """The pool's usage now, from the engine's networks."""
    return usage_of(pool, _subnets_in_use())


def ensure_app_network(name: str, *, pool: str, labels: dict[str, str]) -> None:
    """Create the app's network unless it exists (idempotent; two creators at once are fine)."""
    if exists(name):
        return
    api, docker = engine.client().api, engine.sdk.docker
    refused: list[str] = []  # subnets the engine said overlap, though no listed network holds them
    for _ in range(ATTEMPTS):
        # another process may take the subnet between our look and our create, and a network being
        # removed holds its pool a moment after it leaves the list: either way, try the next one
        subnet = free_subnet(pool, [*_subnets_in_use(), *refused])
        if subnet is None:
            raise EngineError(f"no free /{PREFIX} left in MINIPAAS_SUBNETS ({pool}) for the network {name}: widen it "
                              "(subnets in settings.toml) or free one (apps:destroy, a review branch deleted)")
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
        found = engine.wire.get(f"/networks/{name}")
    except NotFound:
        return None
    return sorted((found.get("Containers") or {}).keys())


def remove(name: str) -> None:
    """Remove a network (absent is fine; one still in use is left for the next cleanup)."""
    api, docker = engine.client().api, engine.sdk.docker
    try:
        api.remove_network(name)
    except docker.errors.NotFound:
        return
    except docker.errors.APIError:
        return  # a container is still attached: gc or the next destroy removes it
