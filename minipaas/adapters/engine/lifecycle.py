"""Containers and networks on the engine: run, stop, remove, exec, one-off runs (what exists and its state:
inventory.py)."""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Any

import requests

from minipaas.adapters.engine.inventory import Container, inspect
from minipaas.adapters.engine.labels import LABEL
from minipaas.adapters.engine.sdk import _api, _reason, client, docker
from minipaas.errors import Conflict, EngineError, NotFound


@dataclass(frozen=True)
class Limits:
    """Resources and hardening of an app's containers (see `resource:limit`)."""

    memory: str = "512m"
    cpus: float | None = None
    pids: int | None = 512
    read_only: bool = False
    init: bool = True  # off for servers that are a good PID 1 themselves (Postgres, Redis)

    def host_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {
            "mem_limit": self.memory,
            "pids_limit": self.pids,
            "init": self.init,  # an init reaps zombies and forwards SIGTERM to npm/node
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



def ensure_network(name: str) -> None:
    try:
        client().networks.get(name)
    except docker.errors.NotFound:
        try:
            client().networks.create(name, driver="bridge", labels={LABEL: "network"})
        except docker.errors.APIError as exc:
            if exc.status_code != 409:  # created meanwhile by another process
                raise EngineError(f"cannot create docker network {name}: {_reason(exc)}") from None


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
    volumes: dict[str, str] | None = None,
    log_config: dict[str, Any] | None = None,
) -> Container:
    """Create and start a detached container; returns it with its address on `network`.

    A container already there under that name (left by a crashed deploy) is replaced, but only when
    its `minipaas` label says it has the same owner as the new one: never another instance's.
    `volumes`: named volumes (name -> the folder it is mounted on).
    `log_config`: the engine's log driver and its options (default: json-file, rotated; an app with log drains:
    access/drains.py `log_config`).
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
                log_config=log_config or {"Type": "json-file", "Config": {"max-size": "10m", "max-file": "3"}},
                binds={volume: {"bind": path, "mode": "rw"} for volume, path in (volumes or {}).items()} or None,
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


def last_exit_code(container: Container) -> int | None:
    """The code the container last exited with; None when nobody knows it any more. Once its restart policy has
    started it again, the engine's state says 0 (a running process has no exit code), but its `die` events, the
    engine's last 256 events of any kind, still hold the code."""
    if container.status in ("exited", "dead") or container.restarts == 0:
        return container.exit_code
    try:
        # `until` as a time already past makes the stream end instead of following new events.
        events = _api().events(since=int(time.time()) - 3600, until=round(time.time(), 3),
                               filters={"container": container.id, "event": "die"}, decode=True)
        codes = [str((event.get("Actor") or {}).get("Attributes", {}).get("exitCode", "")) for event in events]
    except docker.errors.APIError as exc:
        raise EngineError(f"the engine did not list {container.name}'s exits: {_reason(exc)}") from None
    return next((int(code) for code in reversed(codes) if code.isdigit()), None)


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
    except requests.exceptions.ConnectionError:
        raise EngineError(f"cannot remove container {ref[:12]}: the Docker engine does not answer") from None
    try:
        _api().remove_container(ref, force=True)
    except docker.errors.NotFound:
        pass
    except docker.errors.APIError as exc:
        # A deploy's repair and the background retirer may remove the same container at once.
        if exc.status_code != 409:
            raise EngineError(f"cannot remove container {ref[:12]}: {_reason(exc)}") from None


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


def wait(ref: str, *, timeout: float) -> int | None:
    """Wait for a container to end; its exit code, or None when it still runs after `timeout` s."""
    try:
        result = _api().wait(ref, timeout=max(1, timeout))
    except docker.errors.NotFound:
        raise NotFound(f"container {ref[:12]} does not exist") from None
    except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
        return None  # the engine answers the wait only when the container ends: no answer in time, still running
    except docker.errors.APIError as exc:
        raise EngineError(f"cannot wait for container {ref[:12]}: {_reason(exc)}") from None
    return int(result.get("StatusCode", -1))


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
