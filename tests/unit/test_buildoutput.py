"""What a pusher sees of a build (no engine needed: the builders' real output, recorded in tests/data)."""

from __future__ import annotations

from pathlib import Path

import pytest

from minipaas.build.buildoutput import BuildLines, clean, step_name

DATA = Path(__file__).resolve().parents[1] / "data"
SEEN = [
    "-----> Installing dependencies",
    "       hello",
    "       bold",
    "-----> echo second",
    "       second",
    '-----> sh -c "echo fail >&2; exit 3"',
    "       fail",
]


def shown(name: str, *, verbose: bool = False) -> list[str]:
    lines: list[str] = []
    feed = BuildLines(lines.append, verbose=verbose).feed
    for raw in (DATA / name).read_text().splitlines():
        feed(raw)
    return lines


def test_buildkit_output_becomes_steps_and_the_commands_own_lines() -> None:
    # The failing step's own words, once; no vertex ids, digests, timings, escape codes or npm notices.
    assert shown("buildkit-failed.txt") == [
        *SEEN, '       executor failed running [/bin/sh -c sh -c "echo fail >&2; exit 3"]: exit code: 3']


def test_legacy_output_becomes_the_same_steps() -> None:
    assert shown("legacy-failed.txt") == SEEN


@pytest.mark.parametrize("name", ["buildkit-failed.txt", "legacy-failed.txt"])
def test_verbose_shows_every_line(name: str) -> None:
    raw = [line for line in (DATA / name).read_text().splitlines()]
    assert shown(name, verbose=True) == ["       " + clean(line) for line in raw]


def test_cached_steps_say_so() -> None:
    lines: list[str] = []
    feed = BuildLines(lines.append).feed
    for raw in ["#7 [build 4/6] RUN npm ci --no-audit # Installing dependencies (npm ci)", "#7 CACHED",
                "Step 4/9 : RUN npm prune # Pruning devDependencies", " ---> Using cache", " ---> 0123456789ab"]:
        feed(raw)
    assert lines == ["-----> Installing dependencies (npm ci) (cached)", "-----> Pruning devDependencies (cached)"]


@pytest.mark.parametrize(("instruction", "name"), [
    ("RUN npm ci # Installing dependencies", "Installing dependencies"),
    ("RUN --mount=type=cache,target=/root/.npm,id=x npm ci", "npm ci"),
    ("RUN echo '# not a comment'", "echo '# not a comment'"),
    ("COPY src/ ./", None),
    ("FROM minipaas/node:26 AS build", None),
    ("run echo lower", "echo lower"),
    ("RUN " + "x" * 300, "x" * 97 + "..."),
])
def test_step_names(instruction: str, name: str | None) -> None:
    assert step_name(instruction) == name


def test_clean_removes_escape_codes_and_redraws() -> None:
    assert clean("\x1b[1mbold\x1b[0m") == "bold"
    assert clean("10%\r50%\r100% done\r") == "100% done"
    assert clean("\x1b[91mfail\n") == "fail"
