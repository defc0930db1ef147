"""A push's log: the lines the pusher sees, also written to `logs/pushes/<app>.log` while the push runs, for the
dashboard to follow from its first line (even when opened late) to the last.

The hook starts the file when its push's turn comes (pushes to one repository take turns: the file is the
running or the last push's), writes every line its `say` prints into it, and ends it with FINISHED and the
outcome. A reader that finds the file shorter than what it read knows a new push started (`read_from`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

from minipaas.state import store
from minipaas.state.settings import Settings

FINISHED = "=====> push finished:"
MAX_READ = 256 * 1024


def path(settings: Settings, app: str) -> Path:
    return settings.logs_dir / "pushes" / f"{app}.log"


def start(settings: Settings, app: str) -> BinaryIO:
    """A fresh log for the push whose turn it is (root's alone, as everything under logs/)."""
    target = path(settings, app)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle = os.fdopen(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600),
                       "wb")
    handle.write(f"-----> push to {app} ({store.now():.0f})\n".encode())
    handle.flush()
    return handle


def finish(handle: BinaryIO, ok: bool) -> None:
    try:
        handle.write(f"{FINISHED} {'deployed' if ok else 'rejected'}\n".encode())
        handle.close()
    except (OSError, ValueError):
        pass


def read_from(settings: Settings, app: str, offset: int) -> tuple[list[tuple[int, str]], bool] | None:
    """The complete lines after byte `offset`, each with the offset after it, and whether the file started anew
    (it is shorter than `offset`: read from 0 then); None when the app has had no push yet."""
    try:
        with open(path(settings, app), "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            reset = size < offset
            offset = 0 if reset else offset
            handle.seek(offset)
            data = handle.read(MAX_READ)
    except FileNotFoundError:
        return None
    lines = []
    for raw in data.split(b"\n")[:-1]:  # the last piece: a line not finished yet (or b"")
        offset += len(raw) + 1
        lines.append((offset, raw.decode("utf-8", "replace")))
    return lines, reset
