"""The builders and the build limits: which builder the host uses (BuildKit or the legacy API), what it
can enforce (`enforcement`), a build's context in each builder's form, and `run_builder`, the one path
from an app's build limits to a fresh cgroup around either builder."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import re
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from minipaas.adapters import buildcgroups, engine, gitrepo
from minipaas.adapters.buildcgroups import BuildLimits
from minipaas.build import buildcontext, builderchoice, buildkit
from minipaas.errors import EngineError
from minipaas.state import locks
from minipaas.state.settings import Settings

CA_NAME = "minipaas-build-ca.pem"
# BuildKit: the build CA as a secret of this id (a public certificate, not a password), never in the context.
CA_SECRET_ID = "minipaas-build-ca"  # noqa: S105
# The app's config values a buildpack build sees (Heroku's: keep devDependencies); nothing else of the
# config reaches a build.
BUILD_CONFIG = ("NPM_CONFIG_PRODUCTION", "YARN_PRODUCTION")
# A committed node_modules never enters a buildpack's build: the buildpack installs dependencies itself.
VENDORED = "node_modules"
# A start script that only runs node on the app's files (`node server.js`, `node --enable-source-maps dist/main`):
# the container runs it itself rather than through `npm start`, which costs 0.3-0.4 s at every start here and
# would be a second process between the engine's init and node. Anything else still goes through npm.
PLAIN_NODE = re.compile(r"node(?: [\w./@=:,+-]+)+")


@dataclass(frozen=True)
class Context:
    """What a build gets: the commit (under `prefix`: "src" for a buildpack's build), its Dockerfile, and
    generated files beside them. A committed node_modules stays out: the buildpack installs its own."""

    repo: Path
    sha: str
    dockerfile: bytes
    prefix: str = ""
    extra: dict[str, bytes] = dataclasses.field(default_factory=dict)

    @property
    def ignored(self) -> list[str]:
        return [f"{self.prefix}/{VENDORED}"] if self.prefix else []

    def tar(self) -> IO[bytes]:
        """The whole context as one tar (the legacy builder's form)."""
        archive = gitrepo.archive(self.repo, self.sha, prefix=f"{self.prefix}/" if self.prefix else "")
        return _context_with(archive, {"Dockerfile": self.dockerfile, **self.extra},
                             leave_out="".join(f"{p}/" for p in self.ignored))


def run_builder(settings: Settings, app: str, context: Context | IO[bytes] | Path, *, tag: str, limits: BuildLimits,
                progress: Callable[[str], None], say: Callable[[str], None] | None = None,
                secrets: dict[str, Path] | None = None, no_cache: bool = False,
                dockerfile: bytes = b"") -> tuple[engine.BuildOutcome, str | None]:
    """Run the host's builder within `limits`; returns its outcome and the limit it ran into, if any.

    `context`: a commit's (`Context`), a tar, or (BuildKit only) a folder as it is, with `dockerfile` beside it.
    `progress` gets the builder's lines; `say` what minipaas itself has to tell (waiting for a turn).
    `secrets` (id -> file) reach BuildKit's `RUN --mount=type=secret` steps; the legacy builder has none.
    `no_cache`: no step reuses a cached layer (`git push -o no-cache`)."""
    found, layout = builderchoice.builder(settings), builderchoice.enforcement().layout
    if found.kind == "legacy":
        if isinstance(context, Path):
            raise ValueError("the legacy builder takes a tar, not a folder")
        name = buildcgroups.app_cgroup(settings.home, app)
        per_step = layout is None  # no parent to limit: each step's container gets the memory and CPUs
        tar = context.tar() if isinstance(context, Context) else context
        return _limited(layout, name, limits, shared=False, run=lambda: engine.build(
            tar, tag=tag, progress=progress, cgroup_parent=name if layout else "",
            step_memory=limits.memory_bytes if per_step else 0, step_cpus=limits.cpus if per_step else 0.0,
            timeout=limits.timeout, no_cache=no_cache))
    with contextlib.ExitStack() as held:
        if isinstance(context, Context):  # BuildKit syncs a folder faster than it unpacks a tar (buildcontext.py)
            ignore = "".join(f"{line}\n" for line in context.ignored).encode()
            folder = held.enter_context(buildcontext.checked_out(
                settings, app, context.sha, prefix=context.prefix, extra={".dockerignore": ignore} if ignore else {}))
            source: Path | IO[bytes] = folder
            text: bytes | None = context.dockerfile
        elif isinstance(context, Path):
            source, text = context, dockerfile
        else:
            source, text = context, None
        held.enter_context(locks.host_build_lock(say or progress))
        return _limited(layout, buildcgroups.BUILDKIT, limits, shared=True, run=lambda: buildkit.build(
            found, source, dockerfile=text, tag=tag, progress=progress, timeout=limits.timeout,
            secrets=secrets or {}, no_cache=no_cache))


def _limited(layout: buildcgroups.Layout | None, name: str, limits: BuildLimits, *, shared: bool,
             run: Callable[[], engine.BuildOutcome]) -> tuple[engine.BuildOutcome, str | None]:
    """The one path from limits to a cgroup, for both builders: a fresh cgroup with the limits written
    in, counters read around the build, nothing left running in it afterwards.

    `shared` (BuildKit's cgroup): left in place with its limits lifted, for whoever builds next.
    """
    if layout is None:
        outcome = run()
        return outcome, buildcgroups.limit_hit(None, None, pids_limit=limits.pids, timed_out=outcome.timed_out,
                                               exit_code=outcome.exit_code, memory_per_step=not shared)
    cgroup = buildcgroups.Cgroup(layout, name)
    try:
        cgroup.recreate()
        cgroup.limit(limits)
    except OSError as exc:
        raise EngineError(f"cannot set build limits in {cgroup.dir('memory')}: {exc.strerror}") from None
    with buildcgroups.watching(cgroup) as watch:
        before = cgroup.counters(watch)
        try:
            outcome = run()
            after = cgroup.counters(watch)
        finally:
            _settle(cgroup, shared=shared)
    if not outcome.error:
        return outcome, None
    return outcome, buildcgroups.limit_hit(before, after, pids_limit=limits.pids, timed_out=outcome.timed_out,
                                           exit_code=outcome.exit_code)


def _settle(cgroup: buildcgroups.Cgroup, *, shared: bool) -> None:
    """Leave nothing of the build running: a cancelled step's processes and, for the legacy builder,
    its container (its cgroup is named after it)."""
    cgroup.drain(wait=10)
    if shared:
        with contextlib.suppress(OSError):
            cgroup.limit(None)
        return
    for child in cgroup.children():
        if re.fullmatch(r"[0-9a-f]{64}", child):
            engine.remove(child, timeout=0)
    cgroup.remove()


def _context_with(source_tar: bytes, extra: dict[str, bytes], *, leave_out: str = "") -> io.BytesIO:
    """The git archive with generated files added at the context's root, without what is under `leave_out`."""
    out = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(source_tar), mode="r:") as src, \
            tarfile.open(fileobj=out, mode="w:", format=tarfile.PAX_FORMAT) as dst:
        for member in src:
            if member.name in extra or (leave_out and f"{member.name}/".startswith(leave_out)):
                continue  # replaced below, or left out
            dst.addfile(member, src.extractfile(member) if member.isfile() else None)
        for name, data in extra.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            # A constant mtime keeps the build cache stable across pushes.
            info.mtime = 0
            dst.addfile(info, io.BytesIO(data))
    out.seek(0)
    return out


# A committed node_modules never enters a buildpack's build: the buildpack installs dependencies itself.
VENDORED = "node_modules"
