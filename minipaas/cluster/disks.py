"""Each node's disk for `cluster:nodes`: the Swarm says nothing of it, so a global job asks every node.

The job runs `df` in a task on each node that takes tasks (not on a drained or paused one): a container's root is
an overlay on the engine's data root, so its size and free space are those of the disk that holds the node's
images and containers. Its image is the registry's own, pushed to the registry once (the nodes pull it once).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

from minipaas.adapters import engine
from minipaas.build import hostimages
from minipaas.cluster import credentials, registry
from minipaas.errors import MinipaasError
from minipaas.state.settings import Settings

DEADLINE = 20.0  # the first run pulls the image on each node (about 100 MB)
DONE = ("complete", "failed", "rejected", "shutdown", "orphaned")


@dataclass(frozen=True)
class Disk:
    size: int  # bytes
    free: int


def parse_df(text: str) -> Disk | None:
    """`df -P -B1 /`'s data line (`overlay 105089261568 22540779520 77166239744 23% /`) as a Disk."""
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 6 and fields[-1] == "/" and fields[1].isdigit() and fields[3].isdigit():
            return Disk(size=int(fields[1]), free=int(fields[3]))
    return None


def human(disk: Disk | None) -> str:
    """`77G free of 98G`, in powers of 1024 as df -h; `?` when the node did not say."""
    if disk is None:
        return "?"
    return f"{_size(disk.free)} free of {_size(disk.size)}"


def _size(value: int) -> str:
    amount, units = float(value), ["B", "K", "M", "G", "T"]
    while amount >= 1024 and len(units) > 1:
        amount /= 1024
        units.pop(0)
    return f"{amount:.0f}{units[0]}" if units[0] == "B" or amount >= 10 else f"{amount:.1f}{units[0]}"


def by_node(settings: Settings, registry_address: str | None, deadline: float = DEADLINE) -> dict[str, Disk]:
    """Node id → its disk, for the nodes whose task reported within `deadline` seconds. Nothing of the job is
    left behind: its service goes whatever happens."""
    if registry_address is None:
        return {}
    image = _probe_image(settings, registry_address)
    name = f"{settings.instance}-disk-{secrets.token_hex(4)}"
    engine.services.run_global_job(name=name, image=image, command=["df", "-P", "-B1", "/"],
                            labels={engine.LABEL: str(settings.home), registry.ROLE_LABEL: "disk"})
    try:
        tasks = _wait_finished(name, time.monotonic() + deadline)
        node_of = {task.id: task.node_id for task in tasks if task.state == "complete"}
        found: dict[str, Disk] = {}
        for task_id, line in engine.services.logs(name):
            disk = parse_df(line.decode(errors="replace"))
            if disk is not None and task_id in node_of:
                found[node_of[task_id]] = disk
        return found
    finally:
        engine.services.remove(name)


def _probe_image(settings: Settings, registry_address: str) -> str:
    """The registry's image (on the manager while the cluster runs; it has `df`) in the registry, by digest."""
    local = hostimages.ensure(settings, "registry", lambda _line: None)
    repository, _, tag = local.rpartition(":")
    target = f"{registry_address}/{repository}"
    credentials.login(settings, registry_address)  # the job's service carries the login to the nodes
    engine.tag_image(local, target, tag)
    digest = engine.push(target, tag)  # a manifest check once the registry holds it
    return f"{target}:{tag}@{digest}"


def _wait_finished(name: str, deadline: float) -> list[engine.services.Task]:
    """The job's tasks once each has ended (or at the deadline, as they are then)."""
    while True:
        try:
            tasks = engine.services.tasks(name)
        except MinipaasError:
            tasks = []
        if (tasks and all(task.state in DONE for task in tasks)) or time.monotonic() > deadline:
            return tasks
        time.sleep(0.2)
