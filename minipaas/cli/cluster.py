"""The cluster (issue 15): cluster:init, cluster:join-command, cluster:nodes, cluster:drain, cluster:activate,
cluster:leave.

One host with plain containers stays the default; these commands make it a Docker Swarm manager with a private
registry, and back (docs/cluster.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from minipaas.cli.common import print_json, say, table

if TYPE_CHECKING:
    from minipaas.state.settings import Settings


def _settings() -> Settings:
    from minipaas.state.settings import load

    return load()


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

    for line in membership.join_command(_settings()):
        click.echo(line)


@click.command("cluster:nodes")
@click.option("--json", "as_json", is_flag=True)
def cluster_nodes(as_json: bool) -> None:
    """The cluster's nodes: state, availability, role, address, running tasks."""
    from minipaas.cluster import membership

    found = membership.nodes(_settings())
    if as_json:
        print_json([{"id": n.info.id, "hostname": n.info.hostname, "role": n.info.role, "status": n.info.status,
                     "availability": n.info.availability, "address": n.info.address, "leader": n.info.leader,
                     "engine": n.info.engine, "tasks": n.tasks} for n in found])
        return
    table(([n.info.hostname, n.info.status, n.info.availability,
            "leader" if n.info.leader else n.info.role, n.info.address, n.tasks, n.info.engine] for n in found),
          ["NODE", "STATUS", "AVAILABILITY", "ROLE", "ADDRESS", "TASKS", "ENGINE"])


@click.command("cluster:drain")
@click.argument("node")
def cluster_drain(node: str) -> None:
    """Move the node's tasks to the other nodes (health-checked and routed first), then drain it."""
    from minipaas.deploy import nodes
    from minipaas.state.host import Host

    nodes.drain(Host(_settings()), node, say)


@click.command("cluster:activate")
@click.argument("node")
def cluster_activate(node: str) -> None:
    """Let the node take new tasks again."""
    from minipaas.deploy import nodes
    from minipaas.state.host import Host

    nodes.activate(Host(_settings()), node, say)


@click.command("cluster:leave")
def cluster_leave() -> None:
    """Back to one host with plain containers (a cluster of one only: remove the other nodes first)."""
    from minipaas.cluster import membership

    membership.leave(_settings(), say)


def all_commands() -> list[click.Command]:
    return [cluster_init, cluster_join_command, cluster_nodes, cluster_drain, cluster_activate, cluster_leave]
