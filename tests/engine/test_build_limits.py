"""Build limits through real pushes, with each builder (the legacy one and BuildKit): a build step over
build-memory, build-pids or build-timeout is stopped and the push rejected with one line naming the
limit, the old release keeps serving, and nothing of the build is left running; a normal build works
under the default limits."""

from __future__ import annotations

import io
import json
import queue
import re
import subprocess
import tarfile
import threading
import time
import uuid
from pathlib import Path

import pytest

from minipaas.adapters import buildcgroups
from minipaas.state import locks
from tests.helpers.host import APPS, CA, EXAMPLE, Paas, commit, step_cached
from tests.helpers.pushes import assert_built_with


@pytest.fixture(params=["legacy", "buildkit"])
def builder(request: pytest.FixtureRequest, paas: Paas) -> str:
    paas.env["MINIPAAS_BUILDER"] = request.param
    return str(request.param)


def layout() -> buildcgroups.Layout:
    for version in (1, 2):
        found = buildcgroups.host_layout(version)
        if found is not None:
            return found
    raise AssertionError("these tests need the cgroup layout the build limits use")


def leftovers(paas: Paas, app: str, builder: str) -> list[str]:
    """What of the app's build is still there: processes in its cgroup, step containers, limits."""
    if builder == "buildkit":
        # BuildKit's cgroup is the host's, shared by every BuildKit build in turn (another test's push, a cluster
        # test's build): read it holding the host's build turn, when no other build may run in it.
        with locks.host_build_lock(lambda _line: None):
            shared = buildcgroups.Cgroup(layout(), buildcgroups.BUILDKIT)
            found = [f"process {pid} in {buildcgroups.BUILDKIT}" for pid in shared.processes()]
            if (shared.dir("pids") / "pids.max").read_text().strip() != "max":
                found.append(f"{buildcgroups.BUILDKIT} is still limited")
        return found
    name = buildcgroups.app_cgroup(paas.home, app)
    found = [f"cgroup {folder}" for folder in buildcgroups.Cgroup(layout(), name).all_dirs() if folder.exists()]
    ids = subprocess.run(["docker", "ps", "-aq", "--no-trunc"], capture_output=True, text=True).stdout.split()
    parents = subprocess.run(["docker", "inspect", "--format", "{{.Id}} {{.HostConfig.CgroupParent}}", *ids],
                             capture_output=True, text=True).stdout if ids else ""
    return found + [f"container {line}" for line in parents.splitlines() if line.endswith(f" /{name}")]


def rejection(output: str) -> list[str]:
    """The hook's `!` lines: what the pusher is told the push failed of."""
    return [line.split("!", 1)[1].strip() for line in output.splitlines() if line.startswith("remote: !")]


@pytest.mark.parametrize(("mode", "setting", "value", "what", "raised"), [
    pytest.param("memory", "build-memory", "64m", "the build ran out of memory (build-memory 64m)", "128m",
                 id="memory"),
    pytest.param("pids", "build-pids", "32", "the build hit its process limit (build-pids 32)", "64", id="pids"),
    # 15 s: the build reaches its sleeping step well within it, also on a busy engine (at 5 s a loaded CI machine
    # once gave the legacy builder no time to print its first step).
    pytest.param("sleep", "build-timeout", "15", "the build took longer than build-timeout (15s)", "30",
                 id="timeout"),
])
def test_a_build_over_a_limit_is_rejected_with_one_line_naming_it(
        paas: Paas, builder: str, mode: str, setting: str, value: str, what: str, raised: str) -> None:
    app = paas.new_app("lim")
    checkout = paas.checkout(app, APPS / "build-hog")
    paas.push(checkout)
    assert_built_with(builder, paas, app)
    assert paas.get(app).body == "built in mode ok\n"

    paas.run("settings:set", app, setting, value)
    (checkout / "hog.json").write_text(json.dumps({"mode": mode}) + "\n")
    commit(checkout, f"a build step that goes over {setting}")
    started = time.monotonic()
    output = paas.push(checkout, expect_ok=False).stderr
    took = time.monotonic() - started

    line = f"{what}; raise it with `minipaas settings:set {app} {setting} {raised}`"
    assert rejection(output) == [line, "push rejected; the previous release keeps serving"], output
    assert_built_with(builder, paas, app)
    assert paas.get(app).body == "built in mode ok\n"
    history = json.loads(paas.run("releases", app, "--json").stdout)
    assert [(r["status"], r["message"]) for r in history] == [("failed", line), ("live", "")]
    # The release record keeps the build log, with the verdict at its end.
    info = paas.run("releases:info", app, "2").stdout
    assert "RUN node hog.js" in info and f"minipaas: {line}" in info
    assert leftovers(paas, app, builder) == []
    assert len(paas.containers()) == 1  # the live release's container, nothing of the build
    if mode == "sleep":
        assert took < 60, f"the push took {took:.0f}s: the 120 s step was not cancelled"


def test_a_normal_build_works_under_the_default_limits(paas: Paas, builder: str) -> None:
    app = paas.new_app("ok")
    settings = json.loads(paas.run("settings", app, "--json").stdout)
    assert (settings["build-memory"], settings["build-pids"], settings["build-timeout"]) == ("2g", "2048", "900")
    assert float(settings["build-cpus"]) >= 1
    checkout = paas.checkout(app, EXAMPLE)
    paas.push(checkout)
    assert_built_with(builder, paas, app)
    assert "Hello from minipaas" in paas.get(app).body
    # npm ci reached the registry through the build CA: a BuildKit secret, in no layer; the legacy builder
    # has no secrets and copies it into the build stage only.
    if Path(CA).exists():
        log = paas.builder_log(app)
        if builder == "buildkit":
            assert "--mount=type=secret,id=minipaas-build-ca " in log and "COPY minipaas-build-ca.pem" not in log
        else:
            assert "COPY minipaas-build-ca.pem" in log
    files = subprocess.run(["docker", "run", "--rm", "--entrypoint", "sh", paas.image(app, 1), "-c",
                            "ls /usr/local/share; env"], capture_output=True, text=True, check=True).stdout
    assert "minipaas-build-ca.pem" not in files and "NODE_EXTRA_CA_CERTS" not in files

    server = checkout / "server.js"
    server.write_text(server.read_text().replace("from minipaas", "from a warm build"))
    commit(checkout, "source-only change")
    paas.push(checkout)
    assert "from a warm build" in paas.get(app).body
    log = paas.builder_log(app)
    assert step_cached(log, "RUN npm ci"), log  # the dependency step came from the cache
    report = paas.run("report").stdout
    assert ("builder: BuildKit, through /" if builder == "buildkit" else "builder: the engine's legacy builder") \
        in report
    assert "build limits: memory, CPUs, processes and time, per app" in report
    assert leftovers(paas, app, builder) == []


def test_build_settings_are_validated(paas: Paas) -> None:
    app = paas.new_app()
    for key, bad in (("build-memory", "16m"), ("build-memory", "2GB"), ("build-cpus", "0"), ("build-pids", "8"),
                     ("build-timeout", "0"), ("build-timeout", "3601")):
        result = paas.run("settings:set", app, key, bad, check=False)
        assert result.returncode == 1 and len(result.stderr.splitlines()) == 1, (key, bad, result.stderr)
        assert result.stderr.startswith(f"error: invalid value {bad!r} for {key}")
    paas.run("settings:set", app, "build-cpus", "1.5")
    assert json.loads(paas.run("settings", app, "--json").stdout)["build-cpus"] == "1.5"


def test_init_finds_the_builder_once_and_writes_it_down(paas: Paas) -> None:
    written = (paas.home / "settings.toml").read_text()
    assert re.search(r'^builder = "(legacy|buildkit:/.+|buildx:/.+)"$', written, re.M), written
    paas.env["MINIPAAS_BUILDER"] = "legacy"
    assert "Builder: the engine's legacy builder" in paas.run("init").stdout
    assert 'builder = "legacy"' in (paas.home / "settings.toml").read_text()
    paas.env["MINIPAAS_BUILDER"] = "podman"
    refused = paas.run("init", check=False)
    assert refused.returncode == 1 and "MINIPAAS_BUILDER must be" in refused.stderr


def test_buildkit_builds_take_turns_on_the_host_and_a_waiting_push_says_so(paas: Paas) -> None:
    paas.env["MINIPAAS_BUILDER"] = "buildkit"
    app = paas.new_app("turn")
    checkout = paas.checkout(app, APPS / "build-hog")
    lines: queue.Queue[str] = queue.Queue()
    with locks.held(locks.host_lock(locks.HOST_BUILD_LOCK)):  # as another app's BuildKit build would
        pusher = subprocess.Popen(["git", "push", "paas", "master"], cwd=checkout, env=paas.env,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert pusher.stdout is not None
        reader = threading.Thread(target=lambda: [lines.put(line) for line in pusher.stdout], daemon=True)
        reader.start()
        seen: list[str] = []
        deadline = time.monotonic() + 120
        while not any("Waiting for another app's build to finish..." in line for line in seen):
            assert time.monotonic() < deadline, "".join(seen)
            seen.append(lines.get(timeout=max(0.0, deadline - time.monotonic())))
        assert pusher.poll() is None and not any("hog.js" in line for line in seen)  # no step ran meanwhile
    assert pusher.wait(timeout=300) == 0
    reader.join(timeout=10)
    output = "".join(seen) + "".join(lines.queue)
    assert "The other build finished; going on." in output
    assert_built_with("buildkit", paas, app)
    assert paas.get(app).body == "built in mode ok\n"


def test_where_the_engine_cgroups_cannot_be_limited_the_legacy_builder_limits_each_step(
        paas: Paas, monkeypatch: pytest.MonkeyPatch) -> None:
    """The systemd cgroup driver (or a remote engine): no parent cgroup minipaas could limit. auto then
    picks the legacy builder, whose API limits each step's memory and CPUs, and `report` says so."""
    from minipaas.build import builderchoice, builders
    from minipaas.state import settings

    why = "the engine uses the systemd cgroup driver, whose cgroups minipaas does not manage"
    monkeypatch.setattr(builderchoice, "enforcement", lambda: builderchoice.Enforcement(None, why))
    builderchoice.builder.cache_clear()
    host = settings.load({**paas.env, "MINIPAAS_BUILDER": "auto"})
    try:
        assert builderchoice.builder(host).kind == "legacy"
        assert builderchoice.describe(host)[1] == (
            f"build limits: time, and memory and CPUs per build step; no process limit ({why})")
        dockerfile = (f"FROM minipaas/node:26\nRUN node -e 'Buffer.alloc(256 * 1024 * 1024, 1)' "
                      f"# {uuid.uuid4().hex}\n").encode()
        context = io.BytesIO()
        with tarfile.open(fileobj=context, mode="w") as tar:
            info = tarfile.TarInfo("Dockerfile")
            info.size = len(dockerfile)
            tar.addfile(info, io.BytesIO(dockerfile))
        context.seek(0)
        app = f"t-{uuid.uuid4().hex[:8]}"
        outcome, hit = builders.run_builder(host, app, context, tag=f"minipaas/{app}:1", progress=lambda _: None,
                                          limits=buildcgroups.BuildLimits(memory="64m", cpus=1.0, pids=64,
                                                                          timeout=120))
    finally:
        builderchoice.builder.cache_clear()
    assert (outcome.exit_code, hit) == (137, buildcgroups.MEMORY), outcome.log
    assert leftovers(paas, app, "legacy") == []
