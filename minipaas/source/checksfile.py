"""A dokku-style `CHECKS` file at the commit's root: the checks a new web process must pass before it gets traffic,
in place of the app's `healthcheck-path`. Each `PATH [CONTENT]` line must answer below 400 with CONTENT in the body;
`WAIT=` delays the first request, `TIMEOUT=` bounds each request. Comments (`#`) and other `KEY=` lines are
ignored. Pure: text in, checks out (deploy/health.py runs them)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from minipaas.errors import InvalidInput
from minipaas.state.names import REQUEST_PATH

MAX_SECONDS = 3600  # a CHECKS file's WAIT and TIMEOUT, as app.json's numbers and healthcheck-timeout


@dataclass(frozen=True)
class Check:
    path: str
    content: str | None = None  # None: any status below 500 will do (the default check)

    def passes(self, status: int, body: str) -> bool:
        if self.content is None:
            return status < 500
        return status < 400 and self.content in body

    def describe(self) -> str:
        return f"GET {self.path}" + (f" containing {self.content!r}" if self.content else "")


@dataclass(frozen=True)
class Checks:
    checks: tuple[Check, ...]
    wait: float = 0.0
    request_timeout: float = 2.0
    from_file: bool = field(default=False)


def default_checks(path: str) -> Checks:
    return Checks((Check(path),))


def parse_checks(text: str) -> Checks:
    """A CHECKS file, as dokku reads it (the host-specific `//host/path` form is not supported)."""
    checks: list[Check] = []
    wait, request_timeout = 0.0, 2.0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if sep and not line.startswith("/"):
            if key in ("WAIT", "TIMEOUT"):
                # ASCII digits only: str.isdigit() also takes `²`, which float() refuses.
                seconds = value.strip()
                if not re.fullmatch(r"[0-9]{1,4}", seconds) or int(seconds) > MAX_SECONDS:
                    raise InvalidInput(f"CHECKS line {number}: {key} must be a number of seconds from 0 to "
                                       f"{MAX_SECONDS}")
                if key == "WAIT":
                    wait = float(seconds)
                else:
                    request_timeout = max(1.0, float(seconds))
            continue
        path, _, content = line.partition(" ")
        if not path.startswith("/") or path.startswith("//"):
            raise InvalidInput(f"CHECKS line {number}: expected `/path [expected content]`, got {line[:80]!r}")
        if not REQUEST_PATH.fullmatch(path):
            raise InvalidInput(f"CHECKS line {number}: the path must be printable ASCII without spaces "
                               f"(percent-encode the rest: /caf%C3%A9), not {path[:80]!r}")
        checks.append(Check(path, content.strip()))
    if not checks:
        raise InvalidInput("CHECKS lists no path to check")
    return Checks(tuple(checks), wait=wait, request_timeout=request_timeout, from_file=True)
