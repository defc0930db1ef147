"""What a build's Dockerfile may reference, decided on the instructions the builder gets (one reading: no engine
needed). Each attack of issue 19 that went through a second reading of the text has its case here; the same
attacks through real pushes are in tests/engine/test_build_isolation.py."""

from __future__ import annotations

import pytest

from minipaas.build import dockerfiles
from minipaas.errors import BuildFailed, InvalidInput
from minipaas.source import dockerfile_policy as policy
from minipaas.source import dockerfile_reading as reading
from minipaas.state.names import image_patterns, valid_image_patterns

NAMESPACE = "mp/shop/0123abcd"


def provided(ref: str) -> bool:
    return policy.normalize(ref).startswith("minipaas/node:")


def built(text: str, allowed: tuple[str, ...] = (), resolve: dict[str, str] | None = None) -> str:
    """The text the builder gets (no labels), with images pinned through `resolve` when given."""
    planned = dockerfiles.plan(text, app="shop", allowed=list(allowed), provided=provided, cache_namespace=NAMESPACE)
    checked = planned.check(resolve.__getitem__ if resolve is not None else None)
    return dockerfiles.render(checked.instructions, stage_labels={}, labels={})


def refusal(text: str, allowed: tuple[str, ...] = ()) -> str:
    with pytest.raises(BuildFailed) as caught:
        built(text, allowed)
    assert "\n" not in caught.value.message
    return caught.value.message


@pytest.mark.parametrize(("text", "expected"), [
    ("FROM minipaas/node:26\nCMD node\n", None),
    ("FROM minipaas/node:26 AS build\nRUN true\nFROM minipaas/node:26\nCOPY --from=build /app /app\n", None),
    ("FROM minipaas/node:26 AS Build\nFROM scratch\nCOPY --from=build /a /a\nCOPY --from=0 /b /b\n",
     "FROM minipaas/node:26 AS build\nFROM scratch\nCOPY --from=build /a /a\nCOPY --from=build /b /b\n"),
    ("ARG MAJOR=26\nFROM minipaas/node:${MAJOR}\n", "ARG MAJOR=26\nFROM minipaas/node:26\n"),
    ("ARG BASE\nFROM ${BASE:-minipaas/node:26}\n", "ARG BASE\nFROM minipaas/node:26\n"),
    ("FROM --platform=linux/amd64 minipaas/node:26 AS a\nRUN --mount=type=bind,from=a,target=/x true\n",
     "FROM --platform=linux/amd64 minipaas/node:26 AS a\nRUN --mount=type=bind,target=/x,from=a true\n"),
    # Comments, continuations, CRLF and a BOM are gone; each instruction is one line.
    ("\ufeff# a comment\r\nFROM minipaas/node:26\r\nRUN echo a \\\r\n  # inside\r\n  && echo b\r\n",
     "FROM minipaas/node:26\nRUN echo a   && echo b\n"),
    ('FROM minipaas/node:26\nCMD ["node", "caf\\u00e9.js"]\nENV A "x y"\n',
     'FROM minipaas/node:26\nCMD ["node", "caf\\u00e9.js"]\nENV A="x y"\n'),
])
def test_own_stages_and_base_images_pass(text: str, expected: str | None) -> None:
    assert built(text) == (expected or text)


@pytest.mark.parametrize(("text", "words"), [
    ("FROM minipaas/other:1\n", "line 1: FROM minipaas/other:1 is not allowed"),
    ("FROM minipaas/node:26\nCOPY --from=minipaas/other:1 /app /leak\n", "line 2: COPY --from minipaas/other:1"),
    ("FROM minipaas/node:26\nRUN --mount=type=bind,from=minipaas/other:2,target=/o cat /o/x\n",
     "RUN --mount from= minipaas/other:2"),
    ("FROM minipaas/node:26\nRUN --mount=type=cache,from=minipaas/other:2,target=/o cat /o/x\n",
     "RUN --mount from= minipaas/other:2"),
    ("ARG BASE=minipaas/other:1\nFROM $BASE\n", "FROM minipaas/other:1 is not allowed"),
    ("FROM ${NOPE}\n", "uses $NOPE, which has no value"),
    ("# syntax=minipaas/node:26\nFROM minipaas/node:26\n", "line 1: `# syntax=` is not allowed"),
    ("FROM node:22-slim\n", "FROM node:22-slim is not allowed"),
    ("FROM 3f2a1b\n", "FROM 3f2a1b is not allowed"),  # an image id prefix is not a name
    ("FROM sha256:" + "a" * 64 + "\n", "is not allowed"),
    ("FROM minipaas/node:26 AS a\nFROM minipaas/node:26\nCOPY --from=later /x /x\nFROM scratch AS later\n",
     "COPY --from later is not allowed"),  # a stage must exist before it is read
    ("FROM minipaas/node:26\nCOPY --from=scratch /x /x\n", "COPY --from scratch"),
    ("FROM minipaas/node:26\nRUN --mount=type=bind,from=0,target=/x true\n", "takes a stage by its name"),
    ("FROM minipaas/node:26 AS a\nFROM minipaas/node:26 AS A\n", "a stage named a exists already"),
    ("FROM minipaas/node:26 AS minipaas-x\n", "is not a stage name"),
    ("FROM minipaas/node:26\nRUN --mount=type=ssh true\n", "type=ssh is not allowed"),
    ("FROM minipaas/node:26\nRUN --mount=type=cache,target=/x,size=1 true\n", "does not take size=1"),
    ("FROM minipaas/node:26\nRUN --mount=type=cache,target=$HOME true\n", "cannot pass on exactly"),
])
def test_other_images_and_odd_mounts_are_refused_with_one_line(text: str, words: str) -> None:
    assert words in refusal(text)


def test_images_an_admin_allowed_pass_and_every_image_is_pinned() -> None:
    text = "FROM node:22-slim AS build\nFROM docker.io/library/debian:bookworm\nCOPY --from=build /a /a\n"
    planned = dockerfiles.plan(text, app="shop", allowed=["node:*-slim", "debian:bookworm"], provided=provided,
                               cache_namespace=NAMESPACE)
    assert planned.images == ("node:22-slim", "debian:bookworm")
    pins = {"node:22-slim": "sha256:" + "1" * 64, "debian:bookworm": "minipaas/pin.1-ab:1"}
    assert built(text, ("node:*-slim", "debian:bookworm"), pins) == (
        f"FROM sha256:{'1' * 64} AS build\nFROM minipaas/pin.1-ab:1\nCOPY --from=build /a /a\n")
    assert "is not allowed" in refusal(text, ("node:*-alpine", "debian:bookworm"))
    assert "is not allowed" in refusal("FROM minipaas/other:1\n", ("node:*",))


def test_cache_mounts_get_ids_in_the_apps_own_namespace_whatever_their_spelling() -> None:
    """Attack 3: a quoted id, or `type=CACHE`, was missed by a rewrite of the text and read another app's cache."""
    text = ("FROM minipaas/node:26\n"
            "RUN --mount=type=cache,target=/root/.npm \\\n    npm ci\n"
            "RUN --mount=type=cache,id=shared,target=/c,sharing=locked true\n"
            'RUN --mount=type=cache,id="minipaas/victim/0000/npm",target=/v ls /v\n'
            "RUN --mount=type=CACHE,ID=minipaas/victim/0000/npm,dst=/v ls /v\n"
            "RUN --mount=TYPE=cache,id=../../x,target=/w,ro true\n"
            "CMD node\n")
    assert built(text).splitlines() == [
        "FROM minipaas/node:26",
        f"RUN --mount=type=cache,target=/root/.npm,id={NAMESPACE}/root/.npm npm ci",
        f"RUN --mount=type=cache,target=/c,id={NAMESPACE}/shared,sharing=locked true",
        f"RUN --mount=type=cache,target=/v,id={NAMESPACE}/minipaas/victim/0000/npm ls /v",
        f"RUN --mount=type=cache,target=/v,id={NAMESPACE}/minipaas/victim/0000/npm ls /v",
        f"RUN --mount=type=cache,target=/w,id={NAMESPACE}/sha256-{policy.cache_id('', '../../x').split('-', 1)[1]},"
        "readonly=true true",
        "CMD node",
    ]
    assert dockerfiles.plan(text, app="shop", allowed=(), provided=provided, cache_namespace=NAMESPACE).cache_ids == (
        f"{NAMESPACE}/root/.npm", f"{NAMESPACE}/shared", f"{NAMESPACE}/minipaas/victim/0000/npm",
        policy.cache_id(NAMESPACE, "../../x"))


@pytest.mark.parametrize("separator", ["\f", "\v", "\r", "\x85", "\u2028", "\u2029", "\x1c", "\x1d", "\x1e", "\0"])
def test_attack_1_a_line_separator_in_a_comment_is_refused(separator: str) -> None:
    text = (f"FROM minipaas/node:26\n# a comment{separator}COPY --from=minipaas/victim:1 /app /stolen\n"
            "CMD node\n")
    assert f"line 2: the character U+{ord(separator):04X} is not allowed" in refusal(text)


def test_attack_4_a_syntax_directive_after_an_odd_one_is_refused() -> None:
    assert "line 2: `# syntax=` is not allowed" in refusal(
        "# a=\u00a0\n# syntax=minipaas/shop:1\nFROM minipaas/node:26\n")
    assert "`# escape=`` is not allowed" in refusal("# escape=`\nFROM minipaas/node:26\n")
    # A directive further down is a comment to every builder, and dropped.
    assert built("FROM minipaas/node:26\n# syntax=minipaas/shop:1\nCMD node\n") == "FROM minipaas/node:26\nCMD node\n"


def test_attack_5_onbuild_is_refused() -> None:
    assert "line 2: ONBUILD is not allowed" in refusal(
        "FROM minipaas/node:26\nONBUILD COPY --from=minipaas/victim:1 /app /stolen\n")


@pytest.mark.parametrize("text", [
    'FROM minipaas/node:26\nRUN <<"#x"\necho hi\nCOPY --from=minipaas/victim:1 /app /s\n#x\n',
    "FROM minipaas/node:26\nRUN cat <<EOF\nhi\nEOF\n",
    "FROM minipaas/node:26\nCOPY <<EOF /a\nhi\nEOF\n",
    "FROM minipaas/node:26\nRUN echo $((1<<2))\n",
])
def test_attack_6_heredocs_are_refused(text: str) -> None:
    assert "line 2: heredocs (`<<`) are not allowed" in refusal(text)


@pytest.mark.parametrize(("text", "words"), [
    ("FROM minipaas/node:26\nCOPY --link a b\n", "COPY --link is not allowed"),
    ("FROM minipaas/node:26\nRUN --network=host true\n", "RUN --network is not allowed"),
    ("FROM minipaas/node:26\nRUN --security=insecure true\n", "RUN --security is not allowed"),
    ("FROM minipaas/node:26\nCOPY --chown=a\u00e0b x y\n", "cannot pass on exactly"),
    ("FROM minipaas/node:26\nCOPY --chown=$USER x y\n", "cannot pass on exactly"),
    ("FROM minipaas/node:26\nFOO bar\n", "unknown instruction FOO"),
    ("FROM minipaas/node:26\nRUN -- --weird\n", "cannot be passed on to the builder exactly"),
    ("FROM minipaas/node:26\nRUN echo\x1bhi\n", "U+001B is not allowed"),
])
def test_what_cannot_be_passed_on_exactly_is_refused(text: str, words: str) -> None:
    assert words in refusal(text)


def test_a_non_utf8_dockerfile_is_one_line() -> None:
    with pytest.raises(InvalidInput, match="not valid UTF-8"):
        dockerfiles.decode(b"FROM minipaas/node:26\nRUN echo \xff\n")


def test_render_refuses_what_does_not_parse_back() -> None:
    with pytest.raises(reading.Unrenderable):
        reading.render([reading.Instruction("RUN", ("echo a \\",), line=3)])
    with pytest.raises(reading.Unrenderable):
        reading.render([reading.Instruction("RUN", ("a\nCOPY x y",), line=3)])


def test_normalize_and_patterns() -> None:
    assert policy.normalize("node") == "node:latest"
    assert policy.normalize("docker.io/library/node:22") == "node:22"
    assert policy.normalize("ghcr.io/a/b@sha256:" + "0" * 64) == "ghcr.io/a/b@sha256:" + "0" * 64
    assert image_patterns("node:*, debian:bookworm  alpine") == ["node:*", "debian:bookworm", "alpine"]
    assert valid_image_patterns("node:* ghcr.io/acme/*") and not valid_image_patterns("a;b")
    assert policy.allowed_by("alpine", ["alpine"]) and not policy.allowed_by("alpine:3", ["alpine"])
