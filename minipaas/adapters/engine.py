"""The Docker adapter: every call minipaas makes to the Docker engine goes through this module.

It wraps the Docker SDK (docker-py) so that the rest of minipaas deals in plain values
(ids, tags, addresses) and in `minipaas.errors`, never in SDK objects or exceptions.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import io
import json
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any

from minipaas.errors import Conflict, EngineError, NotFound


def _import_docker_sdk() -> None:
    """Import docker-py without its ssh:// transport.

    docker-py imports paramiko whenever it is installed (it is: minipaas' laptop client uses it),
    about 75 ms spent on every command and every push for a transport minipaas never uses (it talks
    to the local socket). A None entry in sys.modules makes that import fail, which docker-py
    handles; the entry is removed at once, so `import paramiko` works normally afterwards.
    """
    hide = "paramiko" not in sys.modules
    if hide:
        sys.modules["paramiko"] = None  # type: ignore[assignment]
    try:
        import docker.errors  # noqa: F401
    finally:
        if hide:
            del sys.modules["paramiko"]


_import_docker_sdk()
import docker  # noqa: E402
import docker.errors  # noqa: E402
import requests  # noqa: E402
import urllib3  # noqa: E402

LABEL = "minipaas"  # every object minipaas creates carries this label (its value: the home it belongs to)


@dataclass(frozen=True)
class Limits:
    """Resources and hardening of an app's containers (see `resource:limit`)."""

    memory: str = "512m"
    cpus: float | None = None
    pids: int | None = 512
    read_only: bool = False

    def host_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {
            "mem_limit": self.memory,
            "pids_limit": self.pids,
            "init": True,  # an init reaps zombies and forwards SIGTERM to npm/node
            "security_opt": ["no-new-privileges"],
            # Nothing an app needs as a non-root user; binding a low port is the one thing root images need.
            "cap_drop": ["ALL"],
            "cap_add": ["NET_BIND_SERVICE"],
        }
        if self.cpus:
            config["nano_cpus"] = int(self.cpus * 1e9)
        if self.read_only:
            config["read_only"] = True
            config["tmpfs"] = {"/tmp": "rw,nosuid,nodev,size=256m"}
        return config


@dataclass(frozen=True)
class Container:
    id: str
    name: str
    status: str  # created, running, exited, ...
    labels: dict[str, str]
    ip: str  # address on the minipaas network, "" when not attached or not running
    health: str = ""  # Docker's own health status when the image defines one
    exit_code: int = 0
    restarts: int = 0
    started_ns: int = 0  # when it last started, in ns since the epoch (0: never)


@functools.cache
def client() -> docker.DockerClient:
    try:
        c = docker.from_env(timeout=120)
        c.ping()
    except docker.errors.DockerException as exc:
        raise EngineError(
            f"cannot reach the Docker engine ({_reason(exc)}); is dockerd running? (`docker info` tells)"
        ) from None
    return c


def reason(exc: BaseException) -> str:
    """The engine's own words for a failure, in one line."""
    return _reason(exc)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__


def _api() -> Any:
    return client().api


# -- networks ------------------------------------------------------------------------------

def ensure_network(name: str) -> None:
    try:
        client().networks.get(name)
    except docker.errors.NotFound:
        try:
            client().networks.create(name, driver="bridge", labels={LABEL: "network"})
        except docker.errors.APIError as exc:
            if exc.status_code != 409:  # created meanwhile by another process
                raise EngineError(f"cannot create docker network {name}: {_reason(exc)}") from None


# -- images --------------------------------------------------------------------------------

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
) -> BuildOutcome:
    """Build with the engine's legacy builder; stream its steps to `progress`.

    `cgroup_parent` puts every RUN step's container below that cgroup (which holds the build's
    limits); `step_memory` and `step_cpus` limit each step's container on its own instead, where
    minipaas cannot limit a parent. After `timeout` s the connection is closed: the engine then
    stops the running step (docker-py's build() exposes neither that nor `cgroupparent`).
    """
    api = _api()
    params: dict[str, Any] = {"t": tag, "rm": True, "forcerm": True}
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


def cgroups() -> tuple[str, int, bool]:
    """The engine's cgroup driver and version, and whether it runs on this machine (its cgroups are ours)."""
    info = _api().info()
    local = _api().base_url in ("http+docker://localhost", "http+docker://localunixsocket")
    return str(info.get("CgroupDriver") or ""), int(info.get("CgroupVersion") or 1), local


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


# -- containers ----------------------------------------------------------------------------

def run(
    *,
    name: str,
    image: str,
    network: str,
    env: dict[str, str],
    labels: dict[str, str],
    limits: Limits,
    command: list[str] | None = None,
    restart: str = "on-failure:10",
) -> Container:
    """Create and start a detached container; returns it with its address on `network`.

    A container already there under that name (left by a crashed deploy) is replaced, but only when
    its `minipaas` label says it has the same owner as the new one: never another instance's.
    """
    try:
        _remove_stale(name, owner=labels.get(LABEL, ""))
        created = _api().create_container(
            image,
            command=command,
            name=name,
            environment=env,
            labels=labels,
            detach=True,
            host_config=_api().create_host_config(
                network_mode=network,
                restart_policy=_restart_policy(restart),
                **limits.host_config(),
                log_config={"Type": "json-file", "Config": {"max-size": "10m", "max-file": "3"}},
            ),
        )
        _api().start(created["Id"])
    except docker.errors.ImageNotFound:
        raise NotFound(f"image {image} does not exist") from None
    except docker.errors.APIError as exc:
        raise EngineError(f"cannot start container {name}: {_reason(exc)}") from None
    return inspect(created["Id"], network=network)


def _restart_policy(restart: str) -> dict[str, Any] | None:
    """`on-failure:10` (a crashing app is restarted ten times, then left stopped, as dokku does),
    `unless-stopped`, or "" for none."""
    if not restart:
        return None
    name, _, count = restart.partition(":")
    return {"Name": name, "MaximumRetryCount": int(count)} if count else {"Name": name}


def _remove_stale(name: str, *, owner: str) -> None:
    try:
        existing = _api().inspect_container(name)
    except docker.errors.NotFound:
        return
    theirs = ((existing.get("Config") or {}).get("Labels") or {}).get(LABEL, "")
    if theirs != owner:
        raise Conflict(f"a container named {name} exists and belongs to {theirs or 'something else'}, "
                       "not to this minipaas instance; it was left alone")
    with contextlib.suppress(docker.errors.NotFound):
        _api().remove_container(name, force=True)


def inspect(ref: str, *, network: str = "") -> Container:
    try:
        attrs = _api().inspect_container(ref)
    except docker.errors.NotFound:
        raise NotFound(f"container {ref} does not exist") from None
    return _container(attrs, network)


def _container(attrs: dict[str, Any], network: str) -> Container:
    state = attrs.get("State") or {}
    nets = (attrs.get("NetworkSettings") or {}).get("Networks") or {}
    ip = ""
    if network and network in nets:
        ip = nets[network].get("IPAddress") or ""
    elif nets:
        ip = next(iter(nets.values())).get("IPAddress") or ""
    return Container(
        id=attrs["Id"],
        name=attrs.get("Name", "").lstrip("/"),
        status=state.get("Status", "unknown"),
        labels=dict((attrs.get("Config") or {}).get("Labels") or {}),
        ip=ip,
        health=((state.get("Health") or {}).get("Status") or ""),
        exit_code=int(state.get("ExitCode") or 0),
        restarts=int(attrs.get("RestartCount") or 0),
        started_ns=_epoch_ns(str(state.get("StartedAt") or "")),
    )


def _epoch_ns(stamp: str) -> int:
    """The engine's RFC 3339 times (nanoseconds, "Z") as ns since the epoch; 0 for its zero time."""
    if not stamp or stamp.startswith("0001-"):
        return 0
    whole, _, fraction = stamp.rstrip("Z").partition(".")
    try:
        seconds = datetime.datetime.fromisoformat(whole).replace(tzinfo=datetime.UTC).timestamp()
    except ValueError:
        return 0
    return int(seconds) * 1_000_000_000 + int((fraction + "000000000")[:9] or 0)


def events(filters: dict[str, str]) -> Iterator[dict[str, Any]]:
    """The engine's events as they happen (a stream that ends only when the engine goes away)."""
    try:
        yield from _api().events(decode=True, filters=filters)
    except docker.errors.APIError as exc:
        raise EngineError(f"cannot follow the engine's events: {_reason(exc)}") from None


def process_uid(ref: str) -> int | None:
    """The host uid the container's first process runs as (None when it is not running)."""
    try:
        pid = int(((_api().inspect_container(ref).get("State") or {}).get("Pid")) or 0)
    except docker.errors.NotFound:
        return None
    if pid <= 0:
        return None
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8") as status:
            for line in status:
                if line.startswith("Uid:"):
                    return int(line.split()[2])  # the effective uid
    except OSError:
        return None
    return None


def containers(labels: dict[str, str], *, network: str = "") -> list[Container]:
    """All containers (running or not) carrying every one of `labels`."""
    filters = {"label": [f"{k}={v}" for k, v in labels.items()]}
    found = _api().containers(all=True, filters=filters)
    result = []
    for summary in found:
        try:
            result.append(inspect(summary["Id"], network=network))
        except NotFound:
            continue  # removed between the listing and the inspection
    return result


def stop(ref: str, *, timeout: int = 10) -> None:
    with contextlib.suppress(docker.errors.NotFound):
        _api().stop(ref, timeout=timeout)


def start(ref: str) -> None:
    try:
        _api().start(ref)
    except docker.errors.APIError as exc:
        raise EngineError(f"cannot start container {ref}: {_reason(exc)}") from None


def remove(ref: str, *, timeout: int = 10) -> None:
    """Stop (SIGTERM, then SIGKILL after `timeout` s) and remove a container; absent is fine."""
    try:
        _api().stop(ref, timeout=timeout)
    except docker.errors.NotFound:
        return
    except docker.errors.APIError:
        pass  # already stopping or dead: removal below settles it
    try:
        _api().remove_container(ref, force=True)
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as exc:
        # A deploy's repair and the background retirer may remove the same container at once.
        if exc.status_code != 409:
            raise EngineError(f"cannot remove container {ref[:12]}: {_reason(exc)}") from None


def logs(ref: str, *, tail: int | str = "all", follow: bool = False) -> Iterator[bytes]:
    try:
        if follow:
            yield from _api().logs(ref, stream=True, follow=True, tail=tail)
        else:
            yield _api().logs(ref, tail=tail)
    except docker.errors.NotFound:
        raise NotFound(f"container {ref} does not exist") from None
    except docker.errors.APIError as exc:
        if exc.status_code == 409:  # being removed (a retirement racing the reader): as good as gone
            raise NotFound(f"container {ref} is being removed") from None
        raise EngineError(f"cannot read the logs of {ref[:12]}: {_reason(exc)}") from None


# -- interactive processes -----------------------------------------------------------------
# One-off and exec sessions need the terminal handling (raw tty, window size, stdin until EOF) that
# the docker CLI already does well, so the CLI attaches to them, with argument lists. Nothing of an
# app's config ever reaches that program: its environment would configure the host's `docker`
# itself (DOCKER_HOST, DOCKER_CONFIG, PATH...), so config travels in API requests only.

def run_oneoff(*, image: str, name: str, network: str, env: dict[str, str], labels: dict[str, str],
               limits: Limits, command: list[str], tty: bool) -> int:
    """Run a throwaway container attached to our stdio; returns its exit code.

    The container is created through the API (its environment in the request, removed by the engine
    once it ends), then `docker start --attach --interactive` connects our stdio to it.
    """
    try:
        created = _api().create_container(
            image, command=command, name=name, environment=env, labels=labels,
            # stdin_open without detach: attachable stdin, closed when the client's ends (StdinOnce)
            stdin_open=True, tty=tty, detach=False,
            host_config=_api().create_host_config(network_mode=network, auto_remove=True, **limits.host_config()),
        )
    except docker.errors.ImageNotFound:
        raise NotFound(f"image {image} does not exist") from None
    except docker.errors.APIError as exc:
        raise EngineError(f"cannot create container {name}: {_reason(exc)}") from None
    try:
        return subprocess.call(["docker", "start", "--attach", "--interactive", created["Id"]])
    except BaseException:
        # No docker CLI, or interrupted: the container goes too (auto-remove acts only on one that ran and ended).
        with contextlib.suppress(docker.errors.APIError):
            _api().remove_container(created["Id"], force=True)
        raise


def exec_in(container: str, command: list[str], *, tty: bool) -> int:
    args = ["docker", "exec", "-i", *(["-t"] if tty else []), container, *command]
    return subprocess.call(args)


def exec_capture(container: str, command: list[str], *, timeout: float) -> tuple[int, str]:
    """Run a command in a running container (no tty); returns (exit code, output). -1 when it did not
    finish within `timeout` s (it is left to finish on its own)."""
    try:
        created = _api().exec_create(container, command, stdout=True, stderr=True)
        stream = _api().exec_start(created["Id"], stream=True, demux=False)
    except docker.errors.APIError as exc:
        return 126, _reason(exc)
    output: list[bytes] = []
    done = threading.Event()

    def read() -> None:
        for chunk in stream:
            output.append(chunk)
        done.set()

    threading.Thread(target=read, daemon=True).start()
    if not done.wait(timeout):
        return -1, b"".join(output).decode("utf-8", errors="replace")
    code = _api().exec_inspect(created["Id"]).get("ExitCode")
    return int(code if code is not None else -1), b"".join(output).decode("utf-8", errors="replace")


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


def unique_image_sizes() -> dict[str, int]:
    """Per image tag: the bytes only that image holds (its size less the layers it shares)."""
    sizes: dict[str, int] = {}
    deadline = time.monotonic() + 60
    while True:
        try:
            usage = _api().df()
            break
        except docker.errors.APIError as exc:
            # The engine computes disk usage once at a time (a background gc may be doing it): wait.
            if "already running" not in str(exc) or time.monotonic() > deadline:
                raise EngineError(f"cannot read the engine's disk usage: {_reason(exc)}") from None
            time.sleep(0.2)
    for image in usage.get("Images") or []:
        shared = int(image.get("SharedSize") or 0)
        unique = int(image.get("Size") or 0) - max(shared, 0)
        for tag in image.get("RepoTags") or []:
            sizes[tag] = unique
    return sizes


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


def run_to_completion(*, image: str, network: str, command: list[str], env: dict[str, str],
                      labels: dict[str, str], limits: Limits, timeout: float = 3600) -> tuple[int, str]:
    """Run a container to its end (no tty); returns (exit code, its output). Always removed after."""
    created = _api().create_container(
        image, command=command, environment=env, labels=labels,
        host_config=_api().create_host_config(network_mode=network, **limits.host_config()))
    try:
        _api().start(created["Id"])
        result = _api().wait(created["Id"], timeout=timeout)
        output = _api().logs(created["Id"]).decode("utf-8", errors="replace")
        return int(result.get("StatusCode", 1)), output
    finally:
        _api().remove_container(created["Id"], force=True)
