"""One reading, as a property: for every Dockerfile minipaas accepts, the text it gives the builder parses back,
with BuildKit's own parser, to exactly the instructions it checked; and the node buildpack's template, whatever the
app's files hold, renders values only as arguments. Hypothesis writes the Dockerfiles, from an alphabet of what
split lines and words differently before (Unicode line and space separators, control characters, quotes,
escapes, continuations, heredoc markers, mixed case). No engine needed."""

from __future__ import annotations

import json
import unicodedata

import dockerfile
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from minipaas.build import buildpacks, builds, dockerfiles
from minipaas.errors import BuildFailed
from minipaas.source import dockerfile_policy as policy
from minipaas.source import dockerfile_reading as reading
from minipaas.source import nodeinstall, packagejson
from minipaas.state.settings import SHARE_DIR

ODD = ["\u00a0", "\u0085", "\u2028", "\u2029", "\u1680", "\u2000", "\u3000", "\ufeff", "\f", "\v", "\r", "\x1c",
       "\x1d", "\x1e", "\0", "\x1b", "é", "à", "Ņ", "Ã", "\u200b", "²", "\u0661"]
PLAIN = list("abcXYZ019 \t\"'\\$=,-#[]<>/:.{}@%*&;|()!~`+_")
CHARS = st.sampled_from(PLAIN * 3 + ODD)
WORD = st.text(CHARS, min_size=0, max_size=12)
KEYWORDS = ["FROM", "RUN", "CMD", "LABEL", "MAINTAINER", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME",
            "USER", "WORKDIR", "ARG", "STOPSIGNAL", "HEALTHCHECK", "SHELL", "ONBUILD", "BOGUS"]
FLAG_NAMES = ["from", "chown", "chmod", "mount", "platform", "link", "network", "interval", "FROM"]


@st.composite
def keyword(draw: st.DrawFn) -> str:
    word = draw(st.sampled_from(KEYWORDS))
    return "".join(c.lower() if draw(st.booleans()) else c for c in word)


@st.composite
def instruction_line(draw: st.DrawFn) -> str:
    parts = [draw(keyword())]
    for _ in range(draw(st.integers(0, 2))):
        parts.append(f"--{draw(st.sampled_from(FLAG_NAMES))}={draw(WORD)}")
    kind = draw(st.sampled_from(["words", "pairs", "json", "json-ascii"]))
    if kind == "words":
        parts += draw(st.lists(WORD, max_size=4))
    elif kind == "pairs":
        parts += [f"{draw(WORD)}={draw(WORD)}" for _ in range(draw(st.integers(1, 3)))]
    else:
        parts.append(json.dumps(draw(st.lists(WORD, min_size=1, max_size=3)), ensure_ascii=kind == "json-ascii"))
    spaces = draw(st.sampled_from([" ", "  ", "\t", " \u00a0", "\u2000"]))
    return spaces.join(parts)


@st.composite
def dockerfile_text(draw: st.DrawFn) -> str:
    lines = [draw(st.sampled_from(["# syntax=x", "# escape=`", "# a=\u00a0", "#" + draw(WORD), ""]))
             for _ in range(draw(st.integers(0, 2)))]
    lines.append("FROM minipaas/node:26 AS " + draw(st.sampled_from(["build", "Build", "b-1"])))
    for _ in range(draw(st.integers(1, 5))):
        line = draw(instruction_line())
        ending = draw(st.sampled_from(["\n", "\n", "\r\n", " \\\n  ", "\\\n", "\n# " + draw(WORD) + "\n", "\n\n"]))
        lines.append(line + ending.rstrip("\n") if ending.startswith(" \\") else line)
        if ending not in ("\n", "\r\n"):
            lines.append(draw(WORD))
    return "\n".join(lines) + draw(st.sampled_from(["\n", "", "\r\n", "\\\n"]))


def parsed_back(text: str) -> list[reading.Instruction]:
    """BuildKit's parser's own reading of a text, written down independently of dockerfile_reading.py."""
    out = []
    for command in dockerfile.parse_string(text):
        flags = tuple((raw[2:].partition("=")[0], raw.partition("=")[2]) for raw in command.flags)
        out.append(reading.Instruction(command.cmd.upper(), tuple(command.value), flags, bool(command.json)))
    return out


def assert_one_reading(rendered: str, instructions: list[reading.Instruction]) -> None:
    # One instruction per line, and every reader of lines agrees where they are.
    assert rendered.endswith("\n") and rendered.count("\n") == len(instructions)
    assert rendered.splitlines() == rendered[:-1].split("\n")
    assert not any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in rendered.replace("\n", "").replace("\t", ""))
    assert not any(line.lstrip().startswith("#") or "<<" in line for line in rendered.splitlines())
    assert parsed_back(rendered) == list(instructions)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dockerfile_text())
@example("FROM minipaas/node:26 AS build\nFROM\n\\\n")  # a lone backslash: a command without a keyword
@example("FROM minipaas/node:26 AS build\nFROM \u00b2\n")  # str.isdigit() takes it for a stage's index
@example("FROM minipaas/node:26 AS build\nHEALTHCHECK =\u00e0\n")  # the parser's error cut inside a UTF-8 character
def test_what_is_accepted_parses_back_to_exactly_what_was_checked(text: str) -> None:
    try:
        instructions = reading.read(text)
        rendered = reading.render(instructions)
    except BuildFailed as refused:  # refused: one line, naming the line where it can
        assert "\n" not in refused.message
        return
    assert_one_reading(rendered, instructions)
    # And after the policy rewrote references and mounts (every image allowed here: the rewriting is the point).
    try:
        checked = policy.check(instructions, app="shop", allowed=["*:*"], provided=lambda ref: True,
                               cache_namespace="mp/shop/0a1b", resolve=lambda name: f"mp/pin.1-a:{len(name)}")
        rendered = reading.render(list(checked.instructions))
    except BuildFailed as refused:
        assert "\n" not in refused.message
        return
    assert_one_reading(rendered, list(checked.instructions))


TEMPLATES = {p.name: p for p in buildpacks.load_all(SHARE_DIR / "buildpacks") if p.template}
FOLDER = st.from_regex(r"[A-Za-z0-9._@+-]{1,8}(/[A-Za-z0-9._@+-]{1,8}){0,2}", fullmatch=True).filter(
    lambda f: ".." not in f.split("/") and "." not in f.split("/") and "node_modules" not in f.split("/"))
MANAGER = st.sampled_from(["", "npm@10.9.0", "pnpm@9.1.0+sha512.0123abcdef", "yarn@4.5.0", "yarn@1.22.22"])
# What teststage.py and procfile.py let through (NUL and line breaks are refused there, in one line).
ANY = st.text(CHARS, min_size=1, max_size=40).filter(lambda s: s.strip() and not {"\0", "\r", "\n"} & set(s))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(test=ANY, web=st.one_of(st.none(), ANY), folders=st.lists(FOLDER, max_size=3, unique=True), manager=MANAGER,
       build=st.booleans(), kit=st.booleans(), pack=st.sampled_from(sorted(TEMPLATES)))
def test_the_node_templates_render_the_apps_values_as_arguments_only(test: str, web: str | None, folders: list[str],
                                                                      manager: str, build: bool, kit: bool,
                                                                      pack: str) -> None:
    def instructions(test: str, web: str | None) -> list[reading.Instruction]:
        document: dict[str, object] = {"scripts": {"test": "x", **({"build": "b"} if build else {})},
                                       "cacheDirectories": folders}
        if manager:
            document["packageManager"] = manager
        package = packagejson.parse(json.dumps(document).encode())
        paths = frozenset({"package.json"})
        install = nodeinstall.decide(package, paths, lambda name: None)
        facts = {"app": "shop", "files": ["package.json"], "folders": builds._folders(paths), "package": package,
                 "install": install, "procfile": {"web": web} if web else {}, "build_ca": True,
                 "builder": "buildkit" if kit else "legacy", "build_config": {}, "base": "minipaas/node:26",
                 "node_version": "26.0.0", "test_command": test}
        planned = dockerfiles.plan(buildpacks.render(TEMPLATES[pack], facts), app="shop", allowed=(),
                                   provided=lambda ref: ref == "minipaas/node:26", cache_namespace="mp/shop/0a1b")
        return list(planned.check(None).instructions)

    checked = instructions(test, web)
    assert_one_reading(reading.render(checked), checked)
    # Each value of the app's files is one argument of an exec form, never Dockerfile syntax: the instructions have
    # the shape they have with plain values.
    plain = instructions("npm test", "node server.js" if web else None)
    assert [(one.keyword, one.flags, one.json, len(one.args)) for one in checked] == \
        [(one.keyword, one.flags, one.json, len(one.args)) for one in plain]
    arguments = [arg for one in checked if one.json for arg in one.args]
    assert test in arguments
    if web and pack == "node":  # a static build's image serves files: no command
        assert f"exec {web}" in arguments
    if manager:
        assert manager in arguments
    if kit and build:
        assert all(folder in arguments for folder in folders)
