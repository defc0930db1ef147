"""The address pool (MINIPAAS_SUBNETS) as `report`, `apps:create` and a new review app speak of it.

Apart from containers.py, which checks for room before a build, so that `report` and `apps:create` load only this.
"""

from __future__ import annotations

from minipaas.adapters import networks
from minipaas.errors import EngineError
from minipaas.state.host import Host


def usage(host: Host) -> networks.PoolUsage:
    """How much of MINIPAAS_SUBNETS the engine's networks hold (every instance's and anyone's)."""
    return networks.usage(host.settings.subnets)


def warning(host: Host) -> str | None:
    """One line when the address pool is nearly or entirely used up (apps:create, a new review app, report);
    None while there is room, or when the engine does not answer (the command itself does not need it)."""
    try:
        return usage(host).warning()
    except EngineError:
        return None
