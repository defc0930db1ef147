"""Emptying an app's BuildKit cache mounts: when `apps:destroy` removes it, and by `gc` for an app already gone.

Cache mount ids are made per app life (builds.cache_namespace), so a new app never reads an old one's caches;
this frees the disk they hold. BuildKit removes a cache record only by a record id of its own, which it does not
relate to the mount's id, so minipaas runs a small build of its own, never from the layer cache, that mounts each
recorded id (state/cachemounts.py) and empties it. The emptied records stay; BuildKit's gc drops them in time.
"""

from __future__ import annotations

import io
import secrets
import tarfile
import time
from collections.abc import Callable

from minipaas.adapters import engine
from minipaas.adapters.buildcgroups import BuildLimits
from minipaas.build import builders, dockerfile_reading, dockerfiles, stacks
from minipaas.build.dockerfile_reading import Instruction
from minipaas.state import cachemounts
from minipaas.state.host import Host

LIMITS = BuildLimits(memory="256m", cpus=1.0, pids=256, timeout=300)
EMPTY = 'for d in /minipaas-caches/*; do find "$d" -mindepth 1 -delete; done'


def empty_life(host: Host, life: str, app: str, progress: Callable[[str], None]) -> bool:
    """Empty the cache mounts of an app's life, then forget them; False (said) when this host cannot now."""
    ids = cachemounts.of_life(host, life)
    if ids and not _empty(host, app, ids, progress):
        return False
    cachemounts.forget(host, life)
    return True


def _empty(host: Host, app: str, ids: list[str], progress: Callable[[str], None]) -> bool:
    settings = host.settings
    if builders.builder(settings).kind == "legacy":
        progress(f"       {app}'s build caches are BuildKit's, and this host builds with the legacy builder now: "
                 "kept (`docker builder prune` removes every cache)")
        return False
    base = next(reversed(stacks.local().values()), None)
    if base is None:
        progress(f"       {app}'s build caches are kept: no base image to empty them with (`minipaas stack:build`)")
        return False
    mounts = tuple(("mount", f"type=cache,id={one},target=/minipaas-caches/{number}") for number, one in enumerate(ids))
    token = f"{int(time.time())}-{secrets.token_hex(4)}"
    # A step of its own each time (the token): from the layer cache it would not run. Not `--no-cache`, which
    # gives BuildKit's steps fresh, empty cache mounts instead of the ones named.
    text = dockerfile_reading.render([Instruction("FROM", (base.tag,)),
                                      Instruction("RUN", ("/bin/sh", "-c", f"{EMPTY} # {token}"), mounts, json=True)])
    repository = f"{settings.instance}/{dockerfiles.PIN_PREFIX}{token}"
    outcome, _hit = builders.run_builder(settings, app, _tar(text), tag=f"{repository}:caches", limits=LIMITS,
                                         progress=lambda _line: None, say=progress)
    engine.remove_image(f"{repository}:caches")
    if outcome.error:
        progress(f"       {app}'s build caches could not be emptied ({outcome.error}); gc tries again")
        return False
    progress(f"       emptied {len(ids)} build cache{'s' if len(ids) != 1 else ''} of {app}")
    return True


def _tar(dockerfile: str) -> io.BytesIO:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:", format=tarfile.PAX_FORMAT) as tar:
        data = dockerfile.encode()
        info = tarfile.TarInfo("Dockerfile")
        info.size, info.mode = len(data), 0o644
        tar.addfile(info, io.BytesIO(data))
    out.seek(0)
    return out
