"""Images on the engine: inspect, build (the legacy builder's API), tag, pull, import, copy out, remove."""

from __future__ import annotations

import contextlib
import io
import json
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

import requests
import urllib3

from minipaas.adapters.engine.labels import LABEL
from minipaas.adapters.engine.sdk import _api, _reason, docker
from minipaas.errors import EngineError


def _inspect_image(ref: str) -> dict[str, Any] | None:
    """The engine's description of a local image, or None when there is no such image."""
    try:
        return dict(_api().inspect_image(ref))
    except docker.errors.ImageNotFound:
        return None
    except docker.errors.APIError as exc:
        raise EngineError(f"cannot inspect image {ref}: {_reason(exc)}") from None


def _image_config(ref: str) -> dict[str, Any] | None:
    attrs = _inspect_image(ref)
    return None if attrs is None else dict(attrs.get("Config") or {})


def image_labels(ref: str) -> dict[str, str] | None:
    """The labels of a local image, or None when there is no such image."""
    config = _image_config(ref)
    return None if config is None else dict(config.get("Labels") or {})


def image_env(ref: str) -> dict[str, str] | None:
    """The environment (`ENV`) of a local image as a dict, or None when there is no such image."""
    config = _image_config(ref)
    if config is None:
        return None
    return dict(str(item).partition("=")[::2] for item in config.get("Env") or [])


def image_id(ref: str) -> str | None:
    """The id (`sha256:...`) of a local image, or None when there is no such image."""
    attrs = _inspect_image(ref)
    return None if attrs is None else str(attrs["Id"])


def image_size(ref: str) -> int | None:
    """The size in bytes of a local image, or None when there is no such image."""
    attrs = _inspect_image(ref)
    return None if attrs is None else int(attrs.get("Size") or 0)


def exposed_ports(ref: str) -> list[int]:
    """TCP ports an image EXPOSEs, lowest first."""
    ports = (_image_config(ref) or {}).get("ExposedPorts") or {}
    return sorted(int(p.split("/")[0]) for p in ports if p.endswith("/tcp") and p.split("/")[0].isdigit())


def list_images(repository: str) -> list[dict[str, Any]]:
    """Local images of a repository (`minipaas/node`), newest first, with tags and labels."""
    images = _api().images(name=repository)
    return sorted(images, key=lambda i: i.get("Created", 0), reverse=True)


def image_info(ref: str) -> dict[str, Any] | None:
    """A local image's id, tags, size and labels (`Id`, `RepoTags`, `Size`, `Labels`), or None."""
    attrs = _inspect_image(ref)
    if attrs is None:
        return None
    return {"Id": attrs["Id"], "RepoTags": attrs.get("RepoTags") or [], "Size": attrs.get("Size") or 0,
            "Labels": (attrs.get("Config") or {}).get("Labels") or {}}


def tags_matching(pattern: str) -> list[str]:
    """Local image tags matching a reference pattern (`minipaas/pin.*`, the engine's own wildcard match)."""
    found = _api().images(filters={"reference": pattern})
    return sorted({tag for image in found for tag in image.get("RepoTags") or [] if tag != "<none>:<none>"})


def labelled_images(label: str) -> list[dict[str, Any]]:
    """Local images carrying a label (whatever its value), with their tags and labels."""
    return list(_api().images(filters={"label": label}))


@dataclass(frozen=True)
class BuildOutcome:
    """What a builder run ended with: an image, or the builder's error (and a RUN step's exit code)."""

    image_id: str
    log: list[str]
    error: str = ""  # the builder's last error line; "" when the build succeeded
    exit_code: int | None = None  # the failed RUN step's exit code, when the error names one
    timed_out: bool = False

    def stage_images(self) -> list[str]:
        """The legacy builder's image of each stage but the last, from its log (`Step 9/17 : FROM ...`
        after ` ---> <id>`): untagged, they are what `image prune` takes, and with them the layer cache
        the next build would reuse. (BuildKit keeps its cache apart from images: an empty list.)"""
        found, last = [], ""
        for line in self.log:
            step = re.match(r"Step \d+/\d+ : FROM\b", line)
            if step and last:
                found.append(last)
                last = ""
            image = re.match(r"\s*---> ([0-9a-f]{12,64})\s*$", line)
            if image:
                last = image.group(1)
        return found


def step_exit_code(error: str) -> int | None:
    """The exit code in a builder's error line (`returned a non-zero code: 137`, `exit code: 137`)."""
    match = re.search(r"(?:non-zero code|exit code): (\d+)\s*$", error.strip())
    return int(match.group(1)) if match else None


def build(
    context: IO[bytes],
    *,
    tag: str,
    progress: Callable[[str], None],
    buildargs: dict[str, str] | None = None,
    cgroup_parent: str = "",
    step_memory: int = 0,
    step_cpus: float = 0.0,
    timeout: float | None = None,
    no_cache: bool = False,
) -> BuildOutcome:
    """Build with the engine's legacy builder; stream its steps to `progress`. `no_cache`: every step runs.

    `cgroup_parent` puts every RUN step's container below that cgroup (which holds the build's
    limits); `step_memory` and `step_cpus` limit each step's container on its own instead, where
    minipaas cannot limit a parent. After `timeout` s the connection is closed: the engine then
    stops the running step (docker-py's build() exposes neither that nor `cgroupparent`).
    """
    api = _api()
    params: dict[str, Any] = {"t": tag, "rm": True, "forcerm": True}
    if no_cache:
        params["nocache"] = True
    if buildargs:
        params["buildargs"] = json.dumps(buildargs)
    if cgroup_parent:
        params["cgroupparent"] = "/" + cgroup_parent.strip("/")
    if step_memory:
        params.update(memory=step_memory, memswap=step_memory)  # memswap = memory: no swap
    if step_cpus:
        params.update(cpuperiod=100_000, cpuquota=int(step_cpus * 100_000))
    headers = {"Content-Type": "application/x-tar"}
    api._set_auth_headers(headers)
    log: list[str] = []
    image_id, error = "", ""
    cancelled = threading.Event()
    timer: threading.Timer | None = None
    started = time.monotonic()
    response = None
    try:
        # No read timeout: a step may print nothing for minutes; `timeout` bounds the whole build.
        response = api._post(api._url("/build"), data=context, params=params, headers=headers,
                             stream=True, timeout=None)
        api._raise_for_status(response)
        if timeout is not None:
            sock = api._get_raw_response_socket(response)

            def cancel() -> None:
                cancelled.set()
                with contextlib.suppress(OSError):
                    getattr(sock, "_sock", sock).shutdown(socket.SHUT_RDWR)

            timer = threading.Timer(max(0.0, timeout - (time.monotonic() - started)), cancel)
            timer.daemon = True
            timer.start()
        for chunk in api._stream_helper(response, decode=True):
            if "stream" in chunk:
                for line in chunk["stream"].splitlines():
                    log.append(line)
                    if line.strip():
                        progress(line)
            if "aux" in chunk and "ID" in chunk["aux"]:
                image_id = chunk["aux"]["ID"]
            if "error" in chunk:
                message = chunk["error"].strip()
                log.append(message)
                error = message.splitlines()[-1] if message else "unknown error"
    except docker.errors.APIError as exc:
        error = _reason(exc)
    except EngineError:
        # The stream broken off: by the engine going away (the client says so in one line), or by the timeout's
        # shutdown of the socket, which the build's outcome says below.
        if not cancelled.is_set():
            raise
    except (OSError, ValueError, requests.exceptions.RequestException, urllib3.exceptions.HTTPError) as exc:
        if not cancelled.is_set():
            raise EngineError(f"the build's connection to the Docker engine broke: {_reason(exc)}") from None
    finally:
        if timer is not None:
            timer.cancel()
        if response is not None:
            response.close()
    if cancelled.is_set():
        return BuildOutcome("", log, error="cancelled", timed_out=True)
    if error:
        return BuildOutcome("", log, error=error, exit_code=step_exit_code(error))
    return BuildOutcome(image_id or str(api.inspect_image(tag)["Id"]), log)


def tag_image(image: str, repository: str, tag: str) -> None:
    _api().tag(image, repository, tag)


def remove_image(ref: str, *, owner: str | None = None) -> bool:
    """Remove an image tag; with `owner`, only when the image's `minipaas` label names that owner."""
    if owner is not None and (image_labels(ref) or {}).get(LABEL) != owner:
        return False
    try:
        _api().remove_image(ref, noprune=False)
        return True
    except docker.errors.ImageNotFound:
        return False
    except docker.errors.APIError:
        # Still used by a container (a draining one): removed by a later cleanup.
        return False


def login(registry: str, username: str, password: str) -> None:
    """`docker login` for this process only (nothing written to ~/.docker): the engine checks the password against
    the registry, then docker-py sends it (X-Registry-Auth) with every push to that registry and every service
    created for an image of it, as `docker service create --with-registry-auth` does."""
    try:
        _api().login(username=username, password=password, registry=registry, reauth=True)
    except docker.errors.APIError as exc:
        raise EngineError(f"cannot log in to the registry {registry}: {_reason(exc)}") from None


def push(repository: str, tag: str) -> str:
    """Push `repository:tag` to the registry its name starts with; returns the digest of the manifest the
    registry stored (`sha256:...`, what a pull by digest names). The registry's refusal as an EngineError."""
    digest = ""
    try:
        for line in _api().push(repository, tag=tag, stream=True, decode=True):
            if isinstance(line, dict) and line.get("error"):
                raise EngineError(f"cannot push {repository}:{tag}: {line['error']}")
            if isinstance(line, dict) and isinstance(line.get("aux"), dict):
                digest = str(line["aux"].get("Digest") or digest)
    except docker.errors.APIError as exc:
        raise EngineError(f"cannot push {repository}:{tag}: {_reason(exc)}") from None
    if not digest.startswith("sha256:"):
        raise EngineError(f"pushed {repository}:{tag}, but the engine did not say the manifest's digest")
    return digest


def pull(repository: str, tag: str) -> bool:
    """Pull an image; False when no registry answers (the usual case on an offline host)."""
    try:
        _api().pull(repository, tag=tag)
        return True
    except docker.errors.APIError:
        return False


def import_rootfs(tar_path: str, *, repository: str, tag: str, changes: list[str]) -> str:
    """`docker import` of a root filesystem tarball; returns the image id."""
    try:
        result = _api().import_image_from_file(tar_path, repository=repository, tag=tag, changes=changes)
    except docker.errors.APIError as exc:
        raise EngineError(f"docker import failed: {_reason(exc)}") from None
    last = result.strip().splitlines()[-1] if isinstance(result, str) else str(result)
    try:
        return str(json.loads(last).get("status", ""))
    except ValueError:
        return last


def copy_out(image: str, path: str) -> io.BytesIO | None:
    """A tar of `path` inside an image (without running it), or None when the path does not exist."""
    container = _api().create_container(image, command=["true"], labels={LABEL: "copy-out"})
    try:
        stream, _ = _api().get_archive(container["Id"], path)
        data = io.BytesIO()
        for chunk in stream:
            data.write(chunk)
        data.seek(0)
        return data
    except docker.errors.NotFound:
        return None
    finally:
        _api().remove_container(container["Id"], force=True)


def remove_images_labelled(labels: dict[str, str]) -> list[str]:
    """Remove every image (tagged or not, build stages included) carrying all these labels and used by no
    container; returns the ids removed. Children go before their parents."""
    filters = {"label": [f"{k}={v}" for k, v in labels.items()]}
    removed: list[str] = []
    pending = sorted(_api().images(all=True, filters=filters), key=lambda i: i.get("Created", 0), reverse=True)
    while pending:
        left = []
        for image in pending:
            try:
                _api().remove_image(image["Id"], force=bool(image.get("RepoTags")), noprune=False)
                removed.append(image["Id"])
            except docker.errors.ImageNotFound:
                continue  # went with a child that was removed
            except docker.errors.APIError:
                left.append(image)  # a parent of one still there, or in use by a container
        if len(left) == len(pending):
            break
        pending = left
    return removed


def prune_dangling(labels: dict[str, str]) -> int:
    """Remove untagged images carrying these labels; returns the bytes reclaimed."""
    filters = {"dangling": True, "label": [f"{k}={v}" for k, v in labels.items()]}
    try:
        result = _api().prune_images(filters=filters)
    except docker.errors.APIError:
        return 0  # another prune is running: the next one catches up
    return int(result.get("SpaceReclaimed") or 0)
