"""What a build's Dockerfile may reference, decided on the instructions the builder will get.

A build runs with the Docker engine's whole image store within reach: `FROM minipaas/<other-app>:1`,
`COPY --from=<other app's image>` or `RUN --mount=from=...` would ship another tenant's code, and a cache mount
with another app's id would read and poison its downloads. So, over the instructions of dockerfile_reading.py
(never over text), every image a Dockerfile names must be
- one of its own earlier stages (by name, or by index in COPY --from), or `scratch`;
- a base image minipaas provides (`provided`, e.g. minipaas/node:22, decided by the caller); or
- matched by a pattern an admin allowed (the `build-images` setting), e.g. `node:*-slim`.
Image ids and id prefixes are never names, so they never pass.

`check` returns the instructions with every reference rewritten to what minipaas decided: a stage's name, `scratch`,
or the image through `resolve` (builds.py gives it the image ids it checked, as the builder can take them); mount
options in one canonical form, with cache ids that minipaas makes in the app's own namespace (its life: see
builds.cache_namespace). The builder never resolves a name a deployer wrote.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from minipaas.adapters import engine
from minipaas.errors import BuildFailed
from minipaas.source.dockerfile_reading import Instruction, Unrenderable

_VARIABLE = re.compile(r"\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?::(?P<op>[-+])(?P<word>[^}]*))?\}"
                       r"|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))")
_DEFAULT_REGISTRIES = ("docker.io/library/", "index.docker.io/library/", "docker.io/", "index.docker.io/")
# A stage's name as BuildKit takes it (lower case); `minipaas-` names are minipaas' own.
_STAGE_NAME = re.compile(r"[a-z][a-z0-9._-]{0,62}")
_PATH = re.compile(r"[A-Za-z0-9._/@+~-]{1,400}")
_CACHE_ID = re.compile(r"[A-Za-z0-9._/-]{1,100}")
# The options each mount type may carry, and what their values look like (aliases: `_MOUNT_ALIASES`).
_MOUNT_VALUES: dict[str, re.Pattern[str]] = {
    "target": _PATH, "source": _PATH, "from": re.compile(r".+"), "id": re.compile(r".+"),
    "sharing": re.compile(r"shared|private|locked"), "mode": re.compile(r"0?[0-7]{3}"),
    "uid": re.compile(r"[0-9]{1,10}"), "gid": re.compile(r"[0-9]{1,10}"), "required": re.compile(r"true|false"),
    "readonly": re.compile(r"true|false"),
}
_MOUNT_OPTIONS: dict[str, tuple[str, ...]] = {
    "bind": ("target", "source", "from", "readonly"),
    "cache": ("target", "id", "sharing", "from", "source", "mode", "uid", "gid", "readonly"),
    "tmpfs": ("target",),
    "secret": ("id", "target", "required", "mode", "uid", "gid"),
}
_MOUNT_ALIASES = {"dst": "target", "destination": "target", "src": "source", "ro": "readonly", "rw": "readwrite",
                  "readwrite": "readwrite"}


class ReferenceRefused(BuildFailed):
    """The Dockerfile names an image this app's builds may not read."""


@dataclass(frozen=True)
class Checked:
    instructions: tuple[Instruction, ...]  # as the builder gets them (references and mounts rewritten)
    images: tuple[str, ...]  # every outside image it uses, normalized (`minipaas/node:26`), in order


def normalize(reference: str) -> str:
    """`node` → `node:latest`, `docker.io/library/node:22` → `node:22`; digests are kept."""
    repository, tag = engine.sdk.docker.utils.parse_repository_tag(reference.strip())
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


def check(instructions: Sequence[Instruction], *, app: str, allowed: Sequence[str], provided: Callable[[str], bool],
          cache_namespace: str, resolve: Callable[[str], str] | None = None) -> Checked:
    """Refuse (ReferenceRefused, one line) instructions that read an image they may not; return them as the
    builder gets them. `resolve` turns a checked image's normalized name into what the builder is given (its
    id, or a tag minipaas made for this build); without it the name stays."""
    walk = _Walk(app, allowed, provided, cache_namespace, resolve or (lambda name: name))
    return Checked(tuple(walk.instruction(one) for one in instructions), tuple(dict.fromkeys(walk.images)))


@dataclass
class _Walk:
    app: str
    allowed: Sequence[str]
    provided: Callable[[str], bool]
    cache_namespace: str
    resolve: Callable[[str], str]
    stages: list[str] = dataclasses.field(default_factory=list)  # names (lower case) so far; "" for unnamed
    global_args: dict[str, str] = dataclasses.field(default_factory=dict)
    images: list[str] = dataclasses.field(default_factory=list)

    def instruction(self, one: Instruction) -> Instruction:
        if one.keyword == "ARG" and not self.stages:
            for item in one.args:
                key, sep, value = item.partition("=")
                self.global_args[key] = _unquote(value) if sep else self.global_args.get(key, "")
            return one
        if one.keyword == "FROM":
            return self._from(one)
        if one.keyword == "COPY" and one.flag("from"):
            source = self._expand(one.flag("from")[0], "COPY --from", one.line)
            ref = self._reference(source, "COPY --from", one.line, index_ok=True)
            return _with_flag(one, "from", ref)
        if one.keyword == "RUN" and one.flag("mount"):
            mounts = [self._mount(value, one.line) for value in one.flag("mount")]
            flags = tuple((name, value) for name, value in one.flags if name != "mount")
            return dataclasses.replace(one, flags=tuple(("mount", m) for m in mounts) + flags)
        return one

    def _from(self, one: Instruction) -> Instruction:
        if not one.args:
            raise Unrenderable(f"Dockerfile line {one.line}: FROM needs an image")
        name = ""
        if len(one.args) == 3 and one.args[1].lower() == "as":
            name = one.args[2].lower()
            if not _STAGE_NAME.fullmatch(name) or name.startswith("minipaas-") or name == "scratch":
                raise Unrenderable(f"Dockerfile line {one.line}: {one.args[2][:60]!r} is not a stage name "
                                   "(a letter, then letters, digits, `.`, `_` or `-`)")
            if name in self.stages:
                raise Unrenderable(f"Dockerfile line {one.line}: a stage named {name} exists already")
        elif len(one.args) != 1:
            raise Unrenderable(f"Dockerfile line {one.line}: FROM takes an image and `AS name`")
        image = self._expand(one.args[0], "FROM", one.line)
        ref = "scratch" if image.strip().lower() == "scratch" else self._reference(image, "FROM", one.line)
        self.stages.append(name)
        return dataclasses.replace(one, args=(ref, "AS", name) if name else (ref,))

    def _reference(self, reference: str, what: str, line: int, *, index_ok: bool = False) -> str:
        """An earlier stage (its name, or its index where the builder reads indexes), else an image this
        build may use, as `resolve` gives it."""
        ref = reference.strip()
        if ref.lower() in self.stages and ref.lower():
            return ref.lower()
        if re.fullmatch(r"[0-9]{1,6}", ref) and int(ref) < len(self.stages):  # not isdigit(): `²` is one
            if index_ok:
                return self.stages[int(ref)] or str(int(ref))
            raise Unrenderable(f"Dockerfile line {line}: {what} takes a stage by its name, not its index: name the "
                               "stage (FROM ... AS name)")
        try:
            name = normalize(ref)
        except Exception:  # docker-py's parser raises plain errors on nonsense
            name = ""
        if name and (self.provided(ref) or allowed_by(ref, self.allowed)):
            self.images.append(name)
            return self.resolve(name)
        hint = "minipaas' base images (minipaas/node:MAJOR), its own stages"
        raise ReferenceRefused(
            f"Dockerfile line {line}: {what} {ref[:100]} is not allowed: builds may use {hint}, and images "
            f"an admin allowed (`minipaas settings:set {self.app} build-images '{ref[:60]}'`)")

    def _mount(self, value: str, line: int) -> str:
        """A `--mount=` value in minipaas' one form: known options only, references rewritten, cache ids
        in the app's namespace."""
        options: dict[str, str] = {}
        for field in value.split(","):
            key, sep, val = field.partition("=")
            key = _MOUNT_ALIASES.get(key.strip().lower(), key.strip().lower())
            if key == "readwrite":  # rw: the opposite of readonly
                key, val, sep = "readonly", "false" if _boolean(val if sep else "true", line) else "true", "="
            elif key == "readonly":
                val, sep = "true" if _boolean(val if sep else "true", line) else "false", "="
            if not sep or key in options:
                raise Unrenderable(f"Dockerfile line {line}: RUN --mount option {key[:30]!r} is not of the form "
                                   "key=value, or is given twice")
            options[key] = val.lower() if key in ("type", "sharing", "required") else val
        kind = options.pop("type", "bind")
        if kind not in _MOUNT_OPTIONS:
            raise Unrenderable(f"Dockerfile line {line}: RUN --mount type={kind[:20]} is not allowed (allowed: "
                               f"{', '.join(_MOUNT_OPTIONS)})")
        for key, val in options.items():
            if key not in _MOUNT_OPTIONS[kind] or not _MOUNT_VALUES[key].fullmatch(val):
                raise Unrenderable(f"Dockerfile line {line}: RUN --mount type={kind} does not take "
                                   f"{key[:30]}={val[:60]} (allowed: {', '.join(_MOUNT_OPTIONS[kind])})")
        if "from" in options:
            source = self._expand(options["from"], "RUN --mount from=", line)
            options["from"] = self._reference(source, "RUN --mount from=", line)
        if kind == "cache":
            own = options.get("id") or options.get("target") or ""
            options["id"] = cache_id(self.cache_namespace, own)
        return ",".join([f"type={kind}", *(f"{key}={options[key]}" for key in _MOUNT_OPTIONS[kind] if key in options)])

    def _expand(self, value: str, what: str, line: int) -> str:
        """Substitute ARG defaults the way the Dockerfile frontend does ($X, ${X}, ${X:-w}, ${X:+w})."""
        args = self.global_args

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


def cache_id(namespace: str, own: str) -> str:
    """A cache mount's id in the app's namespace: the id (or target) the Dockerfile gave, under the namespace, hashed
    when it has characters beyond letters, digits and `._/-`."""
    own = own.strip("/")
    if not _CACHE_ID.fullmatch(own) or ".." in own.split("/"):
        own = "sha256-" + hashlib.sha256(own.encode()).hexdigest()[:32]
    return f"{namespace}/{own}"


def _boolean(value: str, line: int) -> bool:
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise Unrenderable(f"Dockerfile line {line}: RUN --mount takes true or false, not {value[:20]!r}")


def _with_flag(one: Instruction, name: str, value: str) -> Instruction:
    return dataclasses.replace(one, flags=tuple((key, value if key == name else old) for key, old in one.flags))


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value
