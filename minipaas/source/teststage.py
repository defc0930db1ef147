"""Tests as image layers: whether a build runs the app's tests, and with which command.

A Node app's tests are its package.json `test` script (`npm test`, `yarn test`, `pnpm test`), or the
command app.json names (`scripts.test`, or Heroku CI's `environments.test.scripts.test`), which wins.
The buildpack's template turns the command into a test stage (buildpacks/node/Dockerfile.j2); this
module only decides the command and whether it runs: the app's `tests` setting (on, off, review-only)
and the `-o skip-tests` push option. The outcome (passed, cached, failed) is read from the builder's
output by buildoutput.py. Pure: facts in, a decision out.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from minipaas.errors import BuildFailed
from minipaas.source.packagejson import Package
from minipaas.state.names import parent_of

MAX_COMMAND = 1000
# `npm init`'s placeholder: a script that says there are no tests and fails. Heroku's users have it in
# countless apps that have no tests; running it would reject every push of them.
PLACEHOLDER = re.compile(r"""echo ["']?Error: no test specified["']? && exit 1""")


@dataclass(frozen=True)
class Decision:
    """What a build does about tests."""

    command: str  # the command the test stage runs ("": no test stage)
    result: str  # "": the app has no tests; "run": they run in this build; "skipped": they exist, do not run
    why: str = ""  # why they are skipped, or what was left out (the placeholder), for the pusher

    @property
    def runs(self) -> bool:
        return self.result == "run"


def app_json_script(raw: bytes | None) -> str:
    """The test command app.json names ("" when it names none); BuildFailed when it names an odd one."""
    if raw is None:
        return ""
    try:
        data: Any = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return ""  # app.json's own checks (source/appjson.py) report a broken file where it matters
    if not isinstance(data, dict):
        return ""
    found: object = None
    for path in (("environments", "test", "scripts", "test"), ("scripts", "test")):
        node: object = data
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if node is not None:
            found = node
            break
    if found is None:
        return ""
    return _checked(found, "app.json's test script")


def _checked(command: object, where: str) -> str:
    if not isinstance(command, str):
        raise BuildFailed(f"{where} must be a string")
    command = command.strip()
    # One line of a RUN instruction: a newline or a continuation would write Dockerfile instructions.
    if not command or len(command) > MAX_COMMAND or any(c in command for c in "\n\r\0") or command.endswith("\\"):
        raise BuildFailed(f"{where} must be one line of at most {MAX_COMMAND} characters")
    return command


def decide(package: Package, app_json_test: str, *, manager: str, app: str, setting: str,
           skip: bool) -> Decision:
    """The test stage of a build: `manager` runs the package.json script (npm, yarn or pnpm), `setting` is the
    app's `tests` setting, `skip` the `-o skip-tests` push option."""
    script = package.scripts.get("test", "")
    if app_json_test:
        command = app_json_test
    elif script and PLACEHOLDER.fullmatch(script.strip()):
        return Decision("", "", why="the test script is npm init's placeholder (no test specified): no tests run")
    elif script:
        command = f"{manager or 'npm'} test"
    else:
        return Decision("", "")
    if skip:
        return Decision(command, "skipped", why="-o skip-tests")
    if setting == "off":
        return Decision(command, "skipped", why="the tests setting is off")
    if setting == "review-only" and parent_of(app) is None:  # not a review app (`shop--feature-x`)
        return Decision(command, "skipped", why="the tests setting is review-only")
    return Decision(command, "run")
