"""The node buildpack with yarn and pnpm lockfiles: the lockfile picks the package manager, the install
is frozen to the lockfile, and the final image holds the production dependencies only."""

from __future__ import annotations

import re
import subprocess

import pytest

from conftest import APPS, Paas


def in_image(paas: Paas, app: str, script: str) -> str:
    return subprocess.run(["docker", "run", "--rm", "--entrypoint", "sh", paas.image(app, 1), "-c", script],
                          capture_output=True, text=True, check=True).stdout


def build_steps(output: str) -> list[str]:
    """The Dockerfile instructions the build ran, as the builder printed them (legacy builder:
    `Step 4/9 : RUN ...`; BuildKit: `#7 [build 4/5] RUN ...`)."""
    return [m.group(1).strip() for m in re.finditer(r"(?:Step \d+/\d+ : |#\d+ \[[^\]]*\d+/\d+\] )(.*)", output)]


@pytest.mark.parametrize(("manager", "install", "pin"), [
    pytest.param("yarn", r"yarn install --production --frozen-lockfile\b", "yarn@1", id="yarn"),
    # pnpm runs at the version package.json's packageManager pins (pnpm-lock.yaml records it too).
    pytest.param("pnpm", r"pnpm install --prod --frozen-lockfile\b", "pnpm@12.4.2", id="pnpm"),
])
def test_lockfile_picks_the_package_manager(paas: Paas, manager: str, install: str, pin: str) -> None:
    app = paas.new_app(manager)
    paas.push(paas.checkout(app, APPS / manager))
    output = paas.builder_log(app)  # the builder's own lines, as the release's log keeps them

    resp = paas.get(app)
    assert resp.status == 200
    assert resp.body == f"{manager} app: 60000 ms is 1m\n"  # ms loaded in the container

    steps = build_steps(output)
    assert f"RUN npm install --global --no-audit --no-fund {pin}" in steps, output
    assert any(re.fullmatch(rf"RUN {install}.*", step) for step in steps), output
    assert not any("npm ci" in step or "npm install --omit" in step for step in steps), output

    # The devDependency stays out of the final image, also out of pnpm's virtual store (node_modules/.pnpm).
    modules = in_image(paas, app, "ls node_modules").split()
    assert "ms" in modules and "is-number" not in modules
    assert in_image(paas, app, "find node_modules -name 'is-number*'") == ""
