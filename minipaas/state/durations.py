"""The durations app settings take (`canary-interval 2m`, `review-apps-ttl 7d`, `idle 30m`): text to seconds,
each kind with its own bounds; None for what is not one."""

from __future__ import annotations

import re

_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86_400}


def _seconds_between(value: str, low: int, high: int, units: str = "smh") -> int | None:
    """`90s`, `2m`, `1h` (`7d` where `units` has d; or plain seconds) → seconds, `low` to `high`; None if it is
    not that."""
    found = re.fullmatch(rf"([0-9]{{1,6}})([{units}]?)", value.strip())
    if not found:
        return None
    seconds = int(found[1]) * _UNIT_SECONDS[found[2]]
    return seconds if low <= seconds <= high else None


def duration_seconds(value: str) -> int | None:
    """`90s`, `2m`, `1h` (or plain seconds) → seconds, 10 s to 24 h; None if it is not that."""
    return _seconds_between(value, 10, 86_400)


def ttl_seconds(value: str) -> int | None:
    """A lifetime (`review-apps-ttl`): `12h`, `7d`... → seconds, 1 h to 365 d; `0` → 0 (never); None if it is
    not that. Less than an hour would destroy a review app between two pushes of a working day."""
    return 0 if value.strip() == "0" else _seconds_between(value, 3600, 365 * 86_400, "smhd")


def idle_seconds(value: str) -> int | None:
    """`idle` and `review-apps-idle`: 0 (never sleeps) or 1 s to 30 days; None if it is not that."""
    return 0 if value.strip() == "0" else _seconds_between(value, 1, 30 * 86_400, "smhd")
