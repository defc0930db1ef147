"""Builds: from a pushed commit to a tagged image.

The context is `git archive` of the commit. With the app's own Dockerfile that is the whole
context; otherwise the detected buildpack renders a Dockerfile, the source goes under `src/`
and the build CA (if any) beside it, so the template decides which stage ever sees the CA.
"""

from __future__ import annotations

import io
import json
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass

from minipaas import buildpacks, dockerfile_policy, engine, gitrepo, packagejson, procfile, stacks
from minipaas.errors import Conflict, InvalidInput
from minipaas.names import image_patterns
from minipaas.settings import Settings

CA_NAME = "minipaas-build-ca.pem"


@dataclass(frozen=True)
class Source:
    """What a commit holds that decides how it is built."""

    sha: str
    paths: frozenset[str]
    package: packagejson.Package  # the checked facts of package.json, all a template sees of it
    procfile: dict[str, str]
    pack: buildpacks.Buildpack


@dataclass(frozen=True)
class Build:
    image: str  # the tag, minipaas/<app>:<release>
    image_id: str
    buildpack: str
    log: str
    seconds: float


def inspect(settings: Settings, app: str, sha: str) -> Source:
    """Read the commit's files, package.json and Procfile, and pick its buildpack."""
    repo = settings.repo_path(app)
    paths = frozenset(gitrepo.all_files(repo, sha))
    package = packagejson.parse(gitrepo.read_file(repo, sha, "package.json") if "package.json" in paths else None)
    procs = procfile.parse(gitrepo.read_file(repo, sha, "Procfile") or b"") if "Procfile" in paths else {}
    pack = buildpacks.detect(buildpacks.load_all(settings.buildpacks_dir), set(paths), set(package.scripts))
    return Source(sha, paths, package, procs, pack)


def build(
    settings: Settings,
    app: str,
    release: int,
    source: Source,
    progress: Callable[[str], None],
    *,
    allowed_images: str = "",
) -> Build:
    """Build the commit into `<instance>/<app>:<release>`; an app's own Dockerfile may use only its own
    stages, minipaas' base images and the images `allowed_images` (and the host's setting) name."""
    started = time.monotonic()
    repo = settings.repo_path(app)
    sha, pack = source.sha, source.pack
    progress(f"-----> Building {app} (release {release}, {sha[:7]}) with the {pack.name} buildpack")
    tag = f"{settings.image_repository(app)}:{release}"
    _check_tag_is_ours(settings, tag)
    labels = {
        engine.LABEL: str(settings.home),
        "minipaas.app": app,
        "minipaas.release": str(release),
        "minipaas.sha": sha,
        "minipaas.buildpack": pack.name,
    }
    # One LABEL line at the end of the Dockerfile: the build API's `labels` would add a step per label.
    label_line = "\nLABEL " + " ".join(f"{k}={json.dumps(v)}" for k, v in labels.items()) + "\n"
    if pack.uses_app_dockerfile:
        text = _checked_dockerfile(settings, app, gitrepo.read_file(repo, sha, "Dockerfile") or b"",
                                   allowed_images)
        context = _context_with(gitrepo.archive(repo, sha), {"Dockerfile": (text + label_line).encode()})
    else:
        facts = {
            "app": app,
            "files": sorted(p for p in source.paths if "/" not in p),
            "package": source.package,
            "procfile": source.procfile,
            "build_ca": settings.build_ca is not None,
        }
        dockerfile = buildpacks.render(pack, facts, lambda kind, spec: stacks.resolve(spec, settings),
                                       cache_dir=settings.cache_dir)
        extra = {"Dockerfile": (dockerfile + label_line).encode()}
        if settings.build_ca is not None:
            extra[CA_NAME] = settings.build_ca.read_bytes()
        context = _context_with(gitrepo.archive(repo, sha, prefix="src/"), extra)
    image_id, log = engine.build(context, tag=tag, progress=lambda line: progress(f"       {line}"))
    seconds = time.monotonic() - started
    progress(f"-----> Built {tag} in {seconds:.1f}s")
    return Build(image=tag, image_id=image_id, buildpack=pack.name, log="\n".join(log), seconds=seconds)


def _checked_dockerfile(settings: Settings, app: str, raw: bytes, allowed_images: str) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput("the Dockerfile is not valid UTF-8") from None
    allowed = image_patterns(settings.build_images) + image_patterns(allowed_images)
    checked = dockerfile_policy.check(text, app=app, allowed=allowed, provided=stacks.is_provided,
                                      cache_namespace=f"{settings.instance}-{app}")
    return checked.text if checked.text.endswith("\n") else checked.text + "\n"


def _check_tag_is_ours(settings: Settings, tag: str) -> None:
    """Never move a tag another minipaas instance (or anyone else) put on an image of theirs."""
    labels = engine.image_labels(tag)
    if labels is not None and labels.get(engine.LABEL) != str(settings.home):
        raise Conflict(f"image {tag} exists and is not this minipaas instance's (its home: "
                       f"{labels.get(engine.LABEL) or 'none'}); set MINIPAAS_INSTANCE to a name of its own")


def _context_with(source_tar: bytes, extra: dict[str, bytes]) -> io.BytesIO:
    """The git archive with generated files added at the context's root."""
    out = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(source_tar), mode="r:") as src, \
            tarfile.open(fileobj=out, mode="w:", format=tarfile.PAX_FORMAT) as dst:
        for member in src:
            if member.name in extra:
                continue  # replaced below
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


