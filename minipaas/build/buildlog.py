"""The one line a failed build is reported with: the failing tool's own words, found in the build log.

A builder ends a failed build with its own line (`executor failed running [/bin/sh -c npm ci]: exit
code: 1`), which says which step failed but not why. The package managers say why, in lines of
their own form; the first such line of the log is the one to show (npm's last lines are boilerplate
such as where its debug log went). Pure: text in, text out.
"""

from __future__ import annotations

import re

# BuildKit's --progress=plain prefixes a step's output with `#<step> <seconds> `.
_BUILDKIT_PREFIX = re.compile(r"^#\d+ \d+(?:\.\d+)? ")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# The tools' error lines, most telling first. npm's bookkeeping lines (code, errno, the log's path) and
# a lifecycle script's generic failure are left to the lines that say more.
_TOOL_LINES = (
    re.compile(r"^npm (?:error|ERR!) (?!code |errno |syscall |path |command |signal |A complete log|"
               r"Log files were not written|Lifecycle script|workspace |location |\s*$).+"),
    re.compile(r"^ ?ERR_PNPM_\w+.+"),
    re.compile(r"^➤ YN0(?:028|001|035|018|009|016|071|013|056|082|083): .+"),  # Yarn 2+ errors
    re.compile(r"^error (?!Command failed with exit code)\S.+"),  # Yarn 1
    re.compile(r"^Usage Error: .+"),  # corepack, Yarn 2+
    re.compile(r"^Internal Error: .+"),
)
MAX_LENGTH = 300


def tool_error(log: list[str]) -> str | None:
    """The package manager's own error line in a failed build's log, or None."""
    lines = [_ANSI.sub("", _BUILDKIT_PREFIX.sub("", line)).strip() for line in log]
    for pattern in _TOOL_LINES:
        for line in lines:
            if pattern.match(line):
                line = re.sub(r"^➤ (YN\d+): (?:│ )?", r"\1: ", line)
                return line if len(line) <= MAX_LENGTH else line[:MAX_LENGTH - 3] + "..."
    return None
