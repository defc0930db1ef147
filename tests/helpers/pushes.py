"""What a push left: the `!` lines of a refusal, an image on the engine, and which builder (BuildKit or the
legacy one) made the newest release."""

from __future__ import annotations

import re
import subprocess

from tests.helpers.host import Paas


def image_exists(ref: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", ref], capture_output=True).returncode == 0


def pushed_error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    """The `!` lines of a rejected push, without the closing 'push rejected' line."""
    lines = [line.removeprefix("remote:").strip() for line in (result.stdout + result.stderr).splitlines()
             if line.startswith("remote:")]
    return [line for line in lines if line.startswith("!") and "push rejected" not in line]


BUILDKIT_STEP = re.compile(r"^#\d+ \[", re.M)  # --progress=plain: `#7 [4/4] RUN ...`


LEGACY_STEP = re.compile(r"^Step \d+/\d+ : ", re.M)


def assert_built_with(builder: str, paas: Paas, app: str) -> None:
    """The newest release of the app was built by that builder (its log keeps the builder's own lines)."""
    log = paas.builder_log(app)
    used, other = (BUILDKIT_STEP, LEGACY_STEP) if builder == "buildkit" else (LEGACY_STEP, BUILDKIT_STEP)
    assert used.search(log) and not other.search(log), log
