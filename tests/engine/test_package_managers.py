"""The node buildpack's package managers, as their projects define them: packageManager through corepack,
else the lockfile (Yarn 1, Yarn 2+ with Plug'n'Play or node_modules, pnpm, npm lockfiles v1 to v3); the
install is frozen to the lockfile and the final image holds the production dependencies only. A
lockfile that does not match is one line, and nothing changes."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from tests.helpers.host import APPS, Paas, commit


def in_image(paas: Paas, app: str, script: str, release: int = 1) -> str:
    return subprocess.run(["docker", "run", "--rm", "--entrypoint", "sh", paas.image(app, release), "-c", script],
                          capture_output=True, text=True, check=True).stdout


def build_steps(output: str) -> list[str]:
    """The Dockerfile instructions the build ran, as the builder printed them (legacy builder:
    `Step 4/9 : RUN ...`; BuildKit: `#7 [build 4/5] RUN ...`), without BuildKit's --mount flags."""
    steps = [m.group(1).strip() for m in re.finditer(r"(?:Step \d+/\d+ : |#\d+ \[[^\]]*\d+/\d+\] )(.*)", output)]
    return [re.sub(r"^RUN (?:--mount=\S+ )+", "RUN ", step) for step in steps]


def corepack_steps(steps: list[str]) -> list[tuple[str, str]]:
    """The corepack steps a build ran, as (tool, spec): the spec is the fixed script's argument (the step is
    printed as the builder prints an exec form: JSON, or with its escapes undone by BuildKit)."""
    found = []
    for step in steps:
        tool = re.search(r"corepack install --global \\?\"\$1\\?\" && /opt/corepack/bin/(\w+) --version "
                         r"# Preparing \1 through corepack\", \"sh\", \"([^\"]+)\"\]$", step)
        if tool:
            found.append((tool.group(1), tool.group(2)))
    return found


def rejection(output: str) -> list[str]:
    return [line.split("!", 1)[1].strip() for line in output.splitlines() if line.startswith("remote: !")]


@pytest.mark.parametrize(("manager", "install", "spec"), [
    # Yarn 1 by its lockfile; no packageManager: corepack's Yarn 1.
    pytest.param("yarn", r"yarn install --non-interactive --frozen-lockfile --production", "yarn@1.22.22", id="yarn1"),
    # pnpm at the version package.json's packageManager pins (pnpm-lock.yaml records it too).
    pytest.param("pnpm", r"pnpm install --frozen-lockfile --store-dir /var/cache/pnpm-store --prod", "pnpm@12.4.2",
                 id="pnpm"),
])
def test_lockfile_picks_the_package_manager(paas: Paas, manager: str, install: str, spec: str) -> None:
    app = paas.new_app(manager)
    paas.push(paas.checkout(app, APPS / manager))
    output = paas.builder_log(app)  # the builder's own lines, as the release's log keeps them

    resp = paas.get(app)
    assert resp.status == 200
    assert resp.body == f"{manager} app: 60000 ms is 1m\n"  # ms loaded in the container

    steps = build_steps(output)
    assert corepack_steps(steps) == [(manager, spec)], output
    assert any(re.fullmatch(rf"RUN {install}", step) for step in steps), output
    assert not any("npm ci" in step or "npm install --omit" in step for step in steps), output

    # The devDependency stays out of the final image, also out of pnpm's virtual store (node_modules/.pnpm).
    modules = in_image(paas, app, "ls node_modules").split()
    assert "ms" in modules and "is-number" not in modules
    assert in_image(paas, app, "find node_modules -name 'is-number*'") == ""


@pytest.mark.parametrize("linker", ["pnp", "node-modules"])
def test_yarn_berry_installs_as_yarnrc_says(paas: Paas, linker: str) -> None:
    """Yarn 4 through corepack at packageManager's version, `--immutable`; Plug'n'Play runs without
    node_modules (NODE_OPTIONS loads .pnp.cjs and its ESM loader), node-modules as usual; the build step
    sees the devDependency, the app does not. The Procfile's `web: yarn start` finds the same Yarn in the
    image, offline."""
    app = paas.new_app("berry")
    checkout = paas.checkout(app, APPS / "berry")
    if linker != "pnp":
        (checkout / ".yarnrc.yml").write_text(f"nodeLinker: {linker}\n")
        commit(checkout, f"nodeLinker {linker}")
    paas.push(checkout)
    output = paas.builder_log(app)

    body = paas.get(app).body
    assert body == f"berry {linker}: 60000 ms is 1m; built with is-number: true; devDependency pruned\n", output
    steps = build_steps(output)
    assert corepack_steps(steps) == [("yarn", "yarn@4.18.1")], output
    assert "RUN yarn install --immutable" in steps, output
    assert any("yarn workspaces focus --all --production" in s for s in steps), output
    assert "COPY --from=build /opt/corepack /opt/corepack" in build_steps(output), output
    assert in_image(paas, app, "COREPACK_ENABLE_NETWORK=0 yarn --version") == "4.18.1\n"
    listing = in_image(paas, app, "ls -a /app").split()
    if linker == "pnp":
        assert ".pnp.cjs" in listing and "node_modules" not in listing
    else:
        assert "node_modules" in listing and ".pnp.cjs" not in listing
        assert in_image(paas, app, "ls node_modules").split() == ["ms"]


@pytest.mark.parametrize(("version", "pin"), [(1, ""), (3, ""), (3, "npm@10.9.0")])
def test_npm_lockfiles_of_every_version_install_with_npm_ci(paas: Paas, version: int, pin: str) -> None:
    app = paas.new_app(f"lock{version}")
    checkout = paas.checkout(app, APPS / "npm-lockfiles")
    if version == 1:
        shutil.copy(checkout / "lockfile-v1.json", checkout / "package-lock.json")
    if pin:
        package = json.loads((checkout / "package.json").read_text())
        (checkout / "package.json").write_text(json.dumps({**package, "packageManager": pin}, indent=2))
    commit(checkout, "npm 6's lockfile, or npm pinned")
    assert json.loads((checkout / "package-lock.json").read_text())["lockfileVersion"] == version
    paas.push(checkout)
    output = paas.builder_log(app)
    assert paas.get(app).body == "npm app: 60000 ms is 1m; devDependency pruned\n"
    steps = build_steps(output)
    assert "RUN npm ci --no-audit --no-fund --omit=dev" in steps, output
    if pin:  # npm at packageManager's version, through corepack: its shim answers `npm --version`
        assert corepack_steps(steps) == [("npm", pin)], output
        assert re.search(r"^#\d+ [\d.]+ 10\.9\.0\s*$", output, re.M), output
    else:  # npm unpinned: the base image's
        assert not any("corepack" in s for s in steps), output


def test_a_lockfile_out_of_sync_with_package_json_is_one_line_and_changes_nothing(paas: Paas) -> None:
    app = paas.new_app("sync")
    checkout = paas.checkout(app, APPS / "npm-lockfiles")
    paas.push(checkout)
    live = paas.repo_ref(app)
    package = json.loads((checkout / "package.json").read_text())
    package["dependencies"]["is-odd"] = "3.0.1"  # and no new lockfile
    (checkout / "package.json").write_text(json.dumps(package, indent=2))
    commit(checkout, "a dependency without its lockfile")

    output = paas.push(checkout, expect_ok=False).stderr
    lines = rejection(output)
    # npm's own words: the line that says why, not the builder's `executor failed running [...]`.
    assert lines[0].startswith("build failed: npm error `npm ci` can only install packages when your package.json "
                               "and package-lock.json"), output
    assert "are in sync" in lines[0], output
    assert lines[-1] == "push rejected; the previous release keeps serving"
    assert paas.repo_ref(app) == live
    assert paas.get(app).body == "npm app: 60000 ms is 1m; devDependency pruned\n"
    assert [r["status"] for r in json.loads(paas.run("releases", app, "--json").stdout)] == ["failed", "live"]


def test_a_package_manager_that_is_not_the_lockfiles_is_refused_before_building(paas: Paas) -> None:
    app = paas.new_app("pm")
    checkout = paas.checkout(app, APPS / "npm-lockfiles")
    package = json.loads((checkout / "package.json").read_text())
    (checkout / "package.json").write_text(json.dumps({**package, "packageManager": "pnpm@10.34.9"}, indent=2))
    commit(checkout, "pnpm named, npm's lockfile")

    output = paas.push(checkout, expect_ok=False).stderr
    assert rejection(output) == [
        "packageManager in package.json names pnpm@10.34.9, but the lockfile is package-lock.json (npm's): remove "
        "the other lockfile or packageManager, or install with pnpm and commit its lockfile",
        "push rejected; nothing was deployed"], output  # its first push
    assert "Building" not in output and paas.repo_ref(app) == ""
