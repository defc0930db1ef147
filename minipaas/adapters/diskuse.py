"""Disk used under folders, as `du` counts it (allocated blocks, each inode once per call, links not followed),
for many folders in one run of `du`: `report` sizes every app's repository and site folders, ~36,000 entries for
600 apps, which coreutils walks in C about twice as fast as a walk in Python."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from minipaas.adapters import proc


def usage(paths: Iterable[Path]) -> dict[Path, int]:
    """Bytes on disk under each path (a file: its own); 0 for one that does not exist or went away meanwhile.
    The paths must not hold one another: du counts an inode once per run, in the first path that reaches it."""
    wanted = list(dict.fromkeys(paths))
    found = {path: 0 for path in wanted}
    present = [str(path) for path in wanted if os.path.lexists(path)]
    if not present:
        return found
    # -s: one total per argument; -B1: in bytes; -P: never follow a link; -0: NUL-ended lines (any path).
    # A folder removed meanwhile (a gc, a destroy) makes du complain and exit 1: its line is missing, it stays 0.
    result = proc.run(["du", "-s", "-B1", "-P", "-0", "--", *present], check=False)
    for record in result.stdout.split(b"\0"):
        size, _, path = record.partition(b"\t")
        if path:
            found[Path(os.fsdecode(path))] = int(size)
    return found


def of(path: Path) -> int:
    return usage([path])[path]
