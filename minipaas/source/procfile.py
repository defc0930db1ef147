"""The Procfile: `type: command` lines naming an app's process types, parsed and checked once.

It comes from the pushed repository. Type names end up in container names and labels, commands in a
generated Dockerfile (`CMD`) and in `sh -c`: every line must have the one documented form, and an
odd one is refused with one line naming it.
"""

from __future__ import annotations

import re

from minipaas.errors import BuildFailed

MAX_SIZE = 64 * 1024
PROCESS_TYPE = re.compile(r"[a-z][a-z0-9_-]{0,30}")
MAX_SCALE = 20  # the most containers (Swarm tasks) of one process type, ps:scale's and app.json's formation's
# Controls other than tab (and the line separators str.splitlines cuts at) have no place in a command.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\x85\u2028\u2029]")


def parse(raw: bytes) -> dict[str, str]:
    """Process type → command; BuildFailed with one line for anything else than `type: command` lines,
    blank lines and `#` comments."""
    if len(raw) > MAX_SIZE:
        raise BuildFailed(f"the Procfile is larger than {MAX_SIZE // 1024} KiB")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BuildFailed("the Procfile is not valid UTF-8") from None
    procs: dict[str, str] = {}
    # Only \n (and \r\n) end a line: a lone \r, \v, \f or U+2028 stays in the line and is refused there.
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.removesuffix("\r")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        where = f"Procfile line {number}"
        name, sep, command = line.partition(":")
        name, command = name.strip(), command.strip()
        if not sep:
            raise BuildFailed(f"{where} is not `type: command`")
        if not PROCESS_TYPE.fullmatch(name):
            raise BuildFailed(f"{where}: invalid process type {_short(name)}: use up to 31 lowercase letters, "
                              "digits, dashes and underscores, starting with a letter")
        if not command:
            raise BuildFailed(f"{where}: {name} has no command")
        if _CONTROL.search(command):
            raise BuildFailed(f"{where}: the command of {name} holds a control character")
        if name in procs:
            raise BuildFailed(f"{where}: {name} is defined twice")
        procs[name] = command
    return procs


def shell(command: str, *, replaced: bool = True) -> list[str]:
    """The argument list running `command` in /bin/sh (a Procfile's commands are shell lines); `replaced`: as
    `exec`, so the process itself gets the engine's signals (SIGTERM at a stop), not a shell waiting for it."""
    return ["/bin/sh", "-c", f"exec {command}" if replaced else command]


def process_command(procs: dict[str, str], process: str) -> list[str] | None:
    """What a container of `process` runs: its Procfile line, else None (the image's own CMD)."""
    return shell(procs[process]) if process in procs else None


def _short(value: str) -> str:
    return repr(value if len(value) <= 40 else value[:37] + "...")
