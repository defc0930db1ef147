"""Build limits without Docker: cgroup counters and layouts parsed, the limit a build hit named, the
builder found among docker CLIs, and (as root, on cgroupfs) a real cgroup's limits and counters."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from minipaas.adapters import buildcgroups
from minipaas.adapters.buildcgroups import MEMORY, PIDS, TIMEOUT, BuildLimits, Counters
from minipaas.build import buildkit
from minipaas.errors import InvalidInput
from minipaas.state import settings

V1_MOUNTINFO = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime shared:9 - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
V2_MOUNTINFO = "30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate\n"
LIMITS = BuildLimits(memory="256m", cpus=1.0, pids=64, timeout=20)


def test_mountinfo_gives_each_controllers_hierarchy() -> None:
    v1 = buildcgroups.parse_mountinfo(V1_MOUNTINFO, 1)
    assert v1 is not None and v1.version == 1
    assert v1.roots == {"memory": Path("/sys/fs/cgroup/memory"), "pids": Path("/sys/fs/cgroup/pids"),
                        "cpu": Path("/sys/fs/cgroup/cpu,cpuacct")}
    # Every hierarchy is known, for cleaning up what the engine creates in each (not the tmpfs).
    assert v1.hierarchies == tuple(Path(f"/sys/fs/cgroup/{name}") for name in (
        "cpu,cpuacct", "memory", "pids", "systemd", "unified"))
    v2 = buildcgroups.parse_mountinfo(V2_MOUNTINFO, 2)
    assert v2 is not None and set(v2.roots.values()) == {Path("/sys/fs/cgroup")}
    # v2 asked of a v1 host finds its empty cgroup2 mount; a missing controller means no layout.
    unified = Path("/sys/fs/cgroup/unified")
    assert buildcgroups.parse_mountinfo(V1_MOUNTINFO, 2) == buildcgroups.Layout(
        2, dict.fromkeys(buildcgroups.CONTROLLERS, unified), (unified,))
    without_pids = "\n".join(line for line in V1_MOUNTINFO.splitlines() if "pids" not in line)
    assert buildcgroups.parse_mountinfo(without_pids, 1) is None
    # A mount of a cgroup below the hierarchy's root (a cgroup namespace's view) does not count.
    nested = V1_MOUNTINFO.replace("0:32 / /sys/fs/cgroup/memory", "0:32 /docker/abc /sys/fs/cgroup/memory")
    assert buildcgroups.parse_mountinfo(nested, 1) is None


def test_counter_files_parse() -> None:
    assert buildcgroups.parse_keyed("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n") == {
        "oom_kill_disable": 0, "under_oom": 0, "oom_kill": 3}
    assert buildcgroups.parse_keyed("low 0\nhigh 0\nmax 12\noom 2\noom_kill 1\noom_group_kill 0\n")["oom_kill"] == 1
    assert buildcgroups.parse_keyed("max 7\n") == {"max": 7}
    assert buildcgroups.parse_keyed("") == {}


def test_sizes() -> None:
    assert buildcgroups.parse_size("2g") == 2 * 1024**3
    assert buildcgroups.parse_size("64m") == 64 * 1024**2
    assert buildcgroups.parse_size("512k") == 512 * 1024
    assert buildcgroups.parse_size("1000") == 1000
    with pytest.raises(ValueError):
        buildcgroups.parse_size("2 GB")
    assert buildcgroups.format_size(128 * 1024**2) == "128m"
    assert buildcgroups.format_size(4 * 1024**3) == "4g"
    assert buildcgroups.format_size(1536 * 1024) == "1536k"


@pytest.mark.parametrize(("before", "after", "timed_out", "code", "expected"), [
    pytest.param(Counters(), Counters(oom_kills=1), False, 137, MEMORY, id="oom-kill-counted"),
    pytest.param(Counters(oom_events=2), Counters(oom_events=3), False, 1, MEMORY, id="v1-oom-notification"),
    pytest.param(Counters(pids_max_events=4), Counters(pids_max_events=5), False, 1, PIDS, id="forks-refused"),
    pytest.param(Counters(), Counters(pids_peak=64), False, 1, PIDS, id="peak-reached-limit"),
    pytest.param(Counters(pids_peak=64), Counters(pids_peak=64), False, 1, None, id="peak-from-before"),
    pytest.param(Counters(), Counters(pids_peak=63), False, 1, None, id="peak-below-limit"),
    pytest.param(Counters(), Counters(oom_kills=1), True, None, TIMEOUT, id="timeout-first"),
    pytest.param(Counters(), Counters(), False, 137, None, id="137-without-counters-is-no-proof"),
    pytest.param(Counters(oom_kills=2), Counters(oom_kills=2), False, 1, None, id="plain-failure"),
])
def test_the_limit_hit_is_read_from_counters(before: Counters, after: Counters, timed_out: bool,
                                             code: int | None, expected: str | None) -> None:
    assert buildcgroups.limit_hit(before, after, pids_limit=64, timed_out=timed_out, exit_code=code) == expected


def test_without_counters_exit_code_137_hints_memory_only_where_each_step_had_a_limit() -> None:
    hit = buildcgroups.limit_hit
    assert hit(None, None, pids_limit=64, timed_out=False, exit_code=137, memory_per_step=True) == MEMORY
    assert hit(None, None, pids_limit=64, timed_out=False, exit_code=137) is None
    assert hit(None, None, pids_limit=64, timed_out=False, exit_code=1, memory_per_step=True) is None
    assert hit(None, None, pids_limit=64, timed_out=True, exit_code=None) == TIMEOUT


def test_failure_messages_name_the_limit_and_how_to_raise_it() -> None:
    assert buildcgroups.failure_message(MEMORY, LIMITS, "web") == (
        "the build ran out of memory (build-memory 256m); raise it with `minipaas settings:set web build-memory 512m`")
    assert buildcgroups.failure_message(PIDS, LIMITS, "web") == (
        "the build hit its process limit (build-pids 64); raise it with `minipaas settings:set web build-pids 128`")
    assert buildcgroups.failure_message(TIMEOUT, LIMITS, "web") == (
        "the build took longer than build-timeout (20s); raise it with `minipaas settings:set web build-timeout 40`")


def test_app_cgroups_differ_per_home_and_app() -> None:
    one = buildcgroups.app_cgroup(Path("/var/lib/minipaas"), "web")
    assert one.startswith("minipaas-builds/") and one.endswith("-web")
    assert one == buildcgroups.app_cgroup(Path("/var/lib/minipaas"), "web")
    assert one != buildcgroups.app_cgroup(Path("/tmp/other"), "web")


# -- the builder ---------------------------------------------------------------------------

def fake_docker(folder: Path, version: str, *, buildx: bool = False) -> Path:
    """A `docker` that answers `version --format ...` and, with `buildx`, `buildx version`."""
    folder.mkdir(parents=True)
    cli = folder / "docker"
    cli.write_text(f"""#!{sys.executable}
import sys
if sys.argv[1:3] == ["buildx", "version"]:
    sys.exit(0 if {buildx} else 1)
if sys.argv[1] == "version":
    print("{version}")
    sys.exit(0)
sys.exit(2)
""")
    cli.chmod(0o755)
    return cli


def test_auto_takes_the_first_cli_on_path_that_offers_buildkit(tmp_path: Path) -> None:
    new = fake_docker(tmp_path / "new", "28.2.2")  # no buildx plugin: its `docker build` is the legacy one
    old = fake_docker(tmp_path / "old", "20.10.24+dfsg1")  # BuildKit built in
    plugin = fake_docker(tmp_path / "plugin", "27.0.1", buildx=True)
    path = os.pathsep.join(str(p.parent) for p in (new, old, plugin))
    assert buildkit.find("auto", path=path) == buildkit.Builder("buildkit", str(old))
    assert buildkit.find("buildkit", path=path).spec == f"buildkit:{old}"
    plugin_first = os.pathsep.join(str(p.parent) for p in (new, plugin, old))
    assert buildkit.find("auto", path=plugin_first).spec == f"buildx:{plugin}"
    # Where only the legacy builder can apply limits, auto prefers it; an explicit choice stands.
    assert buildkit.find("auto", path=path, prefer_legacy=True).spec == "legacy"
    assert buildkit.find("buildkit", path=path, prefer_legacy=True).kind == "buildkit"
    assert buildkit.find(f"buildx:{plugin}", path="").spec == f"buildx:{plugin}"
    assert buildkit.find("legacy", path=path).spec == "legacy"


def test_without_buildkit_auto_falls_back_and_buildkit_is_refused(tmp_path: Path) -> None:
    new = fake_docker(tmp_path / "new", "28.2.2")
    assert buildkit.find("auto", path=str(new.parent)).spec == "legacy"
    with pytest.raises(InvalidInput, match="no docker CLI on PATH offers BuildKit"):
        buildkit.find("buildkit", path=str(new.parent))


def test_builder_specs_and_the_host_setting() -> None:
    assert buildkit.parse("buildkit:/usr/bin/docker").argv("minipaas/web:3", Path("/tmp/iid"))[:2] == [
        "/usr/bin/docker", "build"]
    assert buildkit.parse("buildx:/usr/bin/docker").argv("t", Path("/i"))[1:6] == [
        "buildx", "build", "--builder", "default", "--load"]
    assert buildkit.client_major("20.10.24+dfsg1") == 20 and buildkit.client_major("") is None
    for bad in ("buildkit:docker", "podman", "legacy:/x"):
        with pytest.raises(InvalidInput):
            buildkit.parse(bad)
    env = {"MINIPAAS_HOME": "/nonexistent-minipaas-home"}
    assert settings.load(env).builder == "auto"
    assert settings.load({**env, "MINIPAAS_BUILDER": "buildx:/usr/bin/docker"}).builder == "buildx:/usr/bin/docker"
    with pytest.raises(InvalidInput, match="MINIPAAS_BUILDER must be"):
        settings.load({**env, "MINIPAAS_BUILDER": "kaniko"})


# -- a real cgroup (root, cgroupfs) --------------------------------------------------------

def _layout() -> buildcgroups.Layout:
    for version in (1, 2):
        layout = buildcgroups.host_layout(version)
        if layout is not None and os.access(layout.roots["memory"], os.W_OK):
            return layout
    pytest.skip("needs root and writable memory, pids and cpu cgroups")


def _run_in(cgroup: buildcgroups.Cgroup, code: str) -> int:
    """Run Python in a child cgroup of `cgroup`, as the engine runs a build step below its parent."""
    step = buildcgroups.Cgroup(cgroup.layout, f"{cgroup.name}/step")
    for folder in step.dirs():
        folder.mkdir(exist_ok=True)

    def enter() -> None:
        for folder in step.dirs():
            (folder / "cgroup.procs").write_text(str(os.getpid()))

    result = subprocess.run([sys.executable, "-c", code], preexec_fn=enter, capture_output=True)
    # A process the code left behind is this machine's PID 1's to reap, which may take a while: the cgroup can
    # only be removed once its last process is gone and reaped (EBUSY before; seen under load in README's run).
    deadline = time.monotonic() + 30
    for folder in step.dirs():
        while True:
            try:
                folder.rmdir()
                break
            except OSError as exc:
                assert exc.errno == errno.EBUSY and time.monotonic() < deadline, f"{folder}: {exc}"
                time.sleep(0.05)
    return result.returncode


@pytest.fixture
def cgroup() -> buildcgroups.Cgroup:
    group = buildcgroups.Cgroup(_layout(), f"{buildcgroups.BUILDS_ROOT}/unit-{uuid.uuid4().hex[:8]}")
    group.recreate()
    yield group
    group.drain(wait=5)
    group.remove()
    assert not any(folder.exists() for folder in group.all_dirs())


def test_a_real_cgroup_counts_an_oom_kill_below_it_as_the_memory_limit(cgroup: buildcgroups.Cgroup) -> None:
    limits = BuildLimits(memory="64m", cpus=1.0, pids=64, timeout=60)
    cgroup.limit(limits)
    assert (cgroup.dir("pids") / "pids.max").read_text().strip() == "64"
    with buildcgroups.watching(cgroup) as watch:
        before = cgroup.counters(watch)
        code = _run_in(cgroup, "b = bytearray(256 * 1024 * 1024)")
        after = cgroup.counters(watch)
    assert code == -9
    assert buildcgroups.limit_hit(before, after, pids_limit=64, timed_out=False, exit_code=137) == MEMORY


def test_a_real_cgroup_counts_refused_forks_below_it_as_the_process_limit(cgroup: buildcgroups.Cgroup) -> None:
    cgroup.limit(BuildLimits(memory="1g", cpus=1.0, pids=16, timeout=60))
    before = cgroup.counters()
    spawn = ("import subprocess, sys\nchildren = []\ntry:\n    for _ in range(40):\n"
             "        children.append(subprocess.Popen(['sleep', '5']))\nexcept OSError:\n    sys.exit(3)\n"
             "finally:\n    [c.kill() for c in children]\n    [c.wait() for c in children]")
    assert _run_in(cgroup, spawn) == 3
    after = cgroup.counters()
    assert buildcgroups.limit_hit(before, after, pids_limit=16, timed_out=False, exit_code=3) == PIDS
    # And a build that stays within the limits names none.
    cgroup.recreate()
    cgroup.limit(BuildLimits(memory="1g", cpus=1.0, pids=16, timeout=60))
    before = cgroup.counters()
    assert _run_in(cgroup, "import sys; sys.exit(1)") == 1
    assert buildcgroups.limit_hit(before, cgroup.counters(), pids_limit=16, timed_out=False, exit_code=1) is None


def test_limits_are_written_and_lifted(cgroup: buildcgroups.Cgroup) -> None:
    cgroup.limit(BuildLimits(memory="256m", cpus=1.5, pids=64, timeout=20))
    if cgroup.layout.version == 1:
        assert int((cgroup.dir("memory") / "memory.limit_in_bytes").read_text()) == 256 * 1024**2
        assert (cgroup.dir("cpu") / "cpu.cfs_quota_us").read_text().strip() == "150000"
        assert (cgroup.dir("cpu") / "cpu.cfs_period_us").read_text().strip() == "100000"
    else:
        assert (cgroup.dir("memory") / "memory.max").read_text().strip() == str(256 * 1024**2)
        assert (cgroup.dir("cpu") / "cpu.max").read_text().split() == ["150000", "100000"]
    cgroup.limit(BuildLimits(memory="2g", cpus=1.0, pids=64, timeout=20))  # raised: memsw first on v1
    if cgroup.layout.version == 1:
        assert int((cgroup.dir("memory") / "memory.limit_in_bytes").read_text()) == 2 * 1024**3
    cgroup.limit(None)
    assert (cgroup.dir("pids") / "pids.max").read_text().strip() == "max"
    if cgroup.layout.version == 1:
        assert int((cgroup.dir("memory") / "memory.limit_in_bytes").read_text()) > 2**60
        assert (cgroup.dir("cpu") / "cpu.cfs_quota_us").read_text().strip() == "-1"


def test_the_legacy_builders_stage_images_are_read_from_its_log() -> None:
    from minipaas.adapters.engine import BuildOutcome

    log = ["Step 1/5 : FROM minipaas/node:26 AS build", " ---> 1111aaaa2222", "Step 2/5 : RUN npm ci",
           " ---> Using cache", " ---> 3333bbbb4444", "Step 3/5 : FROM minipaas/node:26 AS test",
           " ---> 1111aaaa2222", "Step 4/5 : RUN npm test", " ---> Running in 99ff", " ---> 5555cccc6666",
           "Step 5/5 : FROM minipaas/node:26", " ---> 1111aaaa2222", "Successfully built 7777dddd8888"]
    assert BuildOutcome("sha256:x", log).stage_images() == ["3333bbbb4444", "5555cccc6666"]
    assert BuildOutcome("sha256:x", ["#1 [internal] load build definition"]).stage_images() == []
