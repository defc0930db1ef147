"""The Docker SDK (docker-py): imported once, here, without its ssh transport (every module of the adapter that
needs the SDK takes `docker` from this module, so whichever of them loads first loads it the same way), its
client, and the engine's words for a failure."""

from __future__ import annotations

import functools
import sys
import types
from collections.abc import Iterator
from typing import Any

import requests
import urllib3

from minipaas.adapters.engine.wire import not_answering
from minipaas.errors import EngineError


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
import docker.auth  # noqa: E402
import docker.errors  # noqa: E402
import docker.utils  # noqa: E402


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


def answers() -> bool:
    """Whether the engine answers now (a ping)."""
    try:
        return bool(_api().ping())
    except Exception:  # docker-py's, requests' or the socket's own errors while the engine comes and goes
        return False


def dropped(exc: BaseException) -> EngineError | None:
    """The one line for a call the engine did not answer (it stopped or restarted meanwhile: requests' connection
    error, which no adapter function expected); None for any other failure."""
    import requests

    if isinstance(exc, requests.exceptions.ConnectionError):
        return EngineError(f"the Docker engine stopped answering ({_reason(exc)}): it stops or restarts? "
                           "Try again once `docker info` answers")
    return None


def reason(exc: BaseException) -> str:
    """The engine's own words for a failure, in one line."""
    return _reason(exc)


def _reason(exc: BaseException) -> str:
    if _swarm_unavailable(exc):
        return "the engine's Swarm does not answer (the engine stops or restarts, or it left the Swarm)"
    text = str(exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__


class _Answering:
    """The SDK's low-level client, each call of which says in one line that the engine does not answer (it stops or
    restarts: a package upgrade, the manager of a cluster restarted) instead of letting the HTTP library's own
    exception (`requests.exceptions.ConnectionError`, pages long) reach the user as an internal error."""

    def __init__(self, api: Any) -> None:
        self._wrapped = api

    def __getattr__(self, name: str) -> Any:
        found = getattr(self._wrapped, name)
        if not callable(found):
            return found

        @functools.wraps(found)
        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                result = found(*args, **kwargs)
            except requests.exceptions.ConnectionError as exc:
                raise not_answering(exc) from None
            return _answering_stream(result) if isinstance(result, types.GeneratorType) else result

        return call


def _answering_stream(stream: Iterator[Any]) -> Iterator[Any]:
    """A streamed answer (a push's progress, a build's, logs) that the engine broke off by going away."""
    try:
        yield from stream
    except (requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError,
            urllib3.exceptions.ProtocolError) as exc:  # docker-py reads some streams from urllib3 itself
        raise not_answering(exc) from None


@functools.cache
def _answering() -> _Answering:
    return _Answering(client().api)


def _swarm_unavailable(exc: BaseException) -> bool:
    """What an engine says (503, in words that vary) while its Swarm stops or starts: the manager's engine restarting
    answers "This node is not a swarm manager", then "rpc error: code = Unavailable ... control.sock"."""
    said = str(getattr(exc, "explanation", "") or "")
    return (isinstance(exc, docker.errors.APIError) and exc.status_code == 503
            and ("swarm" in said.lower() or "code = Unavailable" in said))


def _api() -> Any:
    return _answering()
