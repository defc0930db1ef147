"""The node buildpack's pure parts, without Docker: which package manager installs an app, the Dockerfile
rendered for each builder (as text), the failed build's one line, the hint for a pruned binary, and the
BuildKit secret on the CLI."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from minipaas.build import builders, buildkit, buildlog, buildpacks, builds, dockerfiles
from minipaas.errors import BuildFailed, InvalidInput
from minipaas.source import nodeinstall, packagejson, starthints
from minipaas.state.settings import SHARE_DIR

NAMESPACE = "mp-1/shop/0a1b2c3d"
BERRY_LOCK = b'__metadata:\n  version: 8\n\n"typescript@npm:^5.4.0":\n  version: 5.4.5\n' \
             b'  resolution: "typescript@npm:5.4.5"\n  bin:\n    tsc: bin/tsc\n    tsserver: bin/tsserver\n' \
             b'  languageName: node\n'


def decide(package: dict[str, object], files: dict[str, bytes], commands: tuple[str, ...] = ()
           ) -> nodeinstall.Install:
    parsed = packagejson.parse(json.dumps(package).encode())
    return nodeinstall.decide(parsed, {"package.json", *files}, files.get, commands=commands)


def render(package: dict[str, object], files: dict[str, bytes], *, builder: str = "buildkit", ca: bool = True,
           procfile: dict[str, str] | None = None, config: dict[str, str] | None = None, pack: str = "node") -> str:
    parsed = packagejson.parse(json.dumps(package).encode())
    paths = frozenset({"package.json", *files})
    install = nodeinstall.decide(parsed, paths, files.get, commands=(procfile or {}).values())
    [found] = [p for p in buildpacks.load_all(SHARE_DIR / "buildpacks") if p.name == pack]
    facts = {"app": "shop", "files": sorted(p for p in paths if "/" not in p), "folders": builds._folders(paths),
             "package": parsed, "install": install, "procfile": procfile or {}, "build_ca": ca, "builder": builder,
             "build_config": config or {}, "base": "minipaas/node:26", "node_version": "26.0.0"}
    # As the builder gets it: read once, checked, rendered (no engine: images stay names).
    planned = dockerfiles.plan(buildpacks.render(found, facts), app="shop", allowed=(),
                               provided=lambda ref: ref == "minipaas/node:26", cache_namespace=NAMESPACE)
    return dockerfiles.render(planned.check(None).instructions, stage_labels={}, labels={})


def exec_form(line: str) -> list[str]:
    """The argv of a RUN's exec form (after its flags)."""
    return json.loads(line[line.index("["):])


def runs(dockerfile: str) -> list[str]:
    return [line for line in dockerfile.splitlines() if line.startswith("RUN ")]


# -- which package manager ------------------------------------------------------------------------------

@pytest.mark.parametrize(("package", "files", "manager", "lockfile", "berry", "pnp"), [
    ({}, {}, "npm", "", False, False),
    ({}, {"package-lock.json": b"{}"}, "npm", "package-lock.json", False, False),
    ({}, {"npm-shrinkwrap.json": b"{}"}, "npm", "npm-shrinkwrap.json", False, False),
    ({}, {"yarn.lock": b"# yarn lockfile v1\n"}, "yarn", "yarn.lock", False, False),
    ({}, {"yarn.lock": BERRY_LOCK}, "yarn", "yarn.lock", True, True),  # Berry's default linker: pnp
    ({}, {"yarn.lock": BERRY_LOCK, ".yarnrc.yml": b"nodeLinker: 'node-modules' # here\n"}, "yarn", "yarn.lock",
     True, False),
    ({"packageManager": "yarn@4.5.0"}, {}, "yarn", "", True, True),
    ({"packageManager": "yarn@1.22.22"}, {}, "yarn", "", False, False),
    ({}, {"pnpm-lock.yaml": b"lockfileVersion: '9.0'\n"}, "pnpm", "pnpm-lock.yaml", False, False),
])
def test_the_package_manager_is_packagemanagers_else_the_lockfiles(
        package: dict[str, object], files: dict[str, bytes], manager: str, lockfile: str, berry: bool,
        pnp: bool) -> None:
    install = decide(package, files)
    assert (install.manager, install.lockfile, install.berry, install.pnp) == (manager, lockfile, berry, pnp)
    assert install.notes == ()


def test_pnpm_lockfile_versions_and_several_lockfiles() -> None:
    assert decide({}, {"pnpm-lock.yaml": b"lockfileVersion: 5.4\n"}).lock_major == 5
    both = decide({}, {"package-lock.json": b"{}", "yarn.lock": b""})
    assert both.lockfile == "package-lock.json"
    assert both.notes == ("yarn.lock ignored: package-lock.json decides the install; keep one lockfile",)
    pinned = decide({"packageManager": "yarn@1.22.22"}, {"package-lock.json": b"{}", "yarn.lock": b""})
    assert pinned.lockfile == "yarn.lock" and "(packageManager)" in pinned.notes[0]


@pytest.mark.parametrize(("package", "files", "words"), [
    ({"packageManager": "pnpm@9.1.0"}, {"package-lock.json": b"{}"},
     "packageManager in package.json names pnpm@9.1.0, but the lockfile is package-lock.json (npm's)"),
    ({"packageManager": "npm@10.0.0"}, {"yarn.lock": b""}, "but the lockfile is yarn.lock (yarn's)"),
    ({"packageManager": "yarn@1.22.22"}, {"yarn.lock": BERRY_LOCK},
     "names yarn@1.22.22, but yarn.lock is a Yarn 2+ (Berry) lockfile"),
    ({"packageManager": "yarn@4.5.0"}, {"yarn.lock": b"# yarn lockfile v1\n"},
     "names yarn@4.5.0, but yarn.lock is a Yarn 1 lockfile"),
])
def test_a_package_manager_not_matching_the_lockfile_is_one_line(
        package: dict[str, object], files: dict[str, bytes], words: str) -> None:
    with pytest.raises(BuildFailed) as refused:
        decide(package, files)
    assert words in refused.value.message and "\n" not in refused.value.message


def test_the_image_gets_the_package_manager_when_the_app_runs_it() -> None:
    yarn = {"yarn.lock": b""}
    assert decide({}, yarn, ("yarn start",)).runtime_tool
    assert decide({"scripts": {"start": "yarn node server.js"}}, yarn).runtime_tool
    assert not decide({}, yarn, ("node yarn-server.js", "node ./yarn/x.js")).runtime_tool
    assert not decide({}, {}, ("npm run web",)).runtime_tool  # npm is in every image


# -- package.json facts ---------------------------------------------------------------------------------

def test_package_json_facts_for_installs() -> None:
    package = packagejson.parse(json.dumps({
        "dependencies": {"express": "^4"}, "optionalDependencies": {"fsevents": "*"},
        "devDependencies": {"typescript": "5.9.3", "local": "file:./local"}, "workspaces": ["packages/*"],
        "cacheDirectories": ["./.next/cache/", "node_modules", ".next/cache"],
        "packageManager": "yarn@4.5.0+sha256." + "ab" * 32}).encode())
    assert package.dependencies == {"express", "fsevents"} and package.dev_dependencies == {"typescript", "local"}
    assert package.workspaces and package.local_dependencies
    assert package.cache_directories == (".next/cache", "node_modules")
    assert package.package_manager is not None
    assert package.package_manager.corepack_spec == "yarn@4.5.0+sha256." + "ab" * 32
    assert not packagejson.parse(b'{"dependencies": {"a": "^1"}}').local_dependencies


@pytest.mark.parametrize(("document", "words"), [
    ({"cacheDirectories": ".next/cache"}, "cacheDirectories in package.json must be an array of folder paths"),
    ({"cacheDirectories": [".next/cache", 3]}, "must hold folder paths (strings), not a number"),
    ({"cacheDirectories": [None]}, "must hold folder paths (strings), not null"),
    ({"cacheDirectories": ["/root"]}, "'/root' is not a relative folder path"),
    ({"cacheDirectories": ["../x"]}, "is not a relative folder path"),
    ({"cacheDirectories": ["."]}, "is not a relative folder path"),
    ({"cacheDirectories": ["a,target=/etc"]}, "is not a relative folder path"),
    ({"cacheDirectories": ["a b"]}, "is not a relative folder path"),
    ({"cacheDirectories": [str(n) for n in range(11)]}, "names more than 10 folders"),
    ({"dependencies": ["express"]}, "dependencies in package.json must be an object, not an array"),
    ({"devDependencies": "typescript"}, "devDependencies in package.json must be an object, not a string"),
])
def test_odd_install_facts_are_one_line(document: dict[str, object], words: str) -> None:
    with pytest.raises(BuildFailed) as refused:
        packagejson.parse(json.dumps(document).encode())
    assert words in refused.value.message and "\n" not in refused.value.message


# -- the Dockerfile, per builder ------------------------------------------------------------------------

def test_buildkit_mounts_the_ca_as_a_secret_and_downloads_in_a_cache_of_the_apps_own() -> None:
    text = render({"dependencies": {"ms": "2"}}, {"package-lock.json": b"{}"})
    assert runs(text) == ["RUN --mount=type=secret,id=minipaas-build-ca --mount=type=cache,target=/root/.npm,"
                          f"id={NAMESPACE}/npm npm ci --no-audit --no-fund --omit=dev"]
    assert "ENV NODE_EXTRA_CA_CERTS=/run/secrets/minipaas-build-ca npm_config_cafile=/run/secrets/minipaas-build-ca" \
        in text
    assert "minipaas-build-ca.pem" not in text


def test_the_legacy_builder_gets_no_mounts_and_the_ca_in_the_build_stage_only() -> None:
    text = render({"dependencies": {"ms": "2"}}, {"package-lock.json": b"{}"}, builder="legacy")
    assert "--mount" not in text
    assert runs(text) == ["RUN npm ci --no-audit --no-fund --omit=dev"]
    build, final = text.split("\nFROM minipaas/node:26\n")
    assert "COPY minipaas-build-ca.pem /usr/local/share/minipaas-build-ca.pem" in build
    assert "minipaas-build-ca" not in final and "CA_CERTS" not in final
    assert "--mount" not in render({"dependencies": {}}, {}, builder="")  # no builder named: no mounts
    assert "secret" not in render({}, {}, ca=False)


@pytest.mark.parametrize("builder", ["legacy", "buildkit"])
def test_the_app_owns_app_copied_with_chown_and_no_chown_layer(builder: str) -> None:
    for package in ({}, {"scripts": {"build": "vite build"}}):
        final = render(package, {}, builder=builder).split("\nFROM minipaas/node:26\n")[1]
        copies = [line for line in final.splitlines() if line.startswith(("COPY", "WORKDIR", "RUN"))]
        # The first copy creates /app, so /app itself is node's too; a WORKDIR before it would make it root's.
        assert copies[0] == "COPY --from=build --chown=node:node /app /app"
        assert copies[-1] == "WORKDIR /app"
        assert all("--chown=node:node" in line for line in copies if line.startswith("COPY"))
        assert not any(line.startswith("RUN") for line in copies) and "chown -R" not in final


def test_herokus_build_scripts_in_order_with_dev_dependencies_pruned_after_the_build() -> None:
    scripts = {"heroku-prebuild": "a", "build": "b", "heroku-postbuild": "c", "heroku-cleanup": "d"}
    [install] = runs(render({"scripts": scripts}, {"package-lock.json": b"{}"}, builder="legacy"))
    assert install == ("RUN npm run heroku-prebuild && npm ci --no-audit --no-fund && npm run heroku-postbuild && "
                       "npm prune --omit=dev --no-audit --no-fund && npm run heroku-cleanup")
    text = render({"scripts": {"build": "b"}}, {"yarn.lock": b""}, builder="legacy")
    assert runs(text)[1:] == ["RUN yarn install --non-interactive --frozen-lockfile",
                              "RUN yarn run build && yarn install --non-interactive --frozen-lockfile --production "
                              "--ignore-scripts --prefer-offline"]
    assert text.index("COPY src/package.json src/yarn.lock ./") < text.index("RUN yarn install") \
        < text.index("COPY src/ ./")


@pytest.mark.parametrize(("config", "manager_files", "kept"), [
    ({"NPM_CONFIG_PRODUCTION": "false"}, {"package-lock.json": b"{}"}, True),
    ({"NPM_CONFIG_PRODUCTION": "FALSE"}, {}, True),
    ({"NPM_CONFIG_PRODUCTION": "true"}, {}, False),
    ({"YARN_PRODUCTION": "false"}, {}, False),  # npm's app: YARN_PRODUCTION says nothing
    ({"YARN_PRODUCTION": "false"}, {"yarn.lock": b""}, True),
])
def test_herokus_config_keeps_dev_dependencies(config: dict[str, str], manager_files: dict[str, bytes],
                                               kept: bool) -> None:
    text = render({"scripts": {"build": "b"}}, manager_files, builder="legacy", config=config)
    pruned = "npm prune" in text or "--production" in text
    assert pruned != kept, text
    no_build = render({}, manager_files, builder="legacy", config=config)
    assert ("--omit=dev" in no_build or "--production" in no_build) != kept, no_build


def test_the_whole_source_comes_first_when_the_install_needs_it() -> None:
    for package, files in (({"scripts": {"postinstall": "prisma generate"}}, {}),
                           ({"scripts": {"prepare": "husky"}}, {}),
                           ({"workspaces": ["packages/*"]}, {}),
                           ({"dependencies": {"lib": "file:./lib"}}, {}),
                           ({}, {"pnpm-workspace.yaml": b"packages: []\n", "pnpm-lock.yaml": b""})):
        text = render(package, files, builder="legacy")
        assert "COPY src/ ./\nRUN " in text and "COPY src/package.json" not in text, (package, text)


def test_yarn_berry_copies_its_releases_and_plugins_and_runs_with_pnp() -> None:
    files = {"yarn.lock": BERRY_LOCK, ".yarnrc.yml": b"yarnPath: .yarn/releases/yarn-4.5.0.cjs\n",
             ".yarn/releases/yarn-4.5.0.cjs": b"", ".yarn/plugins/@yarnpkg/plugin-x.cjs": b""}
    text = render({"packageManager": "yarn@4.5.0"}, files)
    assert "COPY src/package.json src/yarn.lock src/.yarnrc.yml ./" in text
    assert "COPY src/.yarn/releases ./.yarn/releases/\nCOPY src/.yarn/plugins ./.yarn/plugins/\n" in text
    assert corepack(text) == ["yarn", "yarn@4.5.0"]
    assert runs(text)[-1].endswith(f"target=/var/cache/yarn-berry,id={NAMESPACE}/berry yarn install --immutable && "
                                   "yarn workspaces focus --all --production")
    assert "YARN_ENABLE_GLOBAL_CACHE=false" in text  # Plug'n'Play runs from the zips: they stay in /app
    assert 'NODE_OPTIONS="--require /app/.pnp.cjs --experimental-loader file:///app/.pnp.loader.mjs"' in text
    # Without packageManager, a committed yarnPath release decides; Yarn 1 from corepack hands over to it.
    assert corepack(render({}, files)) == ["yarn", "yarn@1.22.22"]
    assert corepack(render({}, {"yarn.lock": BERRY_LOCK})) == ["yarn", "yarn@4.18.1"]


def corepack(text: str) -> list[str]:
    """The tool corepack enables and the spec it installs, checked to arrive as an argument of a fixed script."""
    [step] = [line for line in runs(text) if "corepack" in line]
    argv = exec_form(step)
    assert argv[:2] == ["/bin/sh", "-c"] and argv[3] == "sh" and len(argv) == 5, argv
    tool = argv[2].split("corepack enable --install-directory /opt/corepack/bin ", 1)[1].split(" ", 1)[0]
    assert argv[2].endswith(f'corepack install --global "$1" && /opt/corepack/bin/{tool} --version '
                            f"# Preparing {tool} through corepack"), argv
    return [tool, argv[4]]


def test_pnpm_and_npm_pins_go_through_corepack() -> None:
    text = render({}, {"pnpm-lock.yaml": b"lockfileVersion: '6.0'\n"})
    assert corepack(text) == ["pnpm", "pnpm@8.15.9"]
    assert "pnpm install --frozen-lockfile --store-dir /var/cache/pnpm-store --prod" in text
    assert f"--mount=type=cache,target=/var/cache/pnpm-store,id={NAMESPACE}/pnpm " in text
    npm = render({"packageManager": "npm@10.9.0"}, {"package-lock.json": b"{}"})
    assert corepack(npm) == ["npm", "npm@10.9.0"]
    assert "corepack" not in render({}, {"package-lock.json": b"{}"})
    with_yarn = render({}, {"yarn.lock": b""}, procfile={"web": "yarn start"})
    assert "COPY --from=build /opt/corepack /opt/corepack" in with_yarn.split("\nFROM minipaas/node:26\n")[1]
    assert "/opt/corepack" not in render({}, {"yarn.lock": b""}).split("\nFROM minipaas/node:26\n")[1]


def test_framework_build_caches_are_mounted_for_the_build_step_only() -> None:
    text = render({"dependencies": {"next": "15"}, "scripts": {"build": "next build"},
                   "cacheDirectories": ["node_modules", "client/node_modules", ".cache/gatsby"]}, {})
    build_step = runs(text)[-1]
    assert f"--mount=type=cache,target=/app/.next/cache,id={NAMESPACE}/next-cache " in build_step
    # The app's own cacheDirectories: one cache the build step's fixed script restores them from and saves them to,
    # the folders its arguments (never Dockerfile syntax); node_modules is the install's.
    assert f"--mount=type=cache,target=/var/cache/minipaas-directories,id={NAMESPACE}/cache-directories " \
        in build_step
    argv = exec_form(build_step)
    assert argv[3:] == ["sh", ".cache/gatsby"] and "/app/node_modules" not in text
    assert argv[2].endswith(" # npm run build && npm prune --omit=dev --no-audit --no-fund"), argv
    assert ".next/cache" not in runs(text)[0]
    assert ".next" not in render({"dependencies": {"next": "15"}, "scripts": {"build": "b"}}, {}, builder="legacy")


def test_the_static_build_buildpack_keeps_the_build_stage_only() -> None:
    text = render({"scripts": {"build": "vite build"}}, {"package-lock.json": b"{}"}, pack="static-build")
    assert text.count("FROM ") == 1 and "npm run build" in text


# -- the failed build's line, the start hint, the secret ---------------------------------------------------

@pytest.mark.parametrize(("log", "line"), [
    (["#7 2.1 npm error code EUSAGE", "#7 2.1 npm error", "#7 2.1 npm error `npm ci` can only install packages "
      "when your package.json and package-lock.json are in sync.", "#7 2.2 npm error A complete log of this run",
      "#7 ERROR: executor failed running [/bin/sh -c npm ci]: exit code: 1"],
     "npm error `npm ci` can only install packages when your package.json and package-lock.json are in sync."),
    (["npm ERR! code E404", "npm ERR! 404 Not Found - GET https://registry.npmjs.org/nope - Not found"],
     "npm ERR! 404 Not Found - GET https://registry.npmjs.org/nope - Not found"),
    (["yarn install v1.22.22", "error Your lockfile needs to be updated, but yarn was run with `--frozen-lockfile`."],
     "error Your lockfile needs to be updated, but yarn was run with `--frozen-lockfile`."),
    (["#9 1.0 ➤ YN0000: ┌ Resolution step", "#9 1.1 ➤ YN0028: │ The lockfile would have been modified by this "
      "install, which is explicitly forbidden.", "#9 1.2 ➤ YN0000: · Failed with errors in 0s 50ms"],
     "YN0028: The lockfile would have been modified by this install, which is explicitly forbidden."),
    ([" ERR_PNPM_OUTDATED_LOCKFILE  Cannot install with \"frozen-lockfile\" because pnpm-lock.yaml is not up to "
      "date"], "ERR_PNPM_OUTDATED_LOCKFILE  Cannot install with \"frozen-lockfile\" because pnpm-lock.yaml is not up "
               "to date"),
])
def test_a_failed_install_is_reported_in_the_package_managers_words(log: list[str], line: str) -> None:
    assert buildlog.tool_error(log) == line


def test_a_failed_build_script_keeps_the_builders_line() -> None:
    log = ["#9 0.5 Error: boom", "#9 0.6 npm error Lifecycle script `build` failed with error:", "#9 0.6 npm error "
           "code 1", "#9 0.6 npm error command sh -c node build.js", "error Command failed with exit code 1."]
    assert buildlog.tool_error(log) is None


def hint(output: str, package: dict[str, object], lockfiles: dict[str, bytes] | None = None) -> str | None:
    return starthints.hint(output, packagejson.parse(json.dumps(package).encode()), lockfiles or {}, "shop")


def test_a_binary_only_dev_dependencies_had_gets_the_hint() -> None:
    npm_lock = json.dumps({"lockfileVersion": 3, "packages": {
        "node_modules/@nestjs/cli": {"bin": {"nest": "bin/nest.js"}, "dev": True},
        "node_modules/x/node_modules/other": {"bin": {"nest": "x"}}}}).encode()
    found = hint("> start\n> nest start\n\nsh: 1: nest: not found\n", {"devDependencies": {"@nestjs/cli": "10"}},
                 {"package-lock.json": npm_lock})
    assert found == ("hint: nest comes from @nestjs/cli, which is only in devDependencies: the build prunes those "
                     "after it, as Heroku's does. Move @nestjs/cli to dependencies, or keep devDependencies with "
                     "`minipaas config:set shop NPM_CONFIG_PRODUCTION=false`, and push again")
    # Without a lockfile that says, a devDependency of the binary's name or a well-known one.
    assert "tsc comes from typescript" in hint("sh: 1: tsc: not found", {"devDependencies": {"typescript": "5"}})
    assert "nodemon comes from nodemon" in hint("bash: line 1: nodemon: command not found",
                                                {"devDependencies": {"nodemon": "3"}})
    berry = hint("sh: 1: tsc: not found", {"devDependencies": {"typescript": "5"}}, {"yarn.lock": BERRY_LOCK})
    assert berry is not None and "`minipaas config:set shop YARN_PRODUCTION=false`" in berry


@pytest.mark.parametrize(("output", "package"), [
    ("sh: 1: tsc: not found", {"dependencies": {"typescript": "5"}}),  # not pruned: something else
    ("sh: 1: tsc: not found", {}),
    ("sh: 1: mytool: not found", {"devDependencies": {"typescript": "5"}}),
    ("Error: Cannot find module 'express'", {"devDependencies": {"express": "4"}}),
    ("sh: 1: \x1b[2Jtsc: not found", {"devDependencies": {"typescript": "5"}}),
])
def test_no_hint_where_dev_dependencies_are_not_the_cause(output: str, package: dict[str, object]) -> None:
    assert hint(output, package) is None


def test_the_build_ca_is_a_secret_on_buildkits_command_line(tmp_path: Path) -> None:
    cli = buildkit.parse("buildkit:/usr/bin/docker")
    argv = cli.argv("minipaas/web:3", Path("/tmp/iid"), {"minipaas-build-ca": Path("/etc/ssl/ca.pem")})
    assert argv[:4] == ["/usr/bin/docker", "build", "--secret", "id=minipaas-build-ca,src=/etc/ssl/ca.pem"]
    assert "--secret" not in cli.argv("t", Path("/i"))
    with pytest.raises(InvalidInput, match="comma or a quote"):
        cli.argv("t", Path("/i"), {"minipaas-build-ca": Path("/etc/a,b.pem")})


def test_a_committed_node_modules_stays_out_of_the_context() -> None:
    source = io.BytesIO()
    with tarfile.open(fileobj=source, mode="w") as tar:
        for name in ("src/package.json", "src/node_modules/ms/index.js", "src/node_modules_docs.md",
                     "src/lib/node_modules/x.js"):
            tar.addfile(tarfile.TarInfo(name), io.BytesIO(b""))
    context = builders._context_with(source.getvalue(), {"Dockerfile": b"FROM x\n"}, leave_out="src/node_modules/")
    with tarfile.open(fileobj=context) as tar:
        assert sorted(tar.getnames()) == ["Dockerfile", "src/lib/node_modules/x.js", "src/node_modules_docs.md",
                                          "src/package.json"]
    assert builds._folders(frozenset({".yarn/releases/y.cjs", "a.txt"})) == [".yarn", ".yarn/releases"]
