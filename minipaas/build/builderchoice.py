"""Which builder this host uses (BuildKit or the legacy one) and what it can do about build limits.

Apart from builders.py, which runs builds, so that `report` and `init` can say which builder and which limits
without loading what a build needs.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from minipaas.adapters import buildcgroups, engine
from minipaas.build import buildkit
from minipaas.state.settings import Settings


@dataclass(frozen=True)
class Enforcement:
    """What this host can do about build limits."""

    layout: buildcgroups.Layout | None  # None: minipaas cannot limit the engine's cgroups
    why: str  # how the limits are applied, or why they are not, for `report` and `init`


@functools.cache
def enforcement() -> Enforcement:
    driver, version, local = engine.cgroups()
    if not local:
        return Enforcement(None, "the Docker engine runs on another machine")
    if driver != "cgroupfs":
        return Enforcement(None, f"the engine uses the {driver or 'unknown'} cgroup driver, whose cgroups "
                                 "minipaas does not manage")
    layout = buildcgroups.host_layout(version)
    if layout is None:
        return Enforcement(None, f"cgroup v{version} controllers memory, pids and cpu are not writable here")
    return Enforcement(layout, f"cgroup v{version}, cgroupfs driver")


@functools.cache
def builder(settings: Settings) -> buildkit.Builder:
    """The host's builder: as `init` found it (settings.toml), or as MINIPAAS_BUILDER asks now."""
    return buildkit.find(settings.builder, prefer_legacy=enforcement().layout is None)


def describe(settings: Settings) -> list[str]:
    """The builder and how build limits are enforced, for `report` and `init`."""
    found, how = builder(settings), enforcement()
    if how.layout is not None:
        limits = f"memory, CPUs, processes and time, per app ({how.why})"
        if found.kind != "legacy":
            limits += "; BuildKit builds take turns host-wide"
    elif found.kind == "legacy":
        limits = f"time, and memory and CPUs per build step; no process limit ({how.why})"
    else:
        limits = f"time only; not memory, CPUs or processes ({how.why}; MINIPAAS_BUILDER=legacy limits more)"
    return [f"builder: {found.describe()}", f"build limits: {limits}"]
