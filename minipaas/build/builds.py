"""Builds: from a pushed commit to a tagged image, within the app's build limits.

The context is `git archive` of the commit. With the app's own Dockerfile that is the whole
context; otherwise the detected buildpack renders a Dockerfile, the source goes under `src/`
and the build CA (if any) beside it, so the template decides which stage ever sees the CA.

The builder is BuildKit where the host's Docker offers it (buildkit.py), else the engine's legacy
builder (adapters/engine/images.py); builders.py runs either. Either way the RUN steps run below one
cgroup holding the app's build limits (buildcgroups.py): a per-app one for the legacy builder, the
engine's shared `docker/buildkit` for BuildKit, whose builds therefore take turns host-wide. A failed
build that ran into a limit is rejected with one line naming it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from minipaas import faultpoints
from minipaas.adapters import buildcgroups, engine, gitrepo
from minipaas.adapters.buildcgroups import BuildLimits
from minipaas.build import buildlog, buildoutput, buildpacks, dockerfiles, stacks
from minipaas.build.builderchoice import builder
from minipaas.build.builders import VENDORED, Context, run_builder
from minipaas.errors import BuildFailed, Conflict, TestsFailed
from minipaas.source import dockerfile_policy, nodeinstall, nodeversions, packagejson, presets, teststage
from minipaas.source.commit import Commit
from minipaas.state import apps, cachemounts, config
from minipaas.state.host import Host
from minipaas.state.names import image_patterns, parent_of
from minipaas.state.settings import Settings

CA_NAME = "minipaas-build-ca.pem"
# BuildKit: the build CA as a secret of this id (a public certificate, not a password), never in the context.
CA_SECRET_ID = "minipaas-build-ca"  # noqa: S105
# The app's config values a buildpack build sees (Heroku's: keep devDependencies); nothing else of the
# config reaches a build.
BUILD_CONFIG = ("NPM_CONFIG_PRODUCTION", "YARN_PRODUCTION")
# A start script that only runs node on the app's files (`node server.js`, `node --enable-source-maps dist/main`):
# the container runs it itself rather than through `npm start`, which costs 0.3-0.4 s at every start here and
# would be a second process between the engine's init and node. Anything else still goes through npm.
PLAIN_NODE = re.compile(r"node(?: [\w./@=:,+-]+)+")


@dataclass(frozen=True)
class Source:
    """What a commit holds that decides how it is built."""

    sha: str
    paths: frozenset[str]
    package: packagejson.Package  # the checked facts of package.json, all a template sees of it
    procfile: dict[str, str]
    pack: buildpacks.Buildpack
    preset: presets.Preset | None = None  # the framework preset its package.json names, if any

    @property
    def build_command(self) -> str:
        """The preset's build command when package.json has no build script and the preset decides what the app
        is, or it is built as a site anyway ("": `npm run build` if there is a build script, else none)."""
        if self.preset is None or "build" in self.package.scripts:
            return ""
        wanted = self.preset.decides(self.package.scripts) or self.pack.serve == "static-build"
        return self.preset.build if wanted else ""

    @property
    def start_command(self) -> str:
        """What the container runs when there is no Procfile web: line: a plain `node ...` start script itself,
        the preset's start command when there is no start script ("": `npm start`)."""
        if "web" in self.procfile:
            return ""
        scripts = self.package.scripts
        if "start" in scripts:
            plain = PLAIN_NODE.fullmatch(scripts["start"]) and not {"prestart", "poststart"} & set(scripts)
            return scripts["start"] if plain else ""
        return self.preset.start if self.preset is not None else ""
    node: nodeversions.Wanted | None = None  # the Node.js version asked for, when the buildpack builds on one
    install: nodeinstall.Install | None = None  # how a buildpack installs its dependencies
    app_json_test: str = ""  # the test command app.json names, if any (teststage.py)


@dataclass(frozen=True)
class Options:
    """How the pusher asked for this build (`git push -o ...`)."""

    skip_tests: bool = False
    no_cache: bool = False
    canary: int | None = None  # `-o canary=N`: the release starts as a canary at N % (0: not one; deploy/canary.py)
    verbose: bool = False  # `-o verbose` (`deploy --verbose`): the pusher sees every line the builder prints


@dataclass(frozen=True)
class Build:
    image: str  # the tag, minipaas/<app>:<release>
    image_id: str
    buildpack: str
    log: str
    seconds: float
    tests: str = ""  # passed, failed, skipped ("": the build has no tests)
    tests_seconds: float | None = None  # how long they ran (None: they did not run now; cached when passed)


def inspect(host: Host, app: str, commit: Commit) -> Source:
    """Pick the commit's buildpack (and framework preset) from what was read of it (source/commit.py), and what its
    template needs: the Node.js version, the package manager, app.json's test command."""
    settings = host.settings
    repo = settings.repo_path(app)
    sha, paths, package, procs = commit.sha, commit.paths, commit.package, commit.procs
    source = classify(sha, paths, package, procs, packs=buildpacks.load_all(settings.buildpacks_dir),
                      known_presets=presets.load_all(settings.buildpacks_dir / "presets"),
                      app_settings={"static-dir": apps.get_setting(host, app, "static-dir")})
    if source.pack.stack == "node":
        # As Heroku reads it: engines.node, then .node-version, then .nvmrc (at the root), then the default.
        node = nodeversions.wanted(package.engines_node,
                                   lambda name: gitrepo.read_file(repo, sha, name) if name in paths else None,
                                   settings.node_major)
        source = dataclasses.replace(source, node=node)
    if source.pack.template and "package.json" in paths:
        install = nodeinstall.decide(package, paths, lambda name: gitrepo.read_file(repo, sha, name)
                                     if name in paths else None, commands=procs.values())
        test = teststage.app_json_script(commit.app_json)
        source = dataclasses.replace(source, install=install, app_json_test=test)
    return source


def classify(sha: str, paths: frozenset[str], package: packagejson.Package, procs: dict[str, str], *,
             packs: list[buildpacks.Buildpack], known_presets: list[presets.Preset],
             app_settings: dict[str, str]) -> Source:
    """Pick the buildpack and framework preset of a commit's facts (pure: inspect reads them)."""
    named = package.dependencies | package.dev_dependencies
    preset = presets.match(known_presets, named) if "package.json" in paths else None
    facts = buildpacks.DetectFacts(preset_kind=preset.kind if preset and preset.decides(package.scripts) else "",
                                   settings=app_settings)
    pack = buildpacks.detect(packs, set(paths), set(package.scripts), facts)
    return Source(sha, paths, package, procs, pack, preset)


def build(
    host: Host,
    app: str,
    release: int,
    source: Source,
    progress: Callable[[str], None],
    *,
    allowed_images: str = "",
    limits: BuildLimits | None = None,
    options: Options | None = None,
) -> Build:
    """Build the commit into `<instance>/<app>:<release>` within `limits` (default: the app's settings).

    An app's own Dockerfile may use only its own stages, minipaas' base images and the images
    `allowed_images` (and the host's setting) name. The base images a build uses are made first when
    missing, and held (gc leaves them) until the build is over. A buildpack build runs the app's tests
    as a stage (teststage.py) unless `options` or the app's `tests` setting say not to; their failure is
    TestsFailed."""
    with contextlib.ExitStack() as held:
        return _build(host, app, release, source, progress, held, allowed_images=allowed_images, limits=limits,
                      options=options or Options())


def _build(host: Host, app: str, release: int, source: Source, progress: Callable[[str], None],
           held: contextlib.ExitStack, *, allowed_images: str, limits: BuildLimits | None,
           options: Options) -> Build:
    started = time.monotonic()
    settings = host.settings
    repo = settings.repo_path(app)
    sha, pack = source.sha, source.pack
    progress(f"-----> Building {app} (release {release}, {sha[:7]}) with the {pack.name} buildpack")
    tag = settings.image_tag(app, release, sha)
    _check_tag_is_ours(settings, tag)
    labels = {
        engine.LABEL: str(settings.home),
        engine.APP_LABEL: app,
        engine.RELEASE_LABEL: str(release),
        engine.SHA_LABEL: sha,
        engine.BUILDPACK_LABEL: pack.name,
    }
    # Every stage carries whose it is, so that gc and apps:destroy find the images the legacy builder
    # keeps of build stages (BuildKit keeps none). Only stable labels: a release number would bust the cache.
    stage_labels = {engine.LABEL: str(settings.home), engine.APP_LABEL: app}
    namespace = cache_namespace(host, app)
    secrets: dict[str, Path] = {}
    tests = teststage.Decision("", "")
    kind = builder(settings).kind
    if pack.uses_app_dockerfile:
        allowed = image_patterns(settings.build_images) + image_patterns(allowed_images)
        planned = dockerfiles.plan(dockerfiles.decode(gitrepo.read_file(repo, sha, "Dockerfile") or b""), app=app,
                                   allowed=allowed, provided=stacks.is_provided, cache_namespace=namespace)
        prefix, extra = "", {}
    else:
        for note in source.install.notes if source.install else ():
            progress(f"       warning: {note}")
        if any(p.startswith(f"{VENDORED}/") for p in source.paths):
            progress(f"       warning: {VENDORED} is committed; it is left out of the build, which installs the "
                     f"dependencies itself (add {VENDORED} to .gitignore)")
        build_env = config.get_all(host, app)
        tests = teststage.decide(source.package, source.app_json_test,
                                 manager=source.install.manager if source.install else "npm", app=app,
                                 setting=apps.get_setting(host, app, "tests"), skip=options.skip_tests)
        if tests.result == "skipped" or (tests.why and not tests.result):
            progress(f"-----> Tests skipped: {tests.why}" if tests.result else f"       note: {tests.why}")
        facts = {
            "app": app,
            "files": sorted(p for p in source.paths if "/" not in p),
            "folders": _folders(source.paths),
            "package": source.package,
            "install": source.install,
            "procfile": source.procfile,
            "build_ca": settings.build_ca is not None,
            "builder": kind,
            "build_config": {key: build_env[key] for key in BUILD_CONFIG if key in build_env},
            # Framework presets (buildpacks/presets): the tool's own commands, where the app names none.
            "build_command": source.build_command,
            "start_command": source.start_command,
            "test_command": tests.command if tests.runs else "",
        }
        base_tag = ""
        if pack.stack == "node":  # the image inherits its minipaas.node.version label: stack:list and gc read it
            base = held.enter_context(stacks.for_app(settings, source.node or _default(settings), progress))
            facts.update(base=base.tag, node_version=base.version)
            base_tag = base.tag
        # The template's text is read and checked as an app's own Dockerfile is: its only image is its base.
        planned = dockerfiles.plan(buildpacks.render(pack, facts, cache_dir=settings.cache_dir), app=app, allowed=(),
                                   provided=lambda ref: dockerfile_policy.normalize(ref) == base_tag,
                                   cache_namespace=namespace)
        prefix, extra = "src", {}
        if settings.build_ca is not None and kind == "legacy":
            extra[CA_NAME] = settings.build_ca.read_bytes()
        elif settings.build_ca is not None:
            secrets[CA_SECRET_ID] = settings.build_ca
    held.enter_context(stacks.for_dockerfile(settings, planned.images, progress))
    owner = parent_of(app) or app
    cachemounts.record(host, life=apps.life(host, owner), app=owner, ids=planned.cache_ids)
    text = held.enter_context(dockerfiles.pinned(settings, planned, kind=kind, stage_labels=stage_labels,
                                                 labels=labels))
    context = Context(repo, sha, text, prefix=prefix, extra=extra)
    limits = limits or apps.build_limits(host, app)
    # The pusher sees the steps and the commands' own output; the release keeps every line.
    shown = buildoutput.BuildLines(progress, verbose=options.verbose,
                                   tests_label=f"{buildoutput.TESTS_STEP}: {tests.command}" if tests.runs else "")
    if options.no_cache:
        progress("-----> Building without the layer cache (-o no-cache)")
    outcome, hit = run_builder(settings, app, context, tag=tag, limits=limits, secrets=secrets,
                               progress=faultpoints.on_first_call("build", shown.feed), say=progress,
                               no_cache=options.no_cache)
    log = "\n".join(outcome.log)
    ran = shown.ended(failed=bool(outcome.error))
    if hit:
        message = buildcgroups.failure_message(hit, limits, app)
        raise BuildFailed(message, log=f"{log}\nminipaas: {message}")  # the log has the details
    if ran.state == "failed" and not hit:
        raise TestsFailed(f"tests failed: {tests.command}", detail=ran.tail(), log=log,
                          seconds=ran.seconds)
    if outcome.error:
        # The package manager's own line says why (`npm ci` refusing a lockfile out of sync); the builder's,
        # which step. No detail: the failing step's output has just been shown, once.
        error = buildlog.tool_error(outcome.log) or outcome.error
        raise BuildFailed(f"build failed: {error}", log=log)
    for stage, image in enumerate(outcome.stage_images()):
        # Tagged (and moved at every build), the stages' images and their layers stay the next build's
        # cache: gc prunes untagged images. destroy removes them with the app's other images.
        repository, _, cache_tag = settings.build_cache_tag(app, stage).rpartition(":")
        engine.tag_image(image, repository, cache_tag)
    seconds = time.monotonic() - started
    progress(f"-----> Built {tag} in {seconds:.1f}s")
    result = "skipped" if tests.result == "skipped" else "passed" if ran.state in ("passed", "cached") else ""
    return Build(image=tag, image_id=outcome.image_id, buildpack=pack.name, log=log, seconds=seconds,
                 tests=result, tests_seconds=ran.seconds if ran.state == "passed" else None)


def _default(settings: Settings) -> nodeversions.Wanted:
    return nodeversions.Wanted(str(settings.node_major), "default")


def _check_tag_is_ours(settings: Settings, tag: str) -> None:
    """Never move a tag another minipaas instance (or anyone else) put on an image of theirs."""
    labels = engine.image_labels(tag)
    if labels is not None and labels.get(engine.LABEL) != str(settings.home):
        raise Conflict(f"image {tag} exists and is not this minipaas instance's (its home: "
                       f"{labels.get(engine.LABEL) or 'none'}); set MINIPAAS_INSTANCE to a name of its own")


def cache_namespace(host: Host, app: str) -> str:
    """Where the app's BuildKit cache mounts live: `<instance>/<app>/<life>/...` (dockerfile_policy.cache_id). No name
    holds a slash, so no other instance or app can name an id in it, and the life (a random id given at
    `apps:create`) makes an app created again under the same name start with empty caches. A review app shares
    its parent's (the same code, the same tenant): its first build downloads nothing the parent's builds have."""
    owner = parent_of(app) or app
    return f"{host.settings.instance}/{owner}/{apps.life(host, owner)}"


def _folders(paths: frozenset[str]) -> list[str]:
    """Every folder of the commit (`.yarn`, `.yarn/releases`, ...): what a template may COPY."""
    found = set()
    for path in paths:
        parts = path.split("/")[:-1]
        found.update("/".join(parts[:n]) for n in range(1, len(parts) + 1))
    return sorted(found)


