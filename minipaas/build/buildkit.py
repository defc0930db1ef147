"""The BuildKit adapter: which builder this host's Docker offers, and builds run through BuildKit.

The engine API's `/build` endpoint drives the legacy builder only; BuildKit is driven over a
session the docker CLI sets up (gRPC), so minipaas runs the CLI with argument lists, as it does for
`run` and `enter`, rather than re-implement that protocol. A CLI offers BuildKit either through the
buildx plugin or, up to 22.x, built into `docker build` (DOCKER_BUILDKIT=1); a 23+ CLI without the
plugin falls back to the legacy builder, so it does not count.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from minipaas.adapters import engine, proc
from minipaas.errors import BuildFailed, InvalidInput

KINDS = ("legacy", "buildkit", "buildx")
_SECRET_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")

# The folder of a build's image-id file, in the system's temp folder; one a killed build left is swept by `gc`.
TMP_PREFIX = "minipaas-build-"


@dataclass(frozen=True)
class Builder:
    kind: str  # legacy: the engine API; buildkit: `docker build` with BuildKit built in; buildx: the plugin
    cli: str = ""  # the docker CLI that drives BuildKit

    @property
    def spec(self) -> str:
        """As written in settings.toml: `legacy`, `buildkit:/usr/bin/docker`, `buildx:/usr/bin/docker`."""
        return self.kind if self.kind == "legacy" else f"{self.kind}:{self.cli}"

    def cli_exists(self) -> bool:
        return os.access(self.cli, os.X_OK)

    def describe(self) -> str:
        if self.kind == "legacy":
            return "the engine's legacy builder (Docker API)"
        how = "its buildx plugin" if self.kind == "buildx" else "`docker build` with BuildKit built in"
        return f"BuildKit, through {self.cli} ({how})"

    def argv(self, tag: str, iidfile: Path, secrets: dict[str, Path] | None = None,
             folder: Path | None = None, *, no_cache: bool = False) -> list[str]:
        prefix = [self.cli, "buildx", "build", "--builder", "default", "--load"] if self.kind == "buildx" \
            else [self.cli, "build"]
        # A secret reaches the steps that mount it (RUN --mount=type=secret,id=...), never a layer or the cache key.
        for name, source in sorted((secrets or {}).items()):
            if not _SECRET_ID.fullmatch(name) or any(c in str(source) for c in ',"\n'):
                # The CLI reads the option as CSV: the file's path is the admin's (MINIPAAS_BUILD_CA), not an app's.
                raise InvalidInput(f"the build secret file {str(source)!r} has a comma or a quote in its path, which "
                                   "docker's --secret cannot take; move it")
            prefix += ["--secret", f"id={name},src={source}"]
        # `default` is the engine's own BuildKit (docker driver). The context: a folder, with the Dockerfile on
        # stdin (`-f -`), or a tar on stdin (`-`).
        where = ["--file", "-", str(folder)] if folder is not None else ["-"]
        if no_cache:  # every step runs again, and BuildKit 0.8 starts the cache mounts (downloads) afresh too
            prefix.append("--no-cache")
        return [*prefix, "--progress=plain", "--tag", tag, "--iidfile", str(iidfile), *where]


def parse(spec: str) -> Builder:
    """A concrete builder from its settings form (see `Builder.spec`)."""
    kind, _, cli = spec.partition(":")
    if kind == "legacy" and not cli:
        return Builder("legacy")
    if kind in ("buildkit", "buildx") and cli.startswith("/"):
        return Builder(kind, cli)
    raise InvalidInput(f"not a builder: {spec!r}")


def find(wanted: str, *, prefer_legacy: bool = False, path: str | None = None) -> Builder:
    """The builder `wanted` (a host setting) names: auto, legacy, buildkit or a concrete spec.

    `auto` takes the first docker CLI on PATH that offers BuildKit, else the legacy builder; also the
    legacy builder when `prefer_legacy` (limits that only the legacy builder can apply, see builders.py).
    """
    if wanted not in ("auto", "buildkit"):
        return parse(wanted)
    if wanted == "auto" and prefer_legacy:
        return Builder("legacy")
    for cli in candidates(path):
        if _has_buildx(cli):
            return Builder("buildx", cli)
        if _builtin_buildkit(cli):
            return Builder("buildkit", cli)
    if wanted == "buildkit":
        raise InvalidInput("MINIPAAS_BUILDER=buildkit, but no docker CLI on PATH offers BuildKit "
                           "(a buildx plugin, or a 20.10-22.x CLI); use auto or legacy")
    return Builder("legacy")


def candidates(path: str | None = None) -> list[str]:
    """Every `docker` on PATH, first first, each real file once."""
    found: dict[str, str] = {}
    for folder in (os.environ.get("PATH", "") if path is None else path).split(os.pathsep):
        cli = shutil.which("docker", path=folder) if folder else None
        if cli:
            found.setdefault(os.path.realpath(cli), os.path.abspath(cli))
    return list(found.values())


def client_major(version: str) -> int | None:
    """The major number of a CLI version (`20.10.24+dfsg1` -> 20)."""
    head = version.strip().split(".", 1)[0]
    return int(head) if head.isdigit() else None


def _has_buildx(cli: str) -> bool:
    return _quiet([cli, "buildx", "version"]) is not None


def _builtin_buildkit(cli: str) -> bool:
    # `docker build` has BuildKit built in up to 22.x; from 23 on it needs the buildx plugin.
    major = client_major(_quiet([cli, "version", "--format", "{{.Client.Version}}"]) or "")
    return major is not None and major < 23


def _quiet(argv: list[str]) -> str | None:
    """A probe's output, or None when it fails."""
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout if result.returncode == 0 else None


def build(builder: Builder, context: IO[bytes] | Path, *, tag: str, progress: Callable[[str], None],
          dockerfile: bytes | None = None, timeout: float | None = None,
          secrets: dict[str, Path] | None = None, no_cache: bool = False) -> engine.BuildOutcome:
    """Build with BuildKit a folder (and `dockerfile`) or a tar context; stream its `--progress=plain` lines
    to `progress`.

    `secrets`: id -> file, for the steps that mount them (the build CA).

    After `timeout` s the CLI is killed, which cancels the build in the engine, and the outcome
    says it timed out.
    """
    if not builder.cli_exists():
        raise BuildFailed(f"the builder {builder.cli} is gone; run `minipaas init` to find one again")
    log: list[str] = []
    timed_out = threading.Event()
    with tempfile.TemporaryDirectory(prefix=TMP_PREFIX) as tmp:
        iidfile = Path(tmp) / "image-id"
        env = {**os.environ, "DOCKER_BUILDKIT": "1"}
        folder = context if isinstance(context, Path) else None
        argv = builder.argv(tag, iidfile, secrets, folder, no_cache=no_cache)
        # The CLI dies with us (a killed deploy): left alone, it would finish the build and tag an image that no
        # release names, outside the host's build lock, which died with us.
        process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   env=env, preexec_fn=proc.dies_with_caller())
        assert process.stdin is not None and process.stdout is not None

        def feed() -> None:
            # A thread, so that a CLI busy writing output never waits on us writing its input.
            with contextlib.suppress(BrokenPipeError, OSError):
                if isinstance(context, Path):
                    process.stdin.write(dockerfile or b"")  # type: ignore[union-attr]
                else:
                    # Gzipped: the CLI takes a plain tar that starts with a PAX header (ours may) for a Dockerfile.
                    with gzip.GzipFile(fileobj=process.stdin, mode="wb", compresslevel=1) as packed:
                        shutil.copyfileobj(context, packed)
            with contextlib.suppress(BrokenPipeError, OSError):
                process.stdin.close()  # type: ignore[union-attr]

        def stop() -> None:
            if process.poll() is not None:
                return  # finished just in time
            timed_out.set()
            # SIGKILL: the engine cancels the build when the CLI's session ends. SIGTERM would ask the
            # CLI to cancel it gracefully, which waits for the step to stop on its own: a node or a
            # shell that is PID 1 of its container ignores SIGTERM, so that takes the engine's 10 s.
            process.kill()

        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        timer = threading.Timer(timeout, stop) if timeout is not None else None
        if timer:
            timer.daemon = True
            timer.start()
        try:
            for raw in process.stdout:
                line = raw.decode("utf-8", errors="replace").rstrip("\r\n").replace("\0", "")
                log.append(line)
                if line.strip():
                    progress(line)
            code = process.wait()
        finally:
            if timer:
                timer.cancel()
            if process.poll() is None:  # interrupted: never leave the CLI (and its build) running
                process.kill()
                process.wait()
            feeder.join(timeout=5)
        if timed_out.is_set():
            return engine.BuildOutcome("", log, error="cancelled", timed_out=True)
        if code != 0:
            error = next((line.strip() for line in reversed(log) if line.strip()), f"exit status {code}")
            return engine.BuildOutcome("", log, error=error, exit_code=engine.step_exit_code(error))
        return engine.BuildOutcome(iidfile.read_text().strip(), log)
