"""Cluster tier: a Swarm of dockerd node containers on this machine (tests/helpers/cluster_nodes.py)."""
