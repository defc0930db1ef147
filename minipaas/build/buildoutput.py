"""What a pusher sees of a build: herokuish-style steps and the commands' own output, without builder noise.

Both builders print a lot that means nothing to the person pushing: BuildKit's vertex ids, digests,
`DONE 0.5s` and `[internal]` steps; the legacy builder's `---> 3f2a1b`, `Running in`, `Removing
intermediate container`. A `RUN` step becomes one `-----> ` line (its trailing `# comment` when it
has one, as minipaas' buildpack templates write them, else the command itself) followed by what the
command printed; every other instruction (FROM, COPY, WORKDIR, LABEL...) says nothing. Terminal escape
codes and npm's update notices go. `verbose` (`git push -o verbose`) shows every line as it came.

`BuildLines` is pure: raw lines in, lines to show out; the caller decides where they go.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

STEP = "-----> "
DETAIL = "       "
MAX_NAME = 100

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][0-9A-Za-z]|\x1b[@-Z\\-_]")
# BuildKit (--progress=plain): `#8 [build 4/6] RUN npm ci`, `#8 1.234 output`, `#8 DONE 1.5s`, `#8 CACHED`
_BK_HEADER = re.compile(r"#(\d+) \[(?:[^\]]*?)(?: \d+/\d+)?\] (.*)")
_BK_OUTPUT = re.compile(r"#(\d+) \d+\.\d+ ?(.*)")
_BK_STATUS = re.compile(r"#(\d+) (DONE [\d.]+s|CACHED|ERROR: .*|sha256:[0-9a-f]+|.*)")
# The legacy builder: `Step 4/14 : RUN npm ci`, ` ---> Using cache`, ` ---> 3f2a1b0c9d8e`
_LEGACY_STEP = re.compile(r"Step \d+/\d+ : (.*)")
_LEGACY_NOISE = re.compile(r" ---> (?:Running in [0-9a-f]+|[0-9a-f]{12}|Using cache)$|Removing intermediate container "
                           r"[0-9a-f]+$|Successfully (?:built|tagged) .*")
_NOTICES = re.compile(r"npm (?:notice|WARN (?:config|update))\b|New (?:major|minor|patch) version of npm available")


def clean(text: str) -> str:
    """A line without terminal escape codes or carriage-return redraws."""
    text = _ANSI.sub("", text)
    if "\r" in text:
        text = text.rstrip("\r").rsplit("\r", 1)[-1]
    return text.rstrip()


def step_name(instruction: str) -> str | None:
    """The `-----> ` line of an instruction, or None for one that says nothing (FROM, COPY, ...)."""
    keyword, _, rest = instruction.strip().partition(" ")
    if keyword.upper() != "RUN":
        return None
    command = re.sub(r"^(?:--\w+(?:=\S+)?\s+)+", "", rest.strip())  # RUN --mount=... flags
    _body, hash_, comment = command.rpartition(" # ")
    if hash_ and comment.strip() and '"' not in comment and "'" not in comment:
        return comment.strip()
    command = " ".join(command.split())
    return command if len(command) <= MAX_NAME else command[:MAX_NAME - 3] + "..."


@dataclass
class BuildLines:
    """Feeds a builder's raw lines to `show` the way the pusher should see them."""

    show: Callable[[str], None]
    verbose: bool = False
    _names: dict[str, str | None] = field(default_factory=dict)  # BuildKit vertex -> step name (None: silent)
    _announced: set[str] = field(default_factory=set)
    _current: str | None = None  # the legacy builder's current step name, None when silent
    _legacy_announced: bool = False
    _in_summary: bool = False  # BuildKit repeats a failed step between `------` lines: once is enough

    def feed(self, raw: str) -> None:
        if self.verbose:
            self.show(DETAIL + clean(raw))
            return
        line = clean(raw)
        if not line.strip():
            return
        if line.startswith("#") and self._buildkit(line):
            return
        self._legacy(line)

    # -- BuildKit ------------------------------------------------------------------------------

    def _buildkit(self, line: str) -> bool:
        header = _BK_HEADER.fullmatch(line)
        if header and header.group(1) not in self._names:
            self._names[header.group(1)] = step_name(header.group(2))
            return True
        output = _BK_OUTPUT.fullmatch(line)
        if output:
            vertex, text = output.groups()
            if self._names.get(vertex) is not None and text.strip() and not _NOTICES.match(text.strip()):
                self._announce(vertex)
                self.show(DETAIL + text)
            return True
        status = _BK_STATUS.fullmatch(line)
        if status:
            vertex, what = status.groups()
            if what == "CACHED" and self._names.get(vertex):
                self._announce(vertex, cached=True)
            elif what.startswith("DONE") and self._names.get(vertex):
                self._announce(vertex)
            elif what.startswith("ERROR: "):
                self.show(DETAIL + what.removeprefix("ERROR: "))
            return True
        return False

    def _announce(self, vertex: str, *, cached: bool = False) -> None:
        if vertex in self._announced:
            return
        self._announced.add(vertex)
        self.show(STEP + str(self._names[vertex]) + (" (cached)" if cached else ""))

    # -- the legacy builder --------------------------------------------------------------------

    def _legacy(self, line: str) -> None:
        step = _LEGACY_STEP.fullmatch(line)
        if step:
            self._current = step_name(step.group(1))
            self._legacy_announced = False
            return
        if line.strip() == "------":
            self._in_summary = not self._in_summary  # BuildKit's summary of a failed step: shown already
            return
        if self._in_summary or line.startswith(" > [") or line.startswith("executor failed running"):
            return
        if _LEGACY_NOISE.fullmatch(line) or _LEGACY_NOISE.match(line):
            if line.endswith("Using cache") and self._current and not self._legacy_announced:
                self._legacy_announced = True
                self.show(STEP + self._current + " (cached)")
            return
        if self._current is None or _NOTICES.match(line.strip()):
            return
        if not self._legacy_announced:
            self._legacy_announced = True
            self.show(STEP + self._current)
        self.show(DETAIL + line)
