"""The disk an app's site and repository folders use, as `report` shows it: measured by du (adapters/diskuse.py)
only where a folder changed since it was last measured, the sizes kept in cache/disk-sizes.json.

At 600 apps, du walks 1,200 folders and ~36,000 files in 0.2-0.4 s, more than `report` may take. What changes
them is few and known, and each change touches a folder whose own mtime tells it:
- a site folder (static/APP) gains a release folder at a deploy's build and loses one at gc, and its `current`
  link is replaced at the switch: a release folder is written in place only between its creation and that switch
  (or its removal when the build fails), each of which changes static/APP itself;
- a repository gets objects only through a push, which git receives in a quarantine folder made and removed
  under objects/ (both change objects/), accepted or not; git's own gc writes objects/pack and refs.
So a folder's stamp is the mtimes of those folders; any other change (a hand edit inside a release folder) is
seen at the next deploy or gc of that app."""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterable
from pathlib import Path

from minipaas.adapters import diskuse
from minipaas.state import perms
from minipaas.state.settings import Settings

# A repository's parts whose mtimes change with what it holds; a site folder's: itself.
REPO_STAMPED = ("objects", "objects/pack", "refs/heads", "packed-refs")
SITE_STAMPED = ("",)
SETTLE_NS = 1_000_000_000  # a size measured within this of its folder's last change is not kept (see sizes)


def cache_file(settings: Settings) -> Path:
    return settings.cache_dir / "disk-sizes.json"


def sizes(settings: Settings, sites: Iterable[Path], repos: Iterable[Path]) -> dict[Path, int]:
    """Bytes on disk under each site folder and repository (0 for one that does not exist)."""
    stamps = {**{p: _stamp(p, SITE_STAMPED) for p in sites}, **{p: _stamp(p, REPO_STAMPED) for p in repos}}
    try:
        kept = json.loads(cache_file(settings).read_text())
        assert isinstance(kept, dict)
    except (OSError, ValueError, AssertionError):
        kept = {}
    found: dict[Path, int] = {}
    stale = []
    for path, stamp in stamps.items():
        entry = kept.get(str(path))
        if isinstance(entry, list) and len(entry) == 2 and entry[0] == stamp and isinstance(entry[1], int):
            found[path] = entry[1]
        else:
            stale.append(path)
    if stale:
        measured = diskuse.usage(stale)
        found.update(measured)
        # Measured after its stamp was read: a change meanwhile gives the folder a new stamp, measured next time.
        # Not kept when changed within the last second: a file system's clock ticks in milliseconds, and a second
        # change in the same tick would leave the stamp as it was (git calls such entries racy).
        settled = str(time.time_ns() - SETTLE_NS)
        kept.update({str(path): [stamps[path], size] for path, size in measured.items()
                     if all(len(mark) < len(settled) or mark < settled for mark in stamps[path].split(","))})
        kept = {key: value for key, value in kept.items() if Path(key) in stamps} if len(kept) > 2 * len(stamps) \
            else kept  # folders of destroyed apps are dropped once they outnumber the rest
        with contextlib.suppress(OSError):  # not written: measured again next time
            cache_file(settings).parent.mkdir(parents=True, exist_ok=True)
            perms.write_file(cache_file(settings), json.dumps(kept).encode(), 0o600)
    return found


def _stamp(folder: Path, parts: tuple[str, ...]) -> str:
    """The mtimes (ns) of the folder's parts that change when what it holds changes; "-" for one that is not there."""
    base = str(folder)
    marks = []
    for part in parts:
        try:  # strings, not Paths: 2,400 of these for 600 apps
            marks.append(str(os.stat(f"{base}/{part}" if part else base).st_mtime_ns))
        except OSError:
            marks.append("-")
    return ",".join(marks)
