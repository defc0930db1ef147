"""Where a reader of an app's followed logs is, so that it can go on after a reconnect without a line twice or a
line lost (the dashboard's log stream: each event's id is a cursor, the browser sends the last one back as
`Last-Event-ID`).

The engine stamps every line of a container's output with the time it read it (`docker logs --timestamps`,
RFC 3339 with nanoseconds). A cursor holds, per source (a container's name, or a Swarm task's id), the stamp of
the last line delivered and how many lines of that very stamp were (two lines may share one), plus a baseline:
the time the reader started (the page was rendered), from which a source it has heard nothing of is read. To go
on, the engine is asked for each source's lines since the second of its stamp (`--since`, whole seconds: the
engine's filter is inclusive) and `admit` drops what was delivered already. Pure: no engine here.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass, field

MAX_TEXT = 2048
MAX_SOURCES = 32
SOURCE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}")
_STAMP = re.compile(rb"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d) ")


def split_stamp(line: bytes) -> tuple[int | None, bytes]:
    """A stamped line (`2026-12-07T06:00:08.123456789Z text`) as (nanoseconds since the epoch, text); a line
    without a stamp as (None, the line)."""
    found = _STAMP.match(line)
    if found is None:
        return None, line
    seconds, fraction, zone = (g.decode() for g in found.groups(default=b""))
    try:
        at = datetime.datetime.fromisoformat(seconds + ("+00:00" if zone == "Z" else zone))
    except ValueError:
        return None, line
    return int(at.timestamp()) * 1_000_000_000 + int(fraction.ljust(9, "0")), line[found.end():]


@dataclass
class Cursor:
    baseline: int = 0  # ns; 0: no start known (a source not in `positions` is read from now on)
    positions: dict[str, tuple[int, int]] = field(default_factory=dict)  # source -> (ns of its last line, count)
    _skipping: dict[str, int] = field(default_factory=dict)  # lines of the last stamp met again, per source

    @classmethod
    def parse(cls, text: str | None) -> Cursor:
        """A cursor from its text (`render`); anything else (absent, too long, malformed) is an empty cursor: the
        reader goes on from now, as a new one would."""
        if not text or len(text) > MAX_TEXT:
            return cls()
        head, *rest = text.split(",")
        if not head.startswith("t") or not head[1:].isdigit() or len(head) > 20 or len(rest) > MAX_SOURCES:
            return cls()
        positions = {}
        for part in rest:
            source, _, where = part.partition(":")
            ns, _, count = where.partition(".")
            if not SOURCE.fullmatch(source) or not ns.isdigit() or not count.isdigit() or len(ns) > 19:
                return cls()
            positions[source] = (int(ns), int(count))
        return cls(int(head[1:]), positions)

    def render(self) -> str:
        return ",".join([f"t{self.baseline}"] + [f"{s}:{ns}.{n}" for s, (ns, n) in self.positions.items()])

    def since(self, source: str) -> int | None:
        """The second (Unix time) to ask the engine for `source`'s lines from; None: only new ones (no start)."""
        ns = self.positions.get(source, (self.baseline, 0))[0]
        return ns // 1_000_000_000 if ns else None

    def oldest(self) -> int | None:
        """The earliest `since` of all: for a stream of several sources read as one (a Swarm service's tasks)."""
        known = [ns for ns, _ in self.positions.values()] + ([self.baseline] if self.baseline else [])
        return min(known) // 1_000_000_000 if known else None

    def admit(self, source: str, ns: int | None) -> bool:
        """Whether a line of `source` stamped `ns`, read again from `since`, is new; if so the cursor moves past it.
        A line without a stamp counts as one of its source's last stamp."""
        last, count = self.positions.get(source, (0, 0))
        if ns is None:
            ns = last
        if source not in self.positions and ns < self.baseline:
            return False  # before the reader started: the page showed it, or it is older than asked for
        if ns < last:
            return False
        if ns == last and source in self.positions:
            met = self._skipping.get(source, 0)
            if met < count:
                self._skipping[source] = met + 1
                return False
            self.positions[source] = (ns, count + 1)
            self._skipping[source] = count + 1
            return True
        self.positions[source] = (ns, 1)
        self._skipping[source] = 1
        return True
