"""Build cgroups: where build limits become kernel limits, and kernel counters become a named limit.

Owns finding this host's cgroup layout, (re)creating a build's parent cgroup with the app's limits
written into it, reading its counters before and after a build, draining what a cancelled build
left in it, and naming the limit a failed build hit. Both builders go through here: the legacy
builder's RUN containers live below a per-app parent (`cgroupparent`), BuildKit's below the
engine's shared `docker/buildkit` (see build/builders.py). Parsing and naming are pure functions.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

CONTROLLERS = ("memory", "pids", "cpu")
CPU_PERIOD = 100_000  # microseconds; the kernel's and Docker's default CFS period
BUILDS_ROOT = "minipaas-builds"  # legacy builds: <root>/<home hash>-<app>, one per app
BUILDKIT = "docker/buildkit"  # where the engine's BuildKit puts every RUN step, for every build

# The limit names are the app settings users raise (apps.SETTINGS).
MEMORY, PIDS, TIMEOUT = "build-memory", "build-pids", "build-timeout"


@dataclass(frozen=True)
class BuildLimits:
    memory: str  # as set, e.g. "2g"
    cpus: float
    pids: int
    timeout: int  # seconds

    @property
    def memory_bytes(self) -> int:
        return parse_size(self.memory)


@dataclass(frozen=True)
class Layout:
    """Where each controller's hierarchy is mounted (v2: one tree for all of them)."""

    version: int
    roots: dict[str, Path]
    # Every cgroup hierarchy mounted (v1: blkio, devices, ... too): the engine's runc creates a
    # `cgroupparent` in each, so each is cleaned up with it.
    hierarchies: tuple[Path, ...] = ()


@dataclass(frozen=True)
class Counters:
    oom_kills: int = 0  # memory.oom_control / memory.events: oom_kill
    oom_events: int = 0  # v1 only: OOM notifications of the cgroup's own limit (see OomWatch)
    pids_max_events: int = 0  # pids.events: max (forks refused)
    pids_peak: int = 0  # pids.peak: the most processes at once


# -- pure parsing and naming ---------------------------------------------------------------

def parse_size(text: str) -> int:
    """`512m`, `2g`, `64k` (or plain bytes) as bytes."""
    match = re.fullmatch(r"([0-9]+)([kmg]?)", text.strip().lower())
    if not match:
        raise ValueError(f"not a size: {text!r}")
    return int(match.group(1)) * {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[match.group(2)]


def format_size(size: int) -> str:
    """Bytes in the largest unit that divides them: 1073741824 -> `1g`."""
    for unit, factor in (("g", 1024**3), ("m", 1024**2), ("k", 1024)):
        if size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)


def parse_keyed(text: str) -> dict[str, int]:
    """`key value` lines (memory.oom_control, memory.events, pids.events) as a dict."""
    values = {}
    for line in text.splitlines():
        key, _, value = line.strip().partition(" ")
        if key and value.strip().lstrip("-").isdigit():
            values[key] = int(value)
    return values


def parse_mountinfo(text: str, version: int) -> Layout | None:
    """The hierarchies the memory, pids and cpu controllers are mounted at, from /proc/self/mountinfo.

    Only mounts of a hierarchy's root count: a cgroup namespace's view would put paths elsewhere.
    """
    roots: dict[str, Path] = {}
    hierarchies: list[Path] = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 5 or len(tail) < 3 or fields[3] != "/":
            continue
        mount_point, fstype, options = Path(fields[4]), tail[0], tail[2].split(",")
        if version == 2 and fstype == "cgroup2":
            return Layout(2, dict.fromkeys(CONTROLLERS, mount_point), (mount_point,))
        if version == 1 and fstype in ("cgroup", "cgroup2"):
            hierarchies.append(mount_point)
        if version == 1 and fstype == "cgroup":
            for controller in CONTROLLERS:
                if controller in options:
                    roots.setdefault(controller, mount_point)
    if version == 1 and all(c in roots for c in CONTROLLERS):
        return Layout(1, roots, tuple(hierarchies))
    return None


def limit_hit(before: Counters | None, after: Counters | None, *, pids_limit: int, timed_out: bool,
              exit_code: int | None, memory_per_step: bool = False) -> str | None:
    """Which limit a failed build ran into, from its cgroup's counters; None when none did.

    Without counters (a layout minipaas cannot limit) exit code 137 (SIGKILL, the OOM killer's
    signal) is taken as the memory limit only where each step had one (`memory_per_step`).
    """
    if timed_out:
        return TIMEOUT
    if before is None or after is None:
        return MEMORY if memory_per_step and exit_code == 137 else None
    if after.oom_kills > before.oom_kills or after.oom_events > before.oom_events:
        return MEMORY
    # v1 counts refused forks in the forking process's own cgroup, gone with the step; the parent's
    # peak reaching its limit (in a cgroup fresh for this build) is what remains.
    if after.pids_max_events > before.pids_max_events or (
            after.pids_peak >= pids_limit > before.pids_peak):
        return PIDS
    return None


def failure_message(limit: str, limits: BuildLimits, app: str) -> str:
    """The one line a push that ran into `limit` is rejected with."""
    if limit == MEMORY:
        what, more = f"ran out of memory ({MEMORY} {limits.memory})", format_size(2 * limits.memory_bytes)
    elif limit == PIDS:
        what, more = f"hit its process limit ({PIDS} {limits.pids})", str(2 * limits.pids)
    else:
        what, more = f"took longer than {TIMEOUT} ({limits.timeout}s)", str(2 * limits.timeout)
    return f"the build {what}; raise it with `minipaas settings:set {app} {limit} {more}`"


def app_cgroup(home: Path, app: str) -> str:
    """The legacy builder's parent cgroup for an app of this minipaas home (homes share the host)."""
    return f"{BUILDS_ROOT}/{hashlib.sha256(str(home).encode()).hexdigest()[:8]}-{app}"


# -- the cgroup filesystem -----------------------------------------------------------------

def host_layout(version: int) -> Layout | None:
    """This host's layout for the engine's cgroup version, when minipaas (root) can write to it."""
    if os.geteuid() != 0:
        return None
    try:
        text = Path("/proc/self/mountinfo").read_text()
    except OSError:
        return None
    layout = parse_mountinfo(text, version)
    if layout and version == 2:
        root = layout.roots["memory"]
        available = set((root / "cgroup.controllers").read_text().split())
        if not set(CONTROLLERS) <= available:
            return None
    return layout


class Cgroup:
    """One cgroup path (`minipaas-builds/ab12cd34-web`) in each controller's hierarchy."""

    def __init__(self, layout: Layout, name: str) -> None:
        self.layout, self.name = layout, name.strip("/")

    def dir(self, controller: str) -> Path:
        return self.layout.roots[controller] / self.name

    def dirs(self) -> list[Path]:
        return list(dict.fromkeys(self.dir(c) for c in CONTROLLERS))

    def all_dirs(self) -> list[Path]:
        """Its directory in every hierarchy, the limited ones first."""
        return list(dict.fromkeys([*self.dirs(), *(root / self.name for root in self.layout.hierarchies)]))

    def recreate(self) -> None:
        """Empty and fresh when nothing runs in it (counters and peaks start at zero), else as it is."""
        for folder in self.all_dirs():
            if folder.is_dir():
                for child in _children(folder):
                    _rmdir(child)  # empty leftovers only; a busy one stays
                _rmdir(folder)
        if self.layout.version == 2:
            root = self.layout.roots["memory"]
            parts = Path(self.name).parts
            # Controllers must be enabled in every ancestor, and in the cgroup itself for its children.
            for depth in range(len(parts) + 1):
                here = root.joinpath(*parts[:depth])
                here.mkdir(exist_ok=True)
                _write(here / "cgroup.subtree_control", " ".join(f"+{c}" for c in CONTROLLERS))
        else:
            for folder in self.dirs():
                folder.mkdir(parents=True, exist_ok=True)

    def limit(self, limits: BuildLimits | None) -> None:
        """Write the limits in (None: no limits, for the shared BuildKit cgroup between builds)."""
        memory = limits.memory_bytes if limits else None
        pids = str(limits.pids) if limits else "max"
        quota = int(limits.cpus * CPU_PERIOD) if limits else None
        if self.layout.version == 1:
            _set_memory_v1(self.dir("memory"), memory)
            _write(self.dir("pids") / "pids.max", pids)
            _write(self.dir("cpu") / "cpu.cfs_period_us", str(CPU_PERIOD))
            _write(self.dir("cpu") / "cpu.cfs_quota_us", str(quota if quota else -1))
        else:
            folder = self.dir("memory")
            _write(folder / "memory.max", str(memory) if memory else "max")
            if (folder / "memory.swap.max").exists():
                _write(folder / "memory.swap.max", "0" if memory else "max")
            _write(folder / "pids.max", pids)
            _write(folder / "cpu.max", f"{quota if quota else 'max'} {CPU_PERIOD}")

    def counters(self, watch: OomWatch | None = None) -> Counters:
        memory, pids = self.dir("memory"), self.dir("pids")
        events = "memory.oom_control" if self.layout.version == 1 else "memory.events"
        return Counters(
            oom_kills=parse_keyed(_read(memory / events)).get("oom_kill", 0),
            oom_events=watch.count() if watch else 0,
            pids_max_events=parse_keyed(_read(pids / "pids.events")).get("max", 0),
            pids_peak=int(_read(pids / "pids.peak").strip() or 0) if (pids / "pids.peak").exists() else 0,
        )

    def processes(self) -> list[int]:
        """Every process in the cgroup and below it."""
        found: list[int] = []
        for folder, _subdirs, _files in os.walk(self.dir("pids")):
            found += [int(p) for p in _read(Path(folder) / "cgroup.procs").split()]
        return found

    def children(self) -> list[str]:
        """Names of the cgroups below it (for the legacy builder: its RUN containers' ids)."""
        return [child.name for child in _children(self.dir("pids"))]

    def drain(self, wait: float) -> list[int]:
        """Wait up to `wait` s for its processes to end, then kill what is left; returns those killed."""
        deadline = time.monotonic() + wait
        while self.processes() and time.monotonic() < deadline:
            time.sleep(0.1)
        left = self.processes()
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while self.processes() and time.monotonic() < deadline:
            time.sleep(0.05)
        return left

    def remove(self, wait: float = 10) -> None:
        """Remove it (and the empty cgroups below it) once the engine has removed its containers',
        from every hierarchy."""
        deadline = time.monotonic() + wait
        for folder in self.all_dirs():
            while folder.is_dir():
                for child in _children(folder):
                    _rmdir(child)
                if _rmdir(folder) or time.monotonic() > deadline:
                    break
                time.sleep(0.05)


class OomWatch:
    """cgroup v1: counts OOM events of one cgroup's own limit through an eventfd (cgroup.event_control).

    v1 counts `oom_kill` in the killed process's cgroup, which the engine removes with the RUN
    step's container; the notification is sent to the cgroup whose limit was hit, our parent.
    """

    def __init__(self, memory_dir: Path) -> None:
        self._seen = 0
        self._fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        control = os.open(memory_dir / "memory.oom_control", os.O_RDONLY | os.O_CLOEXEC)
        try:
            _write(memory_dir / "cgroup.event_control", f"{self._fd} {control}")
        finally:
            os.close(control)

    def count(self) -> int:
        with contextlib.suppress(BlockingIOError):
            self._seen += os.eventfd_read(self._fd)
        return self._seen

    def close(self) -> None:
        os.close(self._fd)


@contextlib.contextmanager
def watching(cgroup: Cgroup) -> Iterator[OomWatch | None]:
    watch = OomWatch(cgroup.dir("memory")) if cgroup.layout.version == 1 else None
    try:
        yield watch
    finally:
        if watch:
            watch.close()


def _children(folder: Path) -> list[Path]:
    try:
        return [p for p in folder.iterdir() if p.is_dir()]
    except FileNotFoundError:
        return []


def _rmdir(folder: Path) -> bool:
    try:
        folder.rmdir()
        return True
    except FileNotFoundError:
        return True
    except OSError:
        return False  # processes or child cgroups still in it


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


def _write(path: Path, value: str) -> None:
    with open(path, "w") as handle:
        handle.write(value)


def _set_memory_v1(folder: Path, limit: int | None) -> None:
    """memory.limit_in_bytes, and memsw (memory + swap) to the same: no swapping around the limit.

    memsw may never be below the memory limit, so the order depends on the direction of the change.
    """
    value = str(limit) if limit else "-1"
    memsw = folder / "memory.memsw.limit_in_bytes"
    if not memsw.exists():  # swap accounting off
        _write(folder / "memory.limit_in_bytes", value)
        return
    try:
        _write(folder / "memory.limit_in_bytes", value)
        _write(memsw, value)
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
        _write(memsw, value)
        _write(folder / "memory.limit_in_bytes", value)
