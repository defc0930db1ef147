"""The cluster (issue 15): cluster:init, cluster:join-command, cluster:add, cluster:nodes, cluster:drain,
cluster:activate, cluster:remove, cluster:leave.

One host with plain containers stays the default; these commands make it a Docker Swarm manager with a private
registry, and back (docs/cluster.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from minipaas.cli.common import current_host, print_json, say, table

if TYPE_CHECKING:
    from minipaas.state.settings import Settings


def _settings() -> Settings:
    from minipaas.state.settings import load

    return load()


def _upgraded() -> Settings:
    """The settings, once a cluster made before its registry took credentials and its nodes had firewall rules is
    brought up to date (cluster/upgrade.py: the next cluster command does it)."""
    from minipaas.cluster import upgrade

    settings = _settings()
    upgrade.ensure(settings, say)
    return settings


@click.command("cluster:init")
@click.option("--advertise-addr", "advertise", metavar="IP",
              help="the address the other nodes reach this host at (default: the engine's choice)")
def cluster_init(advertise: str | None) -> None:
    """Make this host a Swarm manager with a private registry (TLS with a CA minipaas makes)."""
    from minipaas.cluster import membership

    membership.init(_settings(), advertise, say)


@click.command("cluster:join-command")
def cluster_join_command() -> None:
    """What a new host runs to join the cluster as a worker (trust the registry, then docker swarm join)."""
    from minipaas.cluster import membership

    for line in membership.join_command(_upgraded()):
        click.echo(line)


@click.command("cluster:add")
@click.argument("url", metavar="ssh://root@HOST[:PORT]")
@click.option("--identity", "-i", type=click.Path(dir_okay=False, path_type=Path), metavar="KEY_FILE",
              help="the private key to log in with (default: the ssh agent, then ~/.ssh/id_*)")
@click.option("--timeout", type=click.FloatRange(0.5, 120), default=10.0, show_default=True, metavar="SECONDS",
              help="for the connection, the ssh banner and the login, each")
def cluster_add(url: str, identity: Path | None, timeout: float) -> None:
    """Join a host with Docker to the cluster over ssh: trust the registry there, docker swarm join, wait Ready.

    Its host key is trusted the first time and kept in MINIPAAS_HOME/cluster/known_hosts (a changed key is
    refused). Anything that fails is undone on the host."""
    from minipaas.cluster import hosts

    hosts.add(_upgraded(), url, identity, timeout, say)


@click.command("cluster:remove")
@click.argument("node")
def cluster_remove(node: str) -> None:
    """Take a node (hostname or id) out of the cluster; a node that is up must be drained first
    (`cluster:drain`). A drained node that cluster:add brought leaves over ssh."""
    from minipaas.cluster import hosts

    hosts.remove(_upgraded(), node, say)


@click.command("cluster:nodes")
@click.option("--json", "as_json", is_flag=True)
@click.option("--no-disk", is_flag=True, help="Do not ask each node for its disk (a job on every node).")
def cluster_nodes(as_json: bool, no_disk: bool) -> None:
    """The cluster's nodes: state, availability, role, address, running tasks, disk (free of size; `?` for a
    node that takes no tasks or did not answer)."""
    from minipaas.cluster import disks, membership

    found = membership.nodes(_upgraded(), disk=not no_disk, warn=lambda line: click.echo(f"warning: {line}", err=True))
    if as_json:
        print_json([{"id": n.info.id, "hostname": n.info.hostname, "role": n.info.role, "status": n.info.status,
                     "availability": n.info.availability, "address": n.info.address, "leader": n.info.leader,
                     "engine": n.info.engine, "tasks": n.tasks,
                     "disk": {"size": n.disk.size, "free": n.disk.free} if n.disk else None} for n in found])
        return
    table(([n.info.hostname, n.info.status, n.info.availability, "leader" if n.info.leader else n.info.role,
            n.info.address, n.tasks, "-" if no_disk else disks.human(n.disk), n.info.engine] for n in found),
          ["NODE", "STATUS", "AVAILABILITY", "ROLE", "ADDRESS", "TASKS", "DISK", "ENGINE"])


@click.command("cluster:drain")
@click.argument("node")
def cluster_drain(node: str) -> None:
    """Move the node's tasks to the other nodes (health-checked and routed first), then drain it."""
    from minipaas.running import nodes
    from minipaas.state.host import Host

    nodes.drain(Host(_upgraded()), node, say)


@click.command("cluster:activate")
@click.argument("node")
def cluster_activate(node: str) -> None:
    """Let the node take new tasks again."""
    from minipaas.running import nodes
    from minipaas.state.host import Host

    nodes.activate(Host(_upgraded()), node, say)


@click.command("cluster:leave")
def cluster_leave() -> None:
    """Back to one host with plain containers (a cluster of one only: remove the other nodes first); the apps'
    services become containers on this host first, serving throughout."""
    from minipaas.running import leaving

    leaving.leave(current_host(), say)


def all_commands() -> list[click.Command]:
    return [cluster_init, cluster_join_command, cluster_add, cluster_nodes, cluster_drain, cluster_activate,
            cluster_remove, cluster_leave]
