"""Which containers the engine has and what state each is in (the listing and the inspection), and how it runs
them (its cgroups): read-only, over the standard library's HTTP (wire.py), so that `ps`, `report` and the
watcher's lookups need not load the SDK."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

from minipaas.adapters.engine import wire
from minipaas.errors import NotFound


@dataclass(frozen=True)
class Container:
    id: str
    name: str
    status: str  # created, running, exited, ...
    labels: dict[str, str]
    ip: str  # address on the minipaas network, "" when not attached or not running
    health: str = ""  # Docker's own health status when the image defines one
    exit_code: int = 0
    restarts: int = 0
    started_ns: int = 0  # when it last started, in ns since the epoch (0: never)


def inspect(ref: str, *, network: str = "") -> Container:
    return _container(_inspected(ref), network)


def containers(labels: dict[str, str], *, network: str = "") -> list[Container]:
    """All containers (running or not) carrying every one of `labels`."""
    found = wire.get("/containers/json", all="1", filters={"label": [f"{k}={v}" for k, v in labels.items()]})
    result = []
    for summary in found:
        try:
            result.append(inspect(summary["Id"], network=network))
        except NotFound:
            continue  # removed between the listing and the inspection
    return result


def process_uid(ref: str) -> int | None:
    """The host uid the container's first process runs as (None when it is not running)."""
    try:
        pid = int(((_inspected(ref).get("State") or {}).get("Pid")) or 0)
    except NotFound:
        return None
    if pid <= 0:
        return None
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8") as status:
            for line in status:
                if line.startswith("Uid:"):
                    return int(line.split()[2])  # the effective uid
    except OSError:
        return None
    return None


def cgroups() -> tuple[str, int, bool]:
    """The engine's cgroup driver and version, and whether it runs on this machine (its cgroups are ours)."""
    info = wire.get("/info")
    return str(info.get("CgroupDriver") or ""), int(info.get("CgroupVersion") or 1), wire.local()


def _inspected(ref: str) -> dict[str, Any]:
    try:
        return wire.get(f"/containers/{ref}/json")  # type: ignore[no-any-return]
    except NotFound:
        raise NotFound(f"container {ref} does not exist") from None


def _container(attrs: dict[str, Any], network: str) -> Container:
    state = attrs.get("State") or {}
    nets = (attrs.get("NetworkSettings") or {}).get("Networks") or {}
    ip = ""
    if network and network in nets:
        ip = nets[network].get("IPAddress") or ""
    elif nets:
        ip = next(iter(nets.values())).get("IPAddress") or ""
    return Container(
        id=attrs["Id"],
        name=attrs.get("Name", "").lstrip("/"),
        status=state.get("Status", "unknown"),
        labels=dict((attrs.get("Config") or {}).get("Labels") or {}),
        ip=ip,
        health=((state.get("Health") or {}).get("Status") or ""),
        exit_code=int(state.get("ExitCode") or 0),
        restarts=int(attrs.get("RestartCount") or 0),
        started_ns=_epoch_ns(str(state.get("StartedAt") or "")),
    )


def _epoch_ns(stamp: str) -> int:
    """The engine's RFC 3339 times (nanoseconds, "Z") as ns since the epoch; 0 for its zero time."""
    if not stamp or stamp.startswith("0001-"):
        return 0
    whole, _, fraction = stamp.rstrip("Z").partition(".")
    try:
        seconds = datetime.datetime.fromisoformat(whole).replace(tzinfo=datetime.UTC).timestamp()
    except ValueError:
        return 0
    return int(seconds) * 1_000_000_000 + int((fraction + "000000000")[:9] or 0)
