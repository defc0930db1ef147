"""Test harness: each test gets its own minipaas host (a temp MINIPAAS_HOME, a private nginx on a free
loopback port) driven through the real CLI, real git pushes and the real Docker engine.

Tests live in tiers by folder: tests/unit (no engine: the fast tier, `-m "not engine"`), tests/engine (the Docker
engine and nginx), tests/cluster (a Swarm of node containers); tests/unit/test_tiers.py checks that each file is in
its tier's folder. What they share is in tests/helpers; its pytest plugins, one concern each, are named here.
"""

pytest_plugins = [
    "tests.helpers.engine",  # the `engine` marker, the engine's gate, the default base image
    "tests.helpers.ci",  # MINIPAAS_CI=1: a skip is a failure
    "tests.helpers.workers",  # -n 2: the cluster's queue and the host's; engine restarts last
    "tests.helpers.fixtures",  # paas, sshd, local_account
]
