"""Progress lines for whoever waits on a long operation, written so that they can never stop it.

A pusher's connection drops, `minipaas deploy APP | head -1` closes its pipe: the deploy must go on
(half a deploy is worse than no output), and what it says still reaches the release's log. `Lines`
writes to a stream until the stream fails, then quietly stops writing; `Recorder` keeps every line
for the release record.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable
from typing import BinaryIO, TextIO

Progress = Callable[[str], None]


class Lines:
    """Writes lines to `stream` (stdout by default); after the first failed write, writes nothing more."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream  # None: whatever sys.stdout is at the time of writing
        self.closed = False
        self._copy: BinaryIO | None = None

    def copy_to(self, handle: BinaryIO | None) -> None:
        """Also write each line to `handle` (a push's log, which the dashboard follows), until that fails;
        None: stop (the handle is the caller's to close)."""
        self._copy = handle

    def _write_copy(self, line: str) -> None:
        if self._copy is None:
            return
        try:
            self._copy.write(line.encode("utf-8", "replace") + b"\n")
            self._copy.flush()
        except (OSError, ValueError):
            self._copy = None  # a full disk, a closed file: the push goes on, its log stops here

    @property
    def stream(self) -> TextIO:
        return self._stream or sys.stdout

    def __call__(self, line: str) -> None:
        self._write_copy(line)
        if self.closed:
            return
        try:
            self.stream.write(line + "\n")
            self.stream.flush()
        except (BrokenPipeError, ConnectionResetError, ValueError, OSError):
            self.closed = True
            self._silence()

    def _silence(self) -> None:
        """Point the stream's descriptor at /dev/null: Python's own flush at exit must not fail either."""
        with contextlib.suppress(OSError, ValueError, AttributeError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self.stream.fileno())
            os.close(devnull)


class Recorder:
    """Passes lines on and keeps them: the transcript of a deploy, as the pusher saw it."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.lines: list[str] = []

    def __call__(self, line: str) -> None:
        self.lines.append(line)
        self.progress(line)

    def text(self) -> str:
        return "\n".join(self.lines)
