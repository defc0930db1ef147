"""What the engine streams: its events, and containers' logs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from minipaas.adapters.engine.sdk import _api, _reason, docker
from minipaas.errors import EngineError, NotFound


def events(filters: dict[str, str], *, since: int | None = None) -> Iterator[dict[str, Any]]:
    """The engine's events as they happen (a stream that ends only when the engine goes away); with `since` (a Unix
    time), those since then first."""
    try:
        yield from _api().events(decode=True, filters=filters, since=since)
    except docker.errors.APIError as exc:
        raise EngineError(f"cannot follow the engine's events: {_reason(exc)}") from None


def logs(ref: str, *, tail: int | str = "all", follow: bool = False, timestamps: bool = False,
         since: int | None = None) -> Iterator[bytes]:
    """A container's output; `timestamps`: each line begins with the time the engine read it (RFC 3339, ns);
    `since`: only lines from that second (Unix time) on, that second included."""
    try:
        if follow:
            yield from _api().logs(ref, stream=True, follow=True, tail=tail, timestamps=timestamps, since=since)
        else:
            yield _api().logs(ref, tail=tail, timestamps=timestamps, since=since)
    except docker.errors.NotFound:
        raise NotFound(f"container {ref} does not exist") from None
    except docker.errors.APIError as exc:
        if exc.status_code == 409:  # being removed (a retirement racing the reader): as good as gone
            raise NotFound(f"container {ref} is being removed") from None
        raise EngineError(f"cannot read the logs of {ref[:12]}: {_reason(exc)}") from None
