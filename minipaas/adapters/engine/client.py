"""The engine's client: the Docker SDK (imported without its ssh transport), the label every object
minipaas makes carries, and the engine's words for a failure."""

from __future__ import annotations

import functools
import sys
from typing import Any

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
import docker.errors  # noqa: E402

LABEL = "minipaas"  # every object minipaas creates carries this label (its value: the home it belongs to)
# The labels of an app's containers and images (their values: the app, its process type, the release it
# runs, the index among that process type's containers, the port it listens on, the commit and buildpack
# an image was built from). Kept here, with the engine's vocabulary, so that each is spelled once.
APP_LABEL = "minipaas.app"
PROCESS_LABEL = "minipaas.process"
RELEASE_LABEL = "minipaas.release"
INDEX_LABEL = "minipaas.index"
PORT_LABEL = "minipaas.port"
SHA_LABEL = "minipaas.sha"
BUILDPACK_LABEL = "minipaas.buildpack"


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
    text = str(exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__


def _api() -> Any:
    return client().api
