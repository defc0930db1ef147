"""app.json, as dokku reads its `healthchecks` key (the checks a new web container must pass) and its
`formation` key (how many containers of each process type run until `ps:scale` says otherwise).

```json
{"healthchecks": {"web": [{"type": "startup", "path": "/", "content": "ok", "attempts": 2, "wait": 2,
                           "timeout": 5, "initialDelay": 1}]}}
```
A startup check (or one without a type) is run before traffic moves; `liveness` and `readiness` checks
belong to schedulers that keep probing, which minipaas' deploy does not: they are reported, not run.
An HTTP check passes when the app answers 2xx or 3xx (and the body holds `content`, when given); an
`uptime` check when the container stayed up that long; a `command` check when the command, run in the
container, exits 0. Pure: text in, checks out.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from minipaas.errors import InvalidInput
from minipaas.source.procfile import shell
from minipaas.state.names import REQUEST_PATH

MAX_CHECKS = 20
DEPLOY_TYPES = ("", "startup")


@dataclass(frozen=True)
class Healthcheck:
    name: str
    path: str = ""  # an HTTP check of this path
    content: str = ""
    command: tuple[str, ...] = ()  # a command check
    uptime: float = 0.0  # an uptime check (seconds)
    port: int | None = None
    attempts: int = 3
    wait: float = 5.0  # between attempts
    timeout: float = 5.0  # per attempt
    initial_delay: float = 0.0

    def describe(self) -> str:
        """The check on one line of the push's output (a command's newlines and escapes shown escaped)."""
        if self.command:
            shown = " ".join(self.command)
            return f"`{shown if shown.isprintable() else repr(shown)[1:-1]}` exiting 0"
        if self.uptime:
            return f"staying up {self.uptime:g}s"
        return f"GET {self.path}" + (f" containing {self.content!r}" if self.content else "")


@dataclass(frozen=True)
class Healthchecks:
    run: tuple[Healthcheck, ...]  # what the deploy runs
    skipped: tuple[str, ...]  # names of checks of other types


def _load(raw: bytes) -> Mapping[str, Any]:
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"app.json is not valid JSON: {exc}") from None
    except RecursionError:
        raise InvalidInput("app.json is nested too deeply") from None
    if not isinstance(data, Mapping):
        raise InvalidInput("app.json must hold a JSON object")
    return data


def formation(raw: bytes, *, process_type: re.Pattern[str], most: int) -> dict[str, int]:
    """`formation` of an app.json: process type -> quantity (`{"worker": {"quantity": 1}}`); {} without one."""
    section = _load(raw).get("formation")
    if section is None:
        return {}
    if not isinstance(section, Mapping):
        raise InvalidInput("formation in app.json must be an object of process types")
    counts = {}
    for name, entry in section.items():
        if not process_type.fullmatch(name):
            raise InvalidInput(f"app.json formation: {name[:40]!r} is not a process type name")
        quantity = entry.get("quantity", 1) if isinstance(entry, Mapping) else None
        if isinstance(quantity, bool) or not isinstance(quantity, int) or not 0 <= quantity <= most:
            raise InvalidInput(f"app.json formation.{name}.quantity must be a number from 0 to {most}")
        counts[name] = quantity
    return counts


def parse(raw: bytes) -> Healthchecks | None:
    """The web healthchecks of an app.json; None when it has none (or there is no app.json)."""
    section = _load(raw).get("healthchecks")
    if section is None:
        return None
    if not isinstance(section, Mapping):
        raise InvalidInput("healthchecks in app.json must be an object of process types")
    entries = section.get("web")
    if entries is None:
        return None
    if not isinstance(entries, list) or len(entries) > MAX_CHECKS:
        raise InvalidInput(f"healthchecks.web in app.json must be a list of at most {MAX_CHECKS} checks")
    run, skipped = [], []
    for number, entry in enumerate(entries, start=1):
        check_type, check = _entry(entry, number)
        if check_type in DEPLOY_TYPES:
            run.append(check)
        else:
            skipped.append(check.name)
    return Healthchecks(tuple(run), tuple(skipped)) if run or skipped else None


def _entry(entry: Any, number: int) -> tuple[str, Healthcheck]:
    where = f"app.json healthchecks.web[{number - 1}]"
    if not isinstance(entry, Mapping):
        raise InvalidInput(f"{where} must be an object")
    check_type = _text(entry, "type", where)
    if check_type not in (*DEPLOY_TYPES, "liveness", "readiness"):
        raise InvalidInput(f"{where}: type must be startup, liveness or readiness, not {check_type!r}")
    path, content = _text(entry, "path", where), _text(entry, "content", where)
    command = entry.get("command") or ()
    if isinstance(command, str):
        command = shell(command, replaced=False)
    # No NUL: a process' arguments cannot carry one.
    if not isinstance(command, list | tuple) or not all(isinstance(c, str) and "\0" not in c for c in command):
        raise InvalidInput(f"{where}: command must be a string or a list of strings (without NUL)")
    uptime = _number(entry, "uptime", where, 0)
    if not (path or command or uptime):
        path = "/"  # dokku's default: an HTTP check of /
    if path and not REQUEST_PATH.fullmatch(path):
        raise InvalidInput(f"{where}: path must start with / and be printable ASCII without spaces (percent-encode "
                           f"the rest: /caf%C3%A9), not {path[:60]!r}")
    port = entry.get("port")
    if port is not None and (not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536):
        raise InvalidInput(f"{where}: port must be a number from 1 to 65535")
    check = Healthcheck(
        name=_text(entry, "name", where) or f"check-{number}",
        path=path, content=content, command=tuple(command), uptime=uptime, port=port,
        attempts=int(_number(entry, "attempts", where, 3, low=1)),
        wait=_number(entry, "wait", where, 5), timeout=_number(entry, "timeout", where, 5, low=1),
        initial_delay=_number(entry, "initialDelay", where, 0))
    return check_type, check


def _text(entry: Mapping[str, Any], key: str, where: str) -> str:
    """A name, type, path or content: one line of text, shown on the push's lines (no control character, C1's
    terminal escapes included, nor line separator)."""
    value = entry.get(key, "")
    if not isinstance(value, str) or _NOT_TEXT.search(value) or len(value) > 1024:
        raise InvalidInput(f"{where}: {key} must be a line of text")
    return value


_NOT_TEXT = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _number(entry: Mapping[str, Any], key: str, where: str, default: float, *, low: float = 0) -> float:
    value = entry.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= 3600:
        raise InvalidInput(f"{where}: {key} must be a number from {low:g} to 3600")
    return float(value)
