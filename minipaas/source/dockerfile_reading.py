"""One reading of a Dockerfile: the instructions minipaas checks are the instructions the builder gets.

A Dockerfile (the app's own, or one a buildpack template rendered) is read once, with BuildKit's own parser
(the `dockerfile` package: Go, compiled in), into `Instruction`s. The builder never sees that text: it gets what
`render` writes from the instructions, one instruction per line, flags as `--name=value` in characters no parser
reads twice, exec forms as ASCII JSON, no comments, no parser directives. `render` parses its own text again and
refuses to hand it over unless it gives back exactly the instructions it was given.

What could be read two ways is refused here, in one line naming the line (`Unrenderable`):
- control characters other than tab and newline (CRLF line ends become LF first) and Unicode line and paragraph
  separators: Python's `splitlines()`, Go's scanner and the builders split lines differently at them;
- heredocs, and `<<` anywhere in RUN, COPY and ADD: BuildKit 0.8 (Debian's docker.io) and the legacy builder know
  no heredocs, newer parsers do, and each would read the lines after it differently;
- ONBUILD (instructions that run in some later build), a `# syntax=` directive (another frontend, which can build
  anything) and an escape character other than `\\`;
- instructions and flags outside `FLAGS`, and flag values with spaces, quotes, backslashes or non-ASCII characters
  (the parser splits flags byte by byte).
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field

import dockerfile

from minipaas.errors import BuildFailed

# The flags each instruction may carry (anything else, `--link`, `--network`, `--security`, is refused).
FLAGS: dict[str, frozenset[str]] = {
    "FROM": frozenset({"platform"}),
    "RUN": frozenset({"mount"}),
    "COPY": frozenset({"from", "chown", "chmod"}),
    "ADD": frozenset({"chown", "chmod"}),
    "HEALTHCHECK": frozenset({"interval", "timeout", "start-period", "retries"}),
    **{keyword: frozenset() for keyword in ("CMD", "LABEL", "MAINTAINER", "EXPOSE", "ENV", "ENTRYPOINT", "VOLUME",
                                            "USER", "WORKDIR", "ARG", "STOPSIGNAL", "SHELL")},
}
# A flag's value as it is written back: nothing the parser unquotes, unescapes or splits (FROM --platform may
# name the builder's own variables, $BUILDPLATFORM).
_FLAG_VALUE = re.compile(r"[A-Za-z0-9_.,:/@=+%-]+")
_PLATFORM = re.compile(r"[A-Za-z0-9_.,/${}-]+")
_HEREDOC_KEYWORDS = ("RUN", "COPY", "ADD")
_JSON_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000", re.IGNORECASE)
# Where BuildKit's parser takes a line as continued on the next one.
_CONTINUED = re.compile(r"\\[ \t]*$")
# Directives as any builder might read them: the first lines' comments, `\s` as wide as Unicode makes it.
_DIRECTIVE = re.compile(r"#\s*(syntax|escape)\s*=\s*(.*?)\s*$", re.IGNORECASE)


class Unrenderable(BuildFailed):
    """A Dockerfile minipaas cannot pass on to the builder exactly as it read it."""


@dataclass(frozen=True)
class Instruction:
    """One instruction as BuildKit's parser reads it: what a checker looks at and what `render` writes."""

    keyword: str  # upper case: FROM, RUN, COPY...
    args: tuple[str, ...]  # the parser's values (exec forms: the decoded JSON strings)
    flags: tuple[tuple[str, str], ...] = ()  # (name, value) in order: (("from", "build"), ("chown", "node"))
    json: bool = False  # the exec (JSON) form
    line: int = field(default=0, compare=False)  # where it starts in the text it was read from (0: made here)

    def flag(self, name: str) -> list[str]:
        return [value for key, value in self.flags if key == name]


def read(text: str) -> list[Instruction]:
    """The instructions of a Dockerfile; Unrenderable (one line naming the line) when any is ambiguous."""
    text = text.replace("\r\n", "\n").removeprefix("\ufeff")
    _refuse_odd_characters(text)
    _refuse_directives(text)
    try:
        commands = dockerfile.parse_string(text)
    except dockerfile.GoParseError as exc:
        raise Unrenderable(f"the Dockerfile cannot be parsed: {str(exc).strip().splitlines()[0]}") from None
    except UnicodeDecodeError:
        # The parser's error cut its message inside a UTF-8 character (the binding then cannot decode it).
        raise Unrenderable("the Dockerfile cannot be parsed (an instruction's arguments are malformed)") from None
    instructions = [_instruction(command) for command in commands]
    if not instructions:
        raise Unrenderable("the Dockerfile has no instructions")
    return instructions


def render(instructions: list[Instruction]) -> str:
    """The text the builder gets; it parses back to exactly `instructions` (Unrenderable otherwise)."""
    lines = [_line(instruction) for instruction in instructions]
    text = "\n".join(lines) + "\n"
    try:
        again = [_instruction(command, checked=False) for command in dockerfile.parse_string(text)]
    except (dockerfile.GoParseError, UnicodeDecodeError, Unrenderable):
        again = []
    if again != list(instructions):
        bad = next((i for i, (a, b) in enumerate(zip(again, instructions, strict=False)) if a != b),
                   min(len(again), len(instructions)))
        where = instructions[bad].line if bad < len(instructions) else 0
        raise Unrenderable(f"Dockerfile line {where}: this instruction cannot be passed on to the builder exactly "
                           "as written; write it in a plainer form")
    return text


def _refuse_odd_characters(text: str) -> None:
    for number, line in enumerate(text.split("\n"), start=1):
        if _JSON_NUL.search(line):  # a NUL in an exec form: the parser's Python binding cuts the string there
            raise Unrenderable(f"Dockerfile line {number}: a NUL character (\\u0000) is not allowed")
        for char in line:
            if char == "\t":
                continue
            if unicodedata.category(char) in ("Cc", "Zl", "Zp"):
                raise Unrenderable(f"Dockerfile line {number}: the character U+{ord(char):04X} is not allowed "
                                   "(only tab and newline among control characters and line separators)")


def _refuse_directives(text: str) -> None:
    """`# syntax=` anywhere a builder could take it for a directive (the comments before the first
    instruction), and an escape character other than the default."""
    for number, line in enumerate(text.split("\n"), start=1):
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            return
        found = _DIRECTIVE.fullmatch(stripped)
        if found is None:
            continue
        name, value = found.group(1).lower(), found.group(2)
        if name == "syntax":
            raise Unrenderable(f"Dockerfile line {number}: `# syntax=` is not allowed: builds use the builder's "
                               "own Dockerfile frontend")
        if value != "\\":
            raise Unrenderable(f"Dockerfile line {number}: `# escape={value[:10]}` is not allowed: only the "
                               "default escape character, a backslash")


def _instruction(command: dockerfile.Command, *, checked: bool = True) -> Instruction:
    if command.cmd is None:  # what BuildKit's parser makes of a line that is only a backslash
        raise Unrenderable(f"Dockerfile line {command.start_line}: no instruction, only a line continuation")
    keyword, line = command.cmd.upper(), command.start_line
    if checked:
        if keyword == "ONBUILD":
            raise Unrenderable(f"Dockerfile line {line}: ONBUILD is not allowed (its instructions would run in "
                               "another build, unchecked)")
        if keyword not in FLAGS:
            raise Unrenderable(f"Dockerfile line {line}: unknown instruction {command.cmd[:40]}")
        if command.heredocs or (keyword in _HEREDOC_KEYWORDS and "<<" in command.original):
            raise Unrenderable(f"Dockerfile line {line}: heredocs (`<<`) are not allowed in {keyword}: put the "
                               "script in a file of the repository and COPY or run it")
    flags = tuple(_flag(keyword, raw, line, checked=checked) for raw in command.flags)
    return Instruction(keyword, tuple(command.value), flags, bool(command.json), line)


def _flag(keyword: str, raw: str, line: int, *, checked: bool) -> tuple[str, str]:
    name, sep, value = raw.removeprefix("--").partition("=")
    if not checked:
        return name, value
    if not raw.startswith("--") or not sep or name not in FLAGS.get(keyword, ()):
        raise Unrenderable(f"Dockerfile line {line}: {keyword} {raw.partition('=')[0][:40]} is not allowed "
                           f"(allowed: {', '.join(f'--{f}' for f in sorted(FLAGS[keyword])) or 'no flags'})")
    pattern = _PLATFORM if name == "platform" else _FLAG_VALUE
    if not pattern.fullmatch(value):
        raise Unrenderable(f"Dockerfile line {line}: the value of {keyword} --{name} has characters minipaas "
                           "cannot pass on exactly (spaces, quotes, backslashes, $ or non-ASCII)")
    return name, value


def _line(instruction: Instruction) -> str:
    head = " ".join([instruction.keyword, *(f"--{name}={value}" for name, value in instruction.flags)])
    rest = _args(instruction)
    line = f"{head} {rest}" if rest else head
    if _CONTINUED.search(line) or (instruction.keyword in _HEREDOC_KEYWORDS and "<<" in line):
        raise Unrenderable(f"Dockerfile line {instruction.line}: this instruction cannot be passed on to the "
                           "builder exactly as written (it ends in a backslash, or holds `<<`)")
    if any(unicodedata.category(char) in ("Cc", "Zl", "Zp") and char != "\t" for char in line):
        raise Unrenderable(f"Dockerfile line {instruction.line}: a control character is not allowed")
    return line


def _args(instruction: Instruction) -> str:
    args = instruction.args
    if instruction.keyword == "HEALTHCHECK" and args and args[0].upper() == "CMD":
        return "CMD " + (exec_form(args[1:]) if instruction.json else " ".join(args[1:]))
    if instruction.json:
        return exec_form(args)
    if instruction.keyword in ("ENV", "LABEL"):
        pairs = list(zip(args[::2], args[1::2], strict=False))
        plain = " ".join(f"{key}={value}" for key, value in pairs)
        # `ENV KEY a value with spaces`, the older form, is the only one that holds a bare space in a value.
        if len(pairs) == 1 and re.search(r"\s", _unquoted(pairs[0][1])):
            return f"{pairs[0][0]} {pairs[0][1]}"
        return plain
    return " ".join(args)


def exec_form(values: Sequence[str]) -> str:
    """An exec form's JSON: ASCII, and `<` escaped too, so that no `<<` a newer parser takes for a heredoc."""
    return json.dumps(list(values), ensure_ascii=True).replace("<", "\\u003c")


def _unquoted(value: str) -> str:
    """The value without its quoted parts and escaped characters: where a bare space would split it."""
    return re.sub(r"\\.|\"(?:\\.|[^\"\\])*\"|'[^']*'", "", value)
