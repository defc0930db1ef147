"""What an app's own Dockerfile may reference (parsed with BuildKit's parser; no engine needed)."""

from __future__ import annotations

import pytest

from minipaas.build import dockerfile_policy as policy
from minipaas.errors import InvalidInput
from minipaas.state.names import image_patterns, valid_image_patterns


def provided(ref: str) -> bool:
    return policy.normalize(ref).startswith("minipaas/node:")


def check(text: str, allowed: tuple[str, ...] = ()) -> policy.Checked:
    return policy.check(text, app="shop", allowed=list(allowed), provided=provided, cache_namespace="mp-shop")


@pytest.mark.parametrize("text", [
    "FROM minipaas/node:26\nCMD node\n",
    "FROM minipaas/node:26 AS build\nRUN true\nFROM minipaas/node:26\nCOPY --from=build /app /app\n",
    "FROM minipaas/node:26 AS Build\nFROM scratch\nCOPY --from=build /a /a\nCOPY --from=0 /b /b\n",
    "ARG MAJOR=26\nFROM minipaas/node:${MAJOR}\n",
    "ARG BASE\nFROM ${BASE:-minipaas/node:26}\n",
    "FROM --platform=linux/amd64 minipaas/node:26 AS a\nRUN --mount=type=bind,from=a,target=/x true\n",
])
def test_own_stages_and_base_images_pass(text: str) -> None:
    assert check(text).text == text


@pytest.mark.parametrize(("text", "words"), [
    ("FROM minipaas/other:1\n", "line 1: FROM minipaas/other:1 is not allowed"),
    ("FROM minipaas/node:26\nCOPY --from=minipaas/other:1 /app /leak\n", "line 2: COPY --from minipaas/other:1"),
    ("FROM minipaas/node:26\nRUN --mount=type=bind,from=minipaas/other:2,target=/o cat /o/x\n",
     "RUN --mount from= minipaas/other:2"),
    ("ARG BASE=minipaas/other:1\nFROM $BASE\n", "FROM minipaas/other:1 is not allowed"),
    ("FROM ${NOPE}\n", "uses $NOPE, which has no value"),
    ("# syntax=minipaas/other:1\nFROM minipaas/node:26\n", "# syntax= minipaas/other:1"),
    ("FROM node:22-slim\n", "FROM node:22-slim is not allowed"),
    ("FROM 3f2a1b\n", "FROM 3f2a1b is not allowed"),  # an image id prefix is not a name
    ("FROM sha256:" + "a" * 64 + "\n", "is not allowed"),
    ("FROM minipaas/node:26 AS a\nFROM minipaas/node:26\nCOPY --from=later /x /x\nFROM scratch AS later\n",
     "COPY --from later is not allowed"),  # a stage must exist before it is read
    ("FROM minipaas/node:26\nCOPY --from=scratch /x /x\n", "COPY --from scratch"),
])
def test_other_images_are_refused_with_one_line(text: str, words: str) -> None:
    with pytest.raises(policy.ReferenceRefused) as caught:
        check(text)
    assert words in caught.value.message and "\n" not in caught.value.message


def test_images_an_admin_allowed_pass() -> None:
    text = "FROM node:22-slim AS build\nFROM docker.io/library/debian:bookworm\n"
    assert check(text, ("node:*-slim", "debian:bookworm")).images == ("node:22-slim", "debian:bookworm")
    with pytest.raises(policy.ReferenceRefused):
        check(text, ("node:*-alpine", "debian:bookworm"))
    with pytest.raises(policy.ReferenceRefused):
        check("FROM minipaas/other:1\n", ("node:*",))


def test_cache_mounts_get_the_apps_own_namespace() -> None:
    text = ("FROM minipaas/node:26\n"
            "RUN --mount=type=cache,target=/root/.npm \\\n    npm ci\n"
            "RUN --mount=type=cache,id=shared,target=/c,sharing=locked true\n"
            "CMD node\n")
    built = check(text).text.splitlines()
    assert built[1] == "RUN --mount=type=cache,target=/root/.npm,id=mp-shop/root/.npm     npm ci"
    assert built[2] == "RUN --mount=type=cache,id=mp-shop/shared,target=/c,sharing=locked true"
    assert built[0] == "FROM minipaas/node:26" and built[3] == "CMD node"


def test_unparsable_dockerfiles_are_one_line() -> None:
    with pytest.raises(InvalidInput) as caught:
        check("FROM minipaas/node:26\nRUN <<EOF\nnever ends\n")
    assert "cannot be parsed" in caught.value.message or "not allowed" in caught.value.message


def test_normalize_and_patterns() -> None:
    assert policy.normalize("node") == "node:latest"
    assert policy.normalize("docker.io/library/node:22") == "node:22"
    assert policy.normalize("ghcr.io/a/b@sha256:" + "0" * 64) == "ghcr.io/a/b@sha256:" + "0" * 64
    assert image_patterns("node:*, debian:bookworm  alpine") == ["node:*", "debian:bookworm", "alpine"]
    assert valid_image_patterns("node:* ghcr.io/acme/*") and not valid_image_patterns("a;b")
    assert policy.allowed_by("alpine", ["alpine"]) and not policy.allowed_by("alpine:3", ["alpine"])
