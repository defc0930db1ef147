"""What an app's own Dockerfile may reference: its own stages, minipaas' base images, and what an admin allowed.

A build runs with the Docker engine's whole image store within reach: `FROM minipaas/<other-app>:1`,
`COPY --from=<other-app's image>` or `RUN --mount=from=...` would ship another tenant's code. So every
image a Dockerfile names (FROM, COPY --from, RUN --mount from=, the `# syntax=` frontend) must be
- one of the Dockerfile's own earlier stages (by name or index), or `scratch`;
- a base image minipaas provides (`provided`, e.g. minipaas/node:22, decided by the caller); or
- matched by a pattern an admin allowed (the `build-images` setting), e.g. `node:*-slim`.
Image ids and id prefixes are never names, so they never pass. BuildKit cache mounts are shared by
id across every build on the engine; an app's cache ids are put in the app's own namespace, so one
app can neither read nor poison another's cache.

The Dockerfile is parsed with the `dockerfile` package (BuildKit's own Go parser), never with regexes.
"""

from __future__ import annotations

import csv
import fnmatch
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import dockerfile
from docker.utils import parse_repository_tag

from minipaas.errors import BuildFailed, InvalidInput

# Parser directives (`# syntax=...`) come first, before any other line, as BuildKit reads them.
_DIRECTIVE = re.compile(r"#\s*([A-Za-z][A-Za-z0-9_]*)\s*=\s*(\S.*?)\s*$")
_VARIABLE = re.compile(r"\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?::(?P<op>[-+])(?P<word>[^}]*))?\}"
                       r"|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))")
_DEFAULT_REGISTRIES = ("docker.io/library/", "index.docker.io/library/", "docker.io/", "index.docker.io/")


class ReferenceRefused(BuildFailed):
    """The Dockerfile names an image this app's builds may not read."""


@dataclass(frozen=True)
class Checked:
    text: str  # the Dockerfile as it is built (cache mount ids namespaced)
    images: tuple[str, ...]  # every outside image it uses, normalized


def normalize(reference: str) -> str:
    """`node` → `node:latest`, `docker.io/library/node:22` → `node:22`; digests are kept."""
    repository, tag = parse_repository_tag(reference.strip())
    for prefix in _DEFAULT_REGISTRIES:
        if repository.startswith(prefix):
            repository = repository[len(prefix):]
            break
    if tag is None:
        return f"{repository}:latest"
    return f"{repository}@{tag}" if tag.startswith("sha256:") else f"{repository}:{tag}"


def allowed_by(reference: str, patterns: Iterable[str]) -> bool:
    """Whether an admin's pattern (`node:*`, `debian:bookworm-slim`) matches the reference."""
    name = normalize(reference)
    for pattern in patterns:
        pattern = pattern.strip()
        if not pattern:
            continue
        wanted = pattern if any(c in pattern for c in "*?[") and ":" in pattern else normalize(pattern)
        if fnmatch.fnmatchcase(name, wanted):
            return True
    return False


def _expand(value: str, args: dict[str, str], what: str, line: int) -> str:
    """Substitute ARG defaults the way the Dockerfile frontend does ($X, ${X}, ${X:-w}, ${X:+w})."""

    def one(match: re.Match[str]) -> str:
        name = match.group("braced") or match.group("plain")
        op, word = match.group("op"), match.group("word") or ""
        if op == "-":
            return args.get(name) or word
        if op == "+":
            return word if args.get(name) else ""
        if name not in args:
            raise ReferenceRefused(f"Dockerfile line {line}: {what} uses ${name}, which has no value "
                                   "(builds get no build arguments; give the ARG a default)")
        return args[name]

    expanded = _VARIABLE.sub(one, value)
    if "$" in expanded:
        raise ReferenceRefused(f"Dockerfile line {line}: cannot resolve {value!r} in {what}")
    return expanded


def _mount_options(flag: str) -> dict[str, str] | None:
    """The key=value options of a `--mount=...` flag (CSV, as BuildKit reads them); None for other flags."""
    if not flag.startswith("--mount="):
        return None
    fields = next(csv.reader([flag[len("--mount="):]]), [])
    options = {}
    for field in fields:
        key, sep, value = field.partition("=")
        options[key.strip().lower()] = value.strip() if sep else "true"
    return options


def _directives(text: str) -> dict[str, tuple[str, int]]:
    found: dict[str, tuple[str, int]] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        match = _DIRECTIVE.fullmatch(line.strip())
        if not match:
            break
        found[match.group(1).lower()] = (match.group(2), number)
    return found


def check(text: str, *, app: str, allowed: Sequence[str], provided: Callable[[str], bool],
          cache_namespace: str) -> Checked:
    """Refuse (ReferenceRefused, one line) a Dockerfile that reads an image it may not; return what to build."""
    try:
        commands = dockerfile.parse_string(text)
    except dockerfile.GoParseError as exc:
        raise InvalidInput(f"the Dockerfile cannot be parsed: {str(exc).strip().splitlines()[0]}") from None
    stages: list[str] = []  # names (lowercase) of the stages so far; "" for an unnamed one
    global_args: dict[str, str] = {}
    images: list[str] = []

    def outside(reference: str, what: str, line: int, *, stage_ok: bool) -> None:
        ref = reference.strip()
        if stage_ok and (ref.lower() in stages or (ref.isdigit() and int(ref) < len(stages))):
            return
        if what == "FROM" and ref.lower() == "scratch":
            return
        try:
            name = normalize(ref)
        except Exception:  # docker-py's parser raises plain errors on nonsense
            name = ""
        if name and (provided(ref) or allowed_by(ref, allowed)):
            images.append(name)
            return
        hint = "minipaas' base images (minipaas/node:MAJOR), its own stages"
        raise ReferenceRefused(
            f"Dockerfile line {line}: {what} {ref[:100]} is not allowed: builds may use {hint}, and images "
            f"an admin allowed (`minipaas settings:set {app} build-images '{ref[:60]}'`)")

    syntax = _directives(text).get("syntax")
    if syntax is not None:
        outside(syntax[0], "# syntax=", syntax[1], stage_ok=False)

    replacements: dict[int, tuple[int, str]] = {}  # start line -> (end line, new text)
    for command in commands:
        line = command.start_line
        if command.cmd == "ARG" and not stages:
            for item in command.value:
                key, sep, value = item.partition("=")
                global_args[key] = _unquote(value) if sep else global_args.get(key, "")
        elif command.cmd == "FROM":
            if not command.value:
                raise InvalidInput(f"Dockerfile line {line}: FROM needs an image")
            image = _expand(command.value[0], global_args, "FROM", line)
            outside(image, "FROM", line, stage_ok=True)
            has_name = len(command.value) >= 3 and command.value[1].lower() == "as"
            stages.append(command.value[2].lower() if has_name else "")
        elif command.cmd == "COPY":
            for flag in command.flags:
                if flag.lower().startswith("--from="):
                    source = _expand(flag.split("=", 1)[1], global_args, "COPY --from", line)
                    outside(source, "COPY --from", line, stage_ok=True)
        elif command.cmd == "RUN":
            rewritten = command.original
            for flag in command.flags:
                options = _mount_options(flag)
                if options is None:
                    continue
                if "from" in options:
                    source = _expand(options["from"], global_args, "RUN --mount from=", line)
                    outside(source, "RUN --mount from=", line, stage_ok=True)
                if options.get("type") == "cache":
                    rewritten = rewritten.replace(flag, _namespaced_cache(flag, options, cache_namespace), 1)
            if rewritten != command.original:
                replacements[line] = (command.end_line, rewritten)
    return Checked(text=_replace_lines(text, replacements), images=tuple(images))


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def _namespaced_cache(flag: str, options: dict[str, str], namespace: str) -> str:
    """The same cache mount with an id in this app's namespace (default id: the target path)."""
    own = options.get("id") or options.get("target") or options.get("dst") or options.get("destination") or ""
    options = {**options, "id": f"{namespace}/{own.lstrip('/')}"}
    fields = [f"{key}={value}" for key, value in options.items()]
    return "--mount=" + ",".join(fields)


def _replace_lines(text: str, replacements: dict[int, tuple[int, str]]) -> str:
    if not replacements:
        return text
    lines = text.splitlines(keepends=True)
    out: list[str] = []
    number = 1
    while number <= len(lines):
        if number in replacements:
            end, new = replacements[number]
            out.append(new.rstrip("\n") + "\n")
            number = end + 1
        else:
            out.append(lines[number - 1])
            number += 1
    return "".join(out)
