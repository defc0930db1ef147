"""The cluster layer (issue 15, groundwork): minipaas' commands on a Docker Swarm with a private registry.

Between deploy and routing: deploy will roll releases out as Swarm services through it; it uses routing (the
routing table), state and the engine adapter (adapters/engine/swarm.py). See docs/cluster-design.md.
"""
