"""Commands in the network namespace of the engine's own host, through the engine: a short-lived helper container
(host network, NET_ADMIN and NET_RAW, every other capability dropped, no new privileges) that minipaas runs
argument lists in, then removes whatever happens.

The cluster's firewall on the manager is set this way (cluster/firewall.py): the engine minipaas talks to is the
manager's, so its host's network namespace is the manager's, on a real host as in the tests (where the manager's
engine runs in a container of its own and this host's network must stay untouched).
"""

from __future__ import annotations

import contextlib
import io
import posixpath
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass

from minipaas.adapters.engine.lifecycle import exec_capture
from minipaas.adapters.engine.sdk import _api, _reason, docker
from minipaas.errors import EngineError

LIFETIME = "300"  # seconds the helper lives at most (then the engine removes it), should minipaas be killed
COMMAND_TIMEOUT = 60.0


@dataclass(frozen=True)
class HostShell:
    container: str

    def run(self, argv: list[str]) -> tuple[int, str]:
        """(exit status, output) of `argv` in the host's network namespace."""
        return exec_capture(self.container, argv, timeout=COMMAND_TIMEOUT)

    def write(self, path: str, data: bytes) -> None:
        """A file (0600) inside the helper, for a command that reads one."""
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            info = tarfile.TarInfo(posixpath.basename(path))
            info.size, info.mode = len(data), 0o600
            tar.addfile(info, io.BytesIO(data))
        try:
            _api().put_archive(self.container, posixpath.dirname(path), buffer.getvalue())
        except docker.errors.APIError as exc:
            raise EngineError(f"cannot write {path} in the helper container: {_reason(exc)}") from None


@contextlib.contextmanager
def host_network(image: str, *, labels: dict[str, str]) -> Iterator[HostShell]:
    """A helper container of `image` (it must have `sleep`) in the engine host's network namespace, as root."""
    api = _api()
    try:
        created = api.create_container(
            image, entrypoint=["sleep", LIFETIME], command=[], user="0", labels=labels,
            host_config=api.create_host_config(network_mode="host", cap_drop=["ALL"], cap_add=["NET_ADMIN", "NET_RAW"],
                                               security_opt=["no-new-privileges"], auto_remove=True))
    except docker.errors.APIError as exc:
        raise EngineError(f"cannot make a helper in the engine host's network: {_reason(exc)}") from None
    try:
        api.start(created["Id"])
        yield HostShell(str(created["Id"]))
    except docker.errors.APIError as exc:
        raise EngineError(f"the helper in the engine host's network does not start: {_reason(exc)}") from None
    finally:
        with contextlib.suppress(docker.errors.APIError):
            api.remove_container(created["Id"], force=True)
