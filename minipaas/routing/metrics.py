"""Per-release metrics as nginx counts them (nginx/lua/minipaas/metrics.lua): read from its control server,
parsed and summed up here.

nginx keeps, per app and release, requests by status class and latency bucket (the upstream's response time,
8 buckets per doubling from 1 ms to 131 s), per minute for the last 16 minutes and as running totals.
`parse` and `summary` are pure (tested as text): for each release, over the last 1, 5 and 15 minutes, the
requests per second, the share of 5xx, and p50/p95/p99 read from the histogram. `read` asks nginx.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from minipaas.errors import ProxyError
from minipaas.routing import routes
from minipaas.state.settings import Settings

WINDOWS = (1, 5, 15)  # minutes
COUNTER = re.compile(r"c([1-5])b([0-9]{1,3})")  # requests of a status class in a latency bucket
PERCENTILES = (50, 95, 99)


@dataclass
class Counts:
    """One release's counters over some time: requests by status class (1..5), by latency bucket, latency sum."""

    classes: dict[int, float] = field(default_factory=dict)
    buckets: dict[int, float] = field(default_factory=dict)
    sum_ms: float = 0.0

    def add(self, other: Counts, share: float = 1.0) -> None:
        for c, n in other.classes.items():
            self.classes[c] = self.classes.get(c, 0) + n * share
        for b, n in other.buckets.items():
            self.buckets[b] = self.buckets.get(b, 0) + n * share
        self.sum_ms += other.sum_ms * share

    @property
    def requests(self) -> float:
        return sum(self.classes.values())


@dataclass
class Raw:
    """What nginx said: its clock, its buckets' layout, and each release's totals and minutes."""

    now: float
    steps: int
    last: int
    totals: dict[int, Counts]
    minutes: dict[int, dict[int, Counts]]  # release -> minute (unix time / 60) -> counts


@dataclass(frozen=True)
class Window:
    minutes: int
    requests: float
    rate: float  # requests per second
    errors: float  # share of 5xx, 0..1
    percentiles: dict[int, float | None]  # 50/95/99 -> ms (None: no request)


def parse(text: str) -> Raw:
    """The control server's `GET /metrics` answer (metrics.lua's `raw`) → Raw; ProxyError if it is not one."""
    lines = text.splitlines()
    head = lines[0].split() if lines else []
    if len(head) != 6 or head[0::2] != ["now", "steps", "last"]:
        raise ProxyError(f"nginx's metrics do not start with `now ... steps ... last ...`: {text[:80]!r}")
    raw = Raw(float(head[1]), int(head[3]), int(head[5]), {}, {})
    for number, line in enumerate(lines[1:], 2):
        fields = line.split()
        if len(fields) != 5 or not fields[2].isdigit() or not (fields[0] == "t" or fields[0].isdigit()):
            raise ProxyError(f"line {number} of nginx's metrics is not `SCOPE APP RELEASE NAME VALUE`: {line[:80]!r}")
        scope, _, release, name, value = fields
        counts = raw.totals.setdefault(int(release), Counts()) if scope == "t" else \
            raw.minutes.setdefault(int(release), {}).setdefault(int(scope), Counts())
        counter = COUNTER.fullmatch(name)
        if name == "s":
            counts.sum_ms = float(value)
        elif counter:
            klass, bucket, n = int(counter.group(1)), int(counter.group(2)), float(value)
            counts.classes[klass] = counts.classes.get(klass, 0) + n
            if klass != 1:  # a 101's time is a websocket's whole life: no answer's latency
                counts.buckets[bucket] = counts.buckets.get(bucket, 0) + n
        else:
            raise ProxyError(f"line {number} of nginx's metrics names no counter: {line[:80]!r}")
    return raw


def window(raw: Raw, release: int, minutes: int) -> Counts:
    """A release's counts over the last `minutes` minutes up to `raw.now`: the minutes inside whole, the oldest
    one in part (the share of it inside the window, its requests taken as evenly spread)."""
    total = Counts()
    kept = raw.minutes.get(release, {})
    start = raw.now - minutes * 60
    for minute, counts in kept.items():
        begin, end = minute * 60, minute * 60 + 60
        inside = max(0.0, min(end, raw.now) - max(begin, start)) / min(60.0, max(raw.now - begin, 1e-9))
        if inside > 0:
            total.add(counts, min(inside, 1.0))
    return total


def bound(raw: Raw, bucket: int) -> float:
    """The upper bound of a latency bucket, in ms (bucket 0: 1 ms)."""
    return 2 ** (bucket / raw.steps)


def percentile(raw: Raw, counts: Counts, q: float) -> float | None:
    """The q-th percentile (0..100) of the latency, in ms, read from the histogram: inside its bucket by
    geometric interpolation (the buckets are geometric), the first bucket (0..1 ms) linearly."""
    total = sum(counts.buckets.values())
    if total <= 0:
        return None
    rank = q / 100 * total
    seen = 0.0
    for bucket in sorted(counts.buckets):
        n = counts.buckets[bucket]
        if n <= 0:
            continue
        if seen + n >= rank:
            part = (rank - seen) / n
            if bucket == 0:
                return part * bound(raw, 0)
            low, high = bound(raw, bucket - 1), bound(raw, bucket)
            return low * math.exp(part * math.log(high / low))
        seen += n
    return bound(raw, max(counts.buckets))


def summary(raw: Raw, release: int) -> list[Window]:
    """The release's figures over the last 1, 5 and 15 minutes."""
    found = []
    for minutes in WINDOWS:
        counts = window(raw, release, minutes)
        requests = counts.requests
        found.append(Window(minutes, requests, requests / (minutes * 60), counts.classes.get(5, 0) / requests
                            if requests else 0.0, {q: percentile(raw, counts, q) for q in PERCENTILES}))
    return found


def read(settings: Settings, app: str, releases: list[int] | None = None) -> Raw:
    """What nginx counted for the app's releases (default: the routed ones)."""
    query = f"/metrics?app={app}" + (f"&releases={','.join(map(str, releases))}" if releases else "")
    return parse(routes.control(settings, query, what=f"the metrics of {app}"))


def rows(versions: list[routes.Version], raw: Raw) -> list[dict[str, object]]:
    """Each routed release's weight and figures, for `metrics APP` (and its --json)."""
    found: list[dict[str, object]] = []
    for version in versions:
        windows = {}
        for w in summary(raw, version.release):
            windows[f"{w.minutes}m"] = {"requests": round(w.requests), "rate": round(w.rate, 3),
                                        "errors": round(w.errors, 5),
                                        **{f"p{q}_ms": None if v is None else round(v, 2)
                                           for q, v in w.percentiles.items()}}
        total = raw.totals.get(version.release, Counts())
        found.append({"release": version.release, "weight": version.weight, "windows": windows,
                      "total": {"requests": round(total.requests),
                                **{f"{c}xx": round(total.classes.get(c, 0)) for c in range(1, 6)}}})
    return found


def of_app(settings: Settings, app: str) -> list[dict[str, object]]:
    """The figures of the app's routed releases (none when it is not routed)."""
    versions = routes.versions(settings, app)
    return rows(versions, read(settings, app, [v.release for v in versions])) if versions else []
