"""The host's free disk, watched: the `disk-low` event when the disk of the home (the database, repositories, sites)
or of the engine (images, containers) runs low, once each time it crosses below the line (a thread of the
watcher, every minute). `report` and `gc` say what takes the room (running/diskreport.py, running/gc.py)."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

from minipaas.access import events
from minipaas.state.host import Host
from minipaas.state.settings import Settings

LOW_SHARE = 0.10  # low: less than a tenth of the disk free...
LOW_BYTES = 2 * 1024**3  # ...or less than 2 GiB (a build and its image need about that)
CHECK_SECONDS = 60.0
ENGINE_ROOT = Path("/var/lib/docker")  # the engine's default data root


def is_low(total: int, free: int) -> bool:
    return free < LOW_BYTES or free < total * LOW_SHARE


def human(size: int) -> str:
    """`1.5G`, in powers of 1024 as df -h."""
    value = float(size)
    for unit in ("B", "K", "M", "G"):
        if value < 1024:
            return f"{value:.1f}{unit}" if unit != "B" else f"{int(value)}B"
        value /= 1024
    return f"{value:.1f}T"


def newly_low(was: set[Path], now: dict[Path, tuple[int, int]]) -> list[Path]:
    """The disks (by a path on each) low now that were not at the last look; `was` becomes those low now."""
    low = {path for path, (total, free) in now.items() if is_low(total, free)}
    crossed = sorted(low - was)
    was.clear()
    was.update(low)
    return crossed


def look(settings: Settings) -> dict[Path, tuple[int, int]]:
    """(size, free) of the home's disk and the engine's, once each (one disk holding both is said once)."""
    found: dict[Path, tuple[int, int]] = {}
    devices: set[int] = set()
    for path in (settings.home, ENGINE_ROOT):
        try:
            usage = shutil.disk_usage(path)
        except OSError:
            continue
        device = path.stat().st_dev
        if device not in devices:
            devices.add(device)
            found[path] = (usage.total, usage.free)
    return found


def one_look(host: Host, was: set[Path]) -> None:
    now = look(host.settings)
    for path in newly_low(was, now):
        total, free = now[path]
        events.announce(host, "disk-low", app="", command=f"disk-low {path}", user="watch",
                        outcome=f"{human(free)} free of {human(total)} on the disk of {path}")


def follow(settings: Settings) -> None:
    """Look every minute, until the process ends (the watcher's thread)."""
    host, was = Host(settings), set()
    while True:
        try:
            one_look(host, was)
        except Exception as exc:  # a look that fails is tried again at the next
            print(f"watch: disk: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        time.sleep(CHECK_SECONDS)
