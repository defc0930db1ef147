"""What each image holds on the engine's disk beyond what it shares, kept until the images change, read over the
standard library's HTTP (wire.py): `report` and `gc --dry-run` need no SDK for it."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from pathlib import Path

from minipaas.adapters.engine import wire
from minipaas.errors import EngineError

BUSY_WAIT = 60  # seconds to wait for the engine's disk usage while another caller has it computed


def unique_image_sizes(cache: Path | None = None) -> dict[str, int]:
    """Per image tag: the bytes only that image holds (its size less the layers it shares).

    They come from the engine's disk usage (`docker system df`), which costs it about a second on a busy host:
    it also sizes every container's writable layer and every volume. An image's size never changes and what it
    shares depends only on which images exist, so with `cache` the answer is kept there with a hash of the
    images' ids and tags, and asked again only when those changed (listing the images costs milliseconds)."""
    key = ""
    if cache is not None:
        images = sorted(f"{i['Id']} {' '.join(sorted(i.get('RepoTags') or []))}"
                        for i in wire.get("/images/json", all="1"))
        key = hashlib.sha256("\n".join(images).encode()).hexdigest()
        with contextlib.suppress(OSError, ValueError, KeyError, AttributeError):
            kept = json.loads(cache.read_text())
            if kept["images"] == key:
                return {str(tag): int(size) for tag, size in kept["sizes"].items()}
    sizes: dict[str, int] = {}
    for image in _usage().get("Images") or []:
        shared = int(image.get("SharedSize") or 0)
        unique = int(image.get("Size") or 0) - max(shared, 0)
        for tag in image.get("RepoTags") or []:
            sizes[tag] = unique
    if cache is not None:
        with contextlib.suppress(OSError):  # a cache that cannot be written is asked again next time
            cache.parent.mkdir(parents=True, exist_ok=True)
            partial = cache.with_name(f".{cache.name}.{os.getpid()}")
            partial.write_text(json.dumps({"images": key, "sizes": sizes}))
            os.replace(partial, cache)
    return sizes


def _usage() -> dict[str, object]:
    deadline = time.monotonic() + BUSY_WAIT
    while True:
        try:
            return wire.get("/system/df")  # type: ignore[no-any-return]
        except EngineError as exc:
            # The engine computes disk usage once at a time (a background gc may be doing it): wait.
            if "already running" not in str(exc) or time.monotonic() > deadline:
                raise EngineError(f"cannot read the engine's disk usage: {exc}") from None
            time.sleep(0.2)
