"""The Dockerfile a build gets: the app's own or a buildpack's, read once, checked, pinned and rendered.

The one path for both: `plan` reads the text (dockerfile_reading.py) and checks it (dockerfile_policy.py) before
anything is made; `pinned` then resolves every image it may use to the id minipaas checked (the legacy builder
takes ids; BuildKit 0.8 does not, so it gets a tag of that id made for this build alone and removed after it),
adds minipaas' labels as instructions, and renders the text the builder is given. Nothing the builder reads was
written by anyone but `render`.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from minipaas.adapters import engine
from minipaas.errors import InvalidInput
from minipaas.source import dockerfile_policy, dockerfile_reading
from minipaas.source.dockerfile_reading import Instruction
from minipaas.state.settings import Settings

# Pins are tags `<instance>/pin.<time>-<random>:<n>`: no app's repository (app names hold no dot), and gc knows a
# leftover one (a build killed before it untagged them) by its time.
PIN_PREFIX = "pin."


@dataclass(frozen=True)
class Plan:
    """A Dockerfile read and checked, not yet given to a builder."""

    instructions: tuple[Instruction, ...]  # as read
    images: tuple[str, ...]  # the outside images it uses, normalized (`minipaas/node:26`)
    cache_ids: tuple[str, ...]  # the cache mount ids it uses, in the app's namespace
    check: Callable[[Callable[[str], str] | None], dockerfile_policy.Checked]  # the same check, with a resolver


def decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput("the Dockerfile is not valid UTF-8") from None


def plan(text: str, *, app: str, allowed: Sequence[str], provided: Callable[[str], bool],
         cache_namespace: str) -> Plan:
    """Read and check a Dockerfile (one line and BuildFailed/InvalidInput when it may not be built)."""
    instructions = tuple(dockerfile_reading.read(text))

    def check(resolve: Callable[[str], str] | None) -> dockerfile_policy.Checked:
        return dockerfile_policy.check(instructions, app=app, allowed=allowed, provided=provided,
                                       cache_namespace=cache_namespace, resolve=resolve)

    checked = check(None)
    return Plan(instructions, checked.images, _cache_ids(checked.instructions), check)


@contextlib.contextmanager
def pinned(settings: Settings, planned: Plan, *, kind: str, stage_labels: dict[str, str],
           labels: dict[str, str]) -> Iterator[bytes]:
    """The text the builder gets, with every image it may use pinned to the id checked now (images an admin
    allowed that are not on the engine stay names: the builder pulls them). BuildKit's pins are removed when
    the block ends."""
    made: list[str] = []
    refs: dict[str, str] = {}
    token = f"{PIN_PREFIX}{int(time.time())}-{secrets.token_hex(4)}"
    try:
        for number, name in enumerate(planned.images):
            image_id = engine.image_id(name)
            if image_id is None:
                refs[name] = name
            elif kind == "legacy":
                refs[name] = image_id
            else:
                repository, tag = f"{settings.instance}/{token}", str(number)
                engine.tag_image(image_id, repository, tag)
                made.append(f"{repository}:{tag}")
                refs[name] = f"{repository}:{tag}"
        checked = planned.check(refs.__getitem__)
        yield render(checked.instructions, stage_labels=stage_labels, labels=labels).encode()
    finally:
        for tag in made:
            engine.remove_image(tag)


def render(instructions: Sequence[Instruction], *, stage_labels: dict[str, str], labels: dict[str, str]) -> str:
    """The builder's text: a LABEL after every FROM (whose stage an image of it is: gc and apps:destroy find the
    legacy builder's stage images by it) and the release's LABEL at the end."""
    out: list[Instruction] = []
    for one in instructions:
        out.append(one)
        if one.keyword == "FROM" and stage_labels:
            out.append(_label(stage_labels))
    if labels:
        out.append(_label(labels))
    return dockerfile_reading.render(out)


def _label(labels: dict[str, str]) -> Instruction:
    return Instruction("LABEL", tuple(part for key, value in labels.items() for part in (key, json.dumps(value))))


def _cache_ids(instructions: Sequence[Instruction]) -> tuple[str, ...]:
    found: dict[str, None] = {}
    for one in instructions:
        for mount in one.flag("mount"):
            options = dict(field.partition("=")[::2] for field in mount.split(","))
            if options.get("type") == "cache" and options.get("id"):
                found[options["id"]] = None
    return tuple(found)


def is_leftover_pin(repository: str, *, older_than: float) -> bool:
    """Whether a repository's last part is a build's pin made longer than `older_than` seconds ago."""
    last = repository.rpartition("/")[2]
    stamp = last.removeprefix(PIN_PREFIX).partition("-")[0]
    return last.startswith(PIN_PREFIX) and stamp.isdigit() and time.time() - int(stamp) > older_than
