"""Named volumes (a service's data), attaching a running container to more networks, and commands run in
a container with their input and output streamed (a database dump through ssh)."""

from __future__ import annotations

import contextlib
import subprocess
from typing import IO, Any

from minipaas.adapters.engine.sdk import _api, _reason, docker
from minipaas.errors import EngineError


def create_volume(name: str, labels: dict[str, str]) -> None:
    """Create a named volume unless it exists (the engine keeps it across container recreations and restarts)."""
    try:
        _api().create_volume(name=name, driver="local", labels=labels)
    except docker.errors.APIError as exc:
        raise EngineError(f"cannot create volume {name}: {_reason(exc)}") from None


def volume_exists(name: str) -> bool:
    try:
        _api().inspect_volume(name)
        return True
    except docker.errors.NotFound:
        return False


def remove_volume(name: str) -> None:
    """Remove a volume and its data (absent is fine)."""
    try:
        _api().remove_volume(name, force=True)
    except docker.errors.NotFound:
        return
    except docker.errors.APIError as exc:
        raise EngineError(f"cannot remove volume {name}: {_reason(exc)}") from None


def networks_of(container: str) -> dict[str, list[str]]:
    """The networks a container is attached to, with its aliases on each ({} when it does not exist)."""
    try:
        attrs = _api().inspect_container(container)
    except docker.errors.NotFound:
        return {}
    nets: dict[str, Any] = (attrs.get("NetworkSettings") or {}).get("Networks") or {}
    return {name: list(value.get("Aliases") or []) for name, value in nets.items()}


def connect(network: str, container: str, *, aliases: list[str]) -> None:
    """Attach a container to one more network, reachable there by `aliases` (already attached: nothing)."""
    if network in networks_of(container):
        return
    try:
        _api().connect_container_to_network(container, network, aliases=aliases)
    except docker.errors.APIError as exc:
        if "already exists" in str(exc):
            return  # attached meanwhile by another process
        raise EngineError(f"cannot attach {container} to the network {network}: {_reason(exc)}") from None


def disconnect(network: str, container: str) -> None:
    """Detach a container from a network (not attached, or either gone: nothing)."""
    if network not in networks_of(container):
        return  # some engines answer 500, not 404, for a container that is not on the network
    with contextlib.suppress(docker.errors.NotFound):
        try:
            _api().disconnect_container_from_network(container, network, force=True)
        except docker.errors.APIError as exc:
            if exc.status_code not in (403, 404):  # not attached
                raise EngineError(f"cannot detach {container} from {network}: {_reason(exc)}") from None


def exec_io(container: str, command: list[str], *, user: str = "", stdin: IO[bytes] | int | None = None,
            stdout: IO[bytes] | int | None = None, tty: bool = False, interactive: bool = False) -> tuple[int, str]:
    """Run a command in a running container with its input from `stdin` and its output to `stdout`
    (None: this process's own; subprocess.DEVNULL); returns (exit code, its stderr). `interactive`: all
    three are this process's own (a tty too, with `tty`), and "" is returned for stderr."""
    args = ["docker", "exec", "-i", *(["-t"] if tty else []), *(["-u", user] if user else []), container, *command]
    if interactive:
        return subprocess.call(args), ""
    result = subprocess.run(args, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE, check=False)
    return result.returncode, result.stderr.decode("utf-8", "replace").strip()[-4000:]


def exec_script(container: str, command: list[str], *, user: str, script: bytes,
                timeout: float = 300) -> tuple[int, str, str]:
    """Run a command in a running container with `script` on its stdin (never on a command line, where
    `ps` would show it); returns (exit code, its stdout, its stderr). 124 when it ran past `timeout` s."""
    args = ["docker", "exec", "-i", "-u", user, container, *command]
    try:
        result = subprocess.run(args, input=script, capture_output=True, check=False, timeout=timeout)
    except subprocess.TimeoutExpired:
        return 124, "", f"no answer within {timeout:.0f}s"
    return (result.returncode, result.stdout.decode("utf-8", "replace"),
            result.stderr.decode("utf-8", "replace").strip()[-4000:])
