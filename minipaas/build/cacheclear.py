"""Emptying what BuildKit keeps of an app's builds: its cache mounts (when `apps:destroy` removes it, and by `gc`
for an app already gone) and the last context it synced from the app's folders (at `apps:destroy`).

Cache mount ids are made per app life (builds.cache_namespace), so a new app never reads an old one's caches;
this frees the disk they hold. BuildKit removes a cache record only by a record id of its own, which it does not
relate to the mount's id, so minipaas runs a small build of its own, never from the layer cache, that mounts each
recorded id (state/cachemounts.py) and empties it. The emptied records stay; BuildKit's gc drops them in time.

BuildKit also keeps, for each folder it builds from, a copy of what it last synced (a `local source` record, keyed
by the docker CLI's hash of the folder's path: the next build sends only what changed): the app's files at its
last build, and its Dockerfile. The engine names no app in these records, but the key is the folder's path: a
build from the app's context folders, emptied, with a Dockerfile of two lines, leaves both records empty.

What else the engine keeps of a build, its layer cache, is keyed by content, not by app: two apps with the same
steps share the records, and removing them would cost the other app its cache, so they are left to BuildKit's gc
(or `docker builder prune`); the app's images, and the legacy builder's stage images, go with the app by label.
"""

from __future__ import annotations

import io
import secrets
import shutil
import tarfile
import time
from collections.abc import Callable

from minipaas.adapters import engine
from minipaas.adapters.buildcgroups import BuildLimits
from minipaas.build import buildcontext, builderchoice, builders, dockerfiles, stacks
from minipaas.source import dockerfile_reading
from minipaas.source.dockerfile_reading import Instruction
from minipaas.state import cachemounts, locks
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
    if builderchoice.builder(settings).kind == "legacy":
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


def empty_contexts(host: Host, app: str, progress: Callable[[str], None]) -> None:
    """Empty BuildKit's copies of the app's context folders (its files at its last build), before they go."""
    settings = host.settings
    folders = buildcontext.folders(settings, app)
    if not folders:
        return
    if builderchoice.builder(settings).kind == "legacy":
        progress(f"       BuildKit's copy of {app}'s last build context is kept: this host builds with the legacy "
                 "builder now (`docker builder prune` removes it)")
        return
    base = next(reversed(stacks.local().values()), None)
    if base is None:
        progress(f"       BuildKit's copy of {app}'s last build context is kept: no base image to build with "
                 "(`minipaas stack:build`)")
        return
    for folder in folders:
        with locks.held(locks.build_context_lock(settings, app, folder.name)):
            for child in folder.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
            # The COPY has BuildKit sync the (now empty) folder into its record of it; the token: a step of its own.
            token = f"{int(time.time())}-{secrets.token_hex(4)}"
            text = dockerfile_reading.render([Instruction("FROM", (base.tag,)),
                                              Instruction("COPY", (".", f"/minipaas-emptied-{token}"))])
            repository = f"{settings.instance}/{dockerfiles.PIN_PREFIX}{token}"
            outcome, _hit = builders.run_builder(settings, app, folder, dockerfile=text.encode(),
                                                 tag=f"{repository}:context", limits=LIMITS,
                                                 progress=lambda _line: None, say=progress)
            engine.remove_image(f"{repository}:context")
            if outcome.error:
                progress(f"       BuildKit's copy of {app}'s build context could not be emptied ({outcome.error}): "
                         "`docker builder prune` removes it")
                return
    progress(f"       emptied BuildKit's copy of {app}'s last build context")


def _tar(dockerfile: str) -> io.BytesIO:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:", format=tarfile.PAX_FORMAT) as tar:
        data = dockerfile.encode()
        info = tarfile.TarInfo("Dockerfile")
        info.size, info.mode = len(data), 0o644
        tar.addfile(info, io.BytesIO(data))
    out.seek(0)
    return out
