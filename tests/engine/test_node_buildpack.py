"""The node buildpack takes apps as Heroku does, through real pushes: the app owns /app and may write
there (uploads at boot, a release command, Next.js' image cache), Heroku's build scripts run in their
order with devDependencies pruned after the build, a binary only devDependencies had gets a hint, a
committed node_modules is left out, and BuildKit keeps package downloads and framework build caches
between builds, per app."""

from __future__ import annotations

import base64
import hashlib
import http.server
import io
import ipaddress
import json
import subprocess
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.host import APPS, Paas, commit, docker


@pytest.fixture(params=["legacy", "buildkit"])
def builder(request: pytest.FixtureRequest, paas: Paas) -> str:
    paas.env["MINIPAAS_BUILDER"] = request.param
    return str(request.param)


def in_image(paas: Paas, app: str, release: int, script: str) -> str:
    """What `script` prints in the release's image, run as the image's user (node)."""
    return subprocess.run(["docker", "run", "--rm", "--entrypoint", "sh", paas.image(app, release), "-c", script],
                          capture_output=True, text=True, check=True).stdout


def assert_app_owns_its_folder(paas: Paas, app: str, release: int) -> None:
    assert in_image(paas, app, release, "id -un; stat -c %U /app; find /app ! -user node") == "node\nnode\n"


def rejection(output: str) -> list[str]:
    return [line.split("!", 1)[1].strip() for line in output.splitlines() if line.startswith("remote: !")]


def test_the_app_makes_its_uploads_folder_at_boot(paas: Paas, builder: str) -> None:
    app, _ = paas.deploy(APPS / "uploads", prefix="up")
    assert paas.get(app).body == "uploads: written at boot; home: /home/node\n"
    assert_app_owns_its_folder(paas, app, 1)


def test_a_next_style_app_writes_its_image_cache_and_keeps_its_build_cache(paas: Paas, builder: str) -> None:
    app, checkout = paas.deploy(APPS / "next-cache", prefix="next")
    assert paas.get(app).body == "images cached; earlier builds in the cache: 0\n"  # .next/cache/images written
    assert_app_owns_its_folder(paas, app, 1)

    (checkout / "server.js").write_text((checkout / "server.js").read_text() + "// a source change\n")
    commit(checkout, "source change")
    paas.push(checkout)
    # BuildKit: .next/cache (cacheDirectories) is a cache mount the next build finds again. The legacy builder
    # has no cache mounts: every build starts without it, as a Heroku build with its cache cleared.
    earlier = 1 if builder == "buildkit" else 0
    assert paas.get(app).body == f"images cached; earlier builds in the cache: {earlier}\n"
    assert_app_owns_its_folder(paas, app, 2)


def test_an_express_app_like_dokkus_test_app_deploys_with_its_procfile(paas: Paas) -> None:
    app, _ = paas.deploy(APPS / "express-procfile", prefix="expr")
    assert paas.get(app).body == "express fixture\n"
    output = paas.run("releases:info", app, "1").stdout
    assert "npm install --no-audit --no-fund --omit=dev" in output  # no lockfile: npm install
    # Only web runs by default; the release command ran as the app's user, writing into /app (a failure would
    # have rejected the deploy). As on Heroku, its files stay in its one-off container.
    assert [name.split(".")[-2] for name in paas.container_names()] == ["web"]
    assert paas.get(app, "/release-file").body == "false\n"
    ran = paas.run("run", app, "--", "sh", "-c", "touch /app/release.test && stat -c %U /app/release.test")
    assert ran.stdout == "node\n"


def test_heroku_build_scripts_run_in_order_and_dev_dependencies_are_pruned_after_the_build(paas: Paas) -> None:
    app, checkout = paas.deploy(APPS / "heroku-scripts", prefix="scripts")
    # heroku-postbuild replaces build; heroku-prebuild runs before the install, heroku-cleanup after the prune.
    assert paas.get(app).body == ("heroku-prebuild (devDependency pruned)\ninstall (devDependency present)\n"
                                  "heroku-postbuild (devDependency present)\nheroku-cleanup (devDependency pruned)\n")
    assert in_image(paas, app, 1, "ls node_modules").split() == ["ms"]

    package = json.loads((checkout / "package.json").read_text())
    for name in ("heroku-prebuild", "heroku-postbuild"):
        del package["scripts"][name]
    (checkout / "package.json").write_text(json.dumps(package, indent=2))
    commit(checkout, "only build and heroku-cleanup")
    paas.push(checkout)
    assert paas.get(app).body == ("install (devDependency present)\nbuild (devDependency present)\n"
                                  "heroku-cleanup (devDependency pruned)\n")


def test_a_start_command_needing_a_dev_dependency_gets_a_hint_and_the_fix_works(paas: Paas) -> None:
    app = paas.new_app("tsc")
    checkout = paas.checkout(app, APPS / "dev-binary")
    output = paas.push(checkout, expect_ok=False).stderr
    lines = rejection(output)
    web = paas.container(f"{app}.web.1")
    assert lines[0] == f"{web} exited with code 127 before answering the health check", output
    assert lines[1] == (f"hint: tsc comes from typescript, which is only in devDependencies: the build prunes those "
                        f"after it, as Heroku's does. Move typescript to dependencies, or keep devDependencies with "
                        f"`minipaas config:set {app} NPM_CONFIG_PRODUCTION=false`, and push again"), output
    assert any(line.endswith("tsc: not found") for line in lines), output

    paas.run("config:set", app, "NPM_CONFIG_PRODUCTION=false", "--no-restart")
    paas.push(checkout)
    output = paas.builder_log(app)
    assert "npm ci --no-audit --no-fund" in output and "--omit=dev" not in output  # devDependencies kept
    assert paas.get(app).body == "compiled at start\n"


def test_a_committed_node_modules_is_left_out_and_the_installed_one_wins(paas: Paas) -> None:
    app = paas.new_app("vendored")
    checkout = paas.checkout(app, APPS / "npm-lockfiles")
    vendored = checkout / "node_modules" / "ms"
    vendored.mkdir(parents=True)
    (vendored / "package.json").write_text('{"name": "ms", "version": "2.1.3", "main": "index.js"}\n')
    (vendored / "index.js").write_text('module.exports = () => "a committed copy";\n')
    (checkout / "node_modules" / "committed.txt").write_text("committed\n")
    commit(checkout, "node_modules committed")
    output = paas.push(checkout).stderr

    assert ("warning: node_modules is committed; it is left out of the build, which installs the dependencies "
            "itself (add node_modules to .gitignore)") in output
    assert paas.get(app).body == "npm app: 60000 ms is 1m; devDependency pruned\n"
    assert in_image(paas, app, 1, "ls node_modules").split() == ["ms"]


# -- BuildKit's cache mounts, observed at a registry of the test's own ---------------------------------

class Registry:
    """An npm registry on the Docker bridge's gateway, serving packages made here and noting each tarball
    fetched: what a build downloaded."""

    def __init__(self, names: list[str]) -> None:
        self.tarballs = {name: _package_tarball(name) for name in names}
        self.fetched: list[str] = []
        # The engine names the bridge's gateway only where it was given one: else it is the subnet's first address
        # (an empty gateway made npm's `Invalid URL`, seen on fresh machines).
        ipam = json.loads(docker("network", "inspect", "bridge", "--format", "{{json (index .IPAM.Config 0)}}"))
        gateway = ipam.get("Gateway") or str(next(ipaddress.ip_network(ipam["Subnet"]).hosts()))
        registry = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                name = self.path.strip("/").split("/")[0]
                if name in registry.tarballs and self.path.endswith(".tgz"):
                    registry.fetched.append(name)
                    self._send(registry.tarballs[name], "application/octet-stream")
                elif name in registry.tarballs:
                    self._send(json.dumps(registry.packument(name)).encode(), "application/json")
                else:
                    self.send_error(404)

            def _send(self, body: bytes, kind: str) -> None:
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer((gateway, 0), Handler)
        self.url = f"http://{gateway}:{self.server.server_address[1]}/"

    def tarball_url(self, name: str) -> str:
        return f"{self.url}{name}/-/{name}-1.0.0.tgz"

    def integrity(self, name: str) -> str:
        return "sha512-" + base64.b64encode(hashlib.sha512(self.tarballs[name]).digest()).decode()

    def packument(self, name: str) -> dict[str, object]:
        return {"name": name, "dist-tags": {"latest": "1.0.0"}, "versions": {"1.0.0": {
            "name": name, "version": "1.0.0",
            "dist": {"tarball": self.tarball_url(name), "integrity": self.integrity(name)}}}}

    def write_app(self, checkout: Path, names: list[str]) -> None:
        """package.json, package-lock.json (v3) and .npmrc for an app depending on `names`."""
        package = json.loads((checkout / "package.json").read_text())
        package["dependencies"] = {name: "1.0.0" for name in names}
        (checkout / "package.json").write_text(json.dumps(package, indent=2))
        packages: dict[str, object] = {"": {"name": package["name"], "version": "1.0.0",
                                            "dependencies": package["dependencies"]}}
        for name in names:
            packages[f"node_modules/{name}"] = {"version": "1.0.0", "resolved": self.tarball_url(name),
                                                "integrity": self.integrity(name)}
        lock = {"name": package["name"], "version": "1.0.0", "lockfileVersion": 3, "requires": True,
                "packages": packages}
        (checkout / "package-lock.json").write_text(json.dumps(lock, indent=2))
        (checkout / ".npmrc").write_text(f"registry={self.url}\n")

    def __enter__(self) -> Registry:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def _package_tarball(name: str) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for path, text in (("package/package.json", json.dumps({"name": name, "version": "1.0.0"})),
                           ("package/index.js", f"module.exports = {json.dumps(name)};\n")):
            info = tarfile.TarInfo(path)
            info.size = len(text.encode())
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(text.encode()))
    return out.getvalue()


@pytest.fixture
def registry() -> Iterator[Registry]:
    with Registry(["mp-cached-a", "mp-cached-b", "mp-cached-c"]) as running:
        yield running


def test_a_lockfile_change_downloads_only_the_new_package(paas: Paas, builder: str, registry: Registry) -> None:
    app = paas.new_app("cache")
    checkout = paas.checkout(app, APPS / "registry-app")
    registry.write_app(checkout, ["mp-cached-a", "mp-cached-b"])
    commit(checkout, "two dependencies")
    paas.push(checkout)
    assert paas.get(app).body == "mp-cached-a mp-cached-b\n"
    assert sorted(registry.fetched) == ["mp-cached-a", "mp-cached-b"]

    registry.fetched.clear()
    registry.write_app(checkout, ["mp-cached-a", "mp-cached-b", "mp-cached-c"])
    commit(checkout, "one more dependency")
    paas.push(checkout)
    assert paas.get(app).body == "mp-cached-a mp-cached-b mp-cached-c\n"
    # BuildKit: npm's cache is a cache mount of this app's; the legacy builder downloads everything again.
    expected = ["mp-cached-c"] if builder == "buildkit" else ["mp-cached-a", "mp-cached-b", "mp-cached-c"]
    assert sorted(registry.fetched) == expected

    # Another app never reads this one's cache: it downloads for itself.
    registry.fetched.clear()
    other = paas.new_app("other")
    other_checkout = paas.checkout(other, APPS / "registry-app")
    registry.write_app(other_checkout, ["mp-cached-a"])
    commit(other_checkout, "one dependency")
    paas.push(other_checkout)
    assert registry.fetched == ["mp-cached-a"]


def test_gc_after_a_deploy_keeps_the_newest_builds_layer_cache(paas: Paas, builder: str) -> None:
    """gc runs after every deploy's drain delay: it must not take the dependency layers the next
    source-only push reuses (the legacy builder keeps them in the untagged images of the build's stages)."""
    from tests.helpers.host import EXAMPLE, step_cached

    app, checkout = paas.deploy(EXAMPLE, prefix="gcc")
    paas.run("gc", app)
    server = checkout / "server.js"
    server.write_text(server.read_text() + "// a source change\n")
    commit(checkout, "source change")
    paas.push(checkout)
    assert step_cached(paas.builder_log(app), "RUN npm ci --no-audit --no-fund --omit=dev"), paas.builder_log(app)
