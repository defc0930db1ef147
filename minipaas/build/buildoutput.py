"""What a pusher sees of a build: herokuish-style steps and the commands' own output, without builder noise.

Both builders print a lot that means nothing to the person pushing: BuildKit's vertex ids, digests,
`DONE 0.5s` and `[internal]` steps; the legacy builder's `---> 3f2a1b`, `Running in`, `Removing
intermediate container`. A `RUN` step becomes one `-----> ` line (its trailing `# comment` when it
has one, as minipaas' buildpack templates write them, else the command itself) followed by what the
command printed; every other instruction (FROM, COPY, WORKDIR, LABEL...) says nothing. Terminal escape
codes and npm's update notices go. `verbose` (`git push -o verbose`) shows every line as it came.

The test step (its name starts with `Running tests`, as buildpacks/node/Dockerfile.j2 writes it) is
quieter: its output is held (`TestStep.output`), and the pusher sees `Running tests: npm test`, then
`Tests passed in 3.2s` or `Tests (cached)`; a failed one's output tail is the build's error (builds.py).

`BuildLines` is pure: raw lines in, lines to show out; the caller decides where they go.
"""

from __future__ import annotations

import json
import re
import time
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
_LEGACY_RESULT = re.compile(r" ---> [0-9a-f]{12}")
TESTS_STEP = "Running tests"
TAIL = 40  # lines of a failed test run the pusher gets
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
    command = _exec_script(command)
    _body, hash_, comment = command.rpartition(" # ")
    if hash_ and comment.strip() and '"' not in comment and "'" not in comment:
        return comment.strip()
    command = " ".join(command.split())
    return command if len(command) <= MAX_NAME else command[:MAX_NAME - 3] + "..."


def _exec_script(command: str) -> str:
    """An exec form's shell script (`["/bin/sh", "-c", "npm test # Running tests", "sh", ...]`: the script, whose
    arguments are values of the app's files), or its words; a shell form as it is. BuildKit prints an exec form
    with its escapes undone (no longer JSON): then its label, the script's last `# comment`, is all there is."""
    if not command.startswith("["):
        return command
    try:
        argv = json.loads(command)
    except ValueError:
        label = re.search(r' # ([^"\\]+)", ', command)
        return f"{command} # {label.group(1)}" if label else command
    if not isinstance(argv, list) or not all(isinstance(arg, str) for arg in argv):
        return command
    return argv[2] if len(argv) >= 3 and argv[1] == "-c" else " ".join(argv)


@dataclass
class TestStep:
    """What a build's test step did, as its builder told."""

    name: str = ""  # the step's name (`Running tests: npm test`); "" while none was seen
    state: str = ""  # running, passed, cached, failed ("": none seen)
    seconds: float | None = None  # how long it ran (None: it did not run, or has not finished)
    output: list[str] = field(default_factory=list)  # what the tests printed
    started: float = 0.0
    announced: bool = False

    def tail(self, count: int = TAIL) -> str:
        shown = [line for line in self.output if line.strip()]
        cut = [f"... ({len(shown) - count} earlier lines in `releases:info`)"] if len(shown) > count else []
        return "\n".join(cut + shown[-count:])


@dataclass
class BuildLines:
    """Feeds a builder's raw lines to `show` the way the pusher should see them."""

    show: Callable[[str], None]
    verbose: bool = False
    tests_label: str = ""  # what the pusher is told the test step runs (`Running tests: npm test`)
    _names: dict[str, str | None] = field(default_factory=dict)  # BuildKit vertex -> step name (None: silent)
    _announced: set[str] = field(default_factory=set)
    _current: str | None = None  # the legacy builder's current step name, None when silent
    _legacy_announced: bool = False
    _in_summary: bool = False  # BuildKit repeats a failed step between `------` lines: once is enough
    tests: TestStep = field(default_factory=TestStep)
    _tests_vertex: str = ""  # BuildKit's vertex of the test step

    def feed(self, raw: str) -> None:
        if self.verbose:
            self.show(DETAIL + clean(raw))
        line = clean(raw)
        if not line.strip():
            return
        if line.startswith("#") and self._buildkit(line):
            return
        self._legacy(line)

    # -- BuildKit ------------------------------------------------------------------------------

    def _say(self, line: str) -> None:
        if not self.verbose:  # verbose: the raw line has been shown
            self.show(line)

    def _buildkit(self, line: str) -> bool:
        header = _BK_HEADER.fullmatch(line)
        if header and header.group(1) not in self._names:
            name = step_name(header.group(2))
            self._names[header.group(1)] = name
            if name and name.startswith(TESTS_STEP):
                self._tests_vertex = header.group(1)
                self._test_started(name)
            return True
        output = _BK_OUTPUT.fullmatch(line)
        if output and output.group(1) == self._tests_vertex:
            self._test_output(output.group(2))
            return True
        status = _BK_STATUS.fullmatch(line)
        if status and status.group(1) == self._tests_vertex and self._tests_vertex:
            what = status.group(2)
            if what == "CACHED":
                self._test_cached()
            elif what.startswith("DONE"):
                self._test_passed(float(what.split()[1].rstrip("s")))
            elif what.startswith("ERROR"):
                self.tests.state = "failed"
                self.tests.seconds = time.monotonic() - self.tests.started
            return True
        if output:
            vertex, text = output.groups()
            if self._names.get(vertex) is not None and text.strip() and not _NOTICES.match(text.strip()):
                self._announce(vertex)
                self._say(DETAIL + text)
            return True
        status = _BK_STATUS.fullmatch(line)
        if status:
            vertex, what = status.groups()
            if what == "CACHED" and self._names.get(vertex):
                self._announce(vertex, cached=True)
            elif what.startswith("DONE") and self._names.get(vertex):
                self._announce(vertex)
            elif what.startswith("ERROR: "):
                self._say(DETAIL + what.removeprefix("ERROR: "))
            return True
        return False

    def _announce(self, vertex: str, *, cached: bool = False) -> None:
        if vertex in self._announced:
            return
        self._announced.add(vertex)
        self._say(STEP + str(self._names[vertex]) + (" (cached)" if cached else ""))

    # -- the legacy builder --------------------------------------------------------------------

    def _legacy(self, line: str) -> None:
        step = _LEGACY_STEP.fullmatch(line)
        if step:
            self._current = step_name(step.group(1))
            self._legacy_announced = False
            if self._current and self._current.startswith(TESTS_STEP):
                self._test_started(self._current)
            return
        if self._current is not None and self._current.startswith(TESTS_STEP) and self.tests.state == "running":
            if line.endswith("Using cache"):
                self._test_cached()
            elif _LEGACY_RESULT.fullmatch(line):
                self._test_passed(time.monotonic() - self.tests.started)
            elif not _LEGACY_NOISE.match(line) and line.strip() != "------":
                self._test_output(line)
            return
        if line.strip() == "------":
            self._in_summary = not self._in_summary  # BuildKit's summary of a failed step: shown already
            return
        if self._in_summary or line.startswith(" > [") or line.startswith("executor failed running"):
            return
        if _LEGACY_NOISE.fullmatch(line) or _LEGACY_NOISE.match(line):
            if line.endswith("Using cache") and self._current and not self._legacy_announced:
                self._legacy_announced = True
                self._say(STEP + self._current + " (cached)")
            return
        if self._current is None or _NOTICES.match(line.strip()):
            return
        if not self._legacy_announced:
            self._legacy_announced = True
            self._say(STEP + self._current)
        self._say(DETAIL + line)

    # -- the test step (either builder) ----------------------------------------------------------

    def ended(self, *, failed: bool) -> TestStep:
        """The test step once the build is over: a legacy build that failed while it ran failed in it (BuildKit
        says so itself; its test step still running then was cancelled by another step's failure)."""
        if failed and self.tests.state == "running" and not self._tests_vertex:
            self.tests.state = "failed"
            self.tests.seconds = time.monotonic() - self.tests.started
        return self.tests

    def _test_started(self, name: str) -> None:
        self.tests = TestStep(name=self.tests_label or name, state="running", started=time.monotonic())

    def _test_output(self, text: str) -> None:
        if not self.tests.announced:  # it runs (a cached step prints nothing): say so, its output is held
            self.tests.announced = True
            self.show(STEP + self.tests.name)
        self.tests.output.append(text)

    def _test_cached(self) -> None:
        self.tests.state = "cached"
        self.show(STEP + "Tests (cached)")

    def _test_passed(self, seconds: float) -> None:
        if not self.tests.announced:
            self.tests.announced = True
            self.show(STEP + self.tests.name)
        self.tests.state, self.tests.seconds = "passed", seconds
        self.show(f"{STEP}Tests passed in {seconds:.1f}s")
