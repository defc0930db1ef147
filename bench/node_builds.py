#!/usr/bin/env python3
"""Node builds with BuildKit against the legacy builder, and what BuildKit's cache mounts save.

  warm       push-to-live of examples/hello after a server.js-only change (real pushes), on an app
             whose first push is done, per builder (BuildKit, legacy);
  lockfile   the build of a commit whose lockfile (with `resolved` URLs, as npm writes it) gained one
             dependency (is-number), on an app whose previous push installed the rest: BuildKit
             with the node buildpack's cache mounts, BuildKit with the same Dockerfile without its
             cache mounts (`--mount=type=cache,...` removed; the secret stays), and the legacy
             builder, which has none. Each run is a
             fresh app (its own cache mounts) and a package.json no earlier run had (no layer
             cache); the three builds run in turn on the same commit, in a rotating order.
             The lockfile runs are made twice: against the npm registry as this host reaches it, and
             through a proxy of the bench's own that adds --latency-ms to every request (a distant
             registry: npm replaces registry.npmjs.org in the lockfile's URLs with .npmrc's registry).
The lockfile builds run in-process through builds.build (the push's own code), timed from the
`Building` line to `Built`, without any wait for another app's BuildKit build; the commit reaches the
app's repository on a branch that is not deployed.

    /opt/minipaas/venv/bin/python bench/node_builds.py [--runs 5] [--latency-ms 150] [--json out.json]
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import re
import ssl
import statistics
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from unittest import mock

from harness import (
    CA,
    BenchHost,
    Push,
    bench_host,
    bust_dependencies,
    commit,
    git,
    log,
    machine,
    new_marker,
    set_marker,
    table_row,
    timed_push,
)

ADDED = ("is-number", "7.0.0", "https://registry.npmjs.org/is-number/-/is-number-7.0.0.tgz",
         "sha512-41Cifkg6e8TylSpdtTpeLVMqvSBEVzTttHvERD741+pnZ8ANv0004MRL43QKPDlK9cGvNp6NZWZUBlbGXYxxng==")
VARIANTS = ("buildkit, cache mounts", "buildkit, no cache mounts", "legacy")
UPSTREAM = "https://registry.npmjs.org"


@dataclass
class Results:
    warm: dict[str, list[float]] = field(default_factory=lambda: {"buildkit": [], "legacy": []})
    lockfile: dict[str, list[float]] = field(default_factory=lambda: {v: [] for v in VARIANTS})
    distant: dict[str, list[float]] = field(default_factory=lambda: {v: [] for v in VARIANTS})
    requests: dict[str, list[int]] = field(default_factory=lambda: {v: [] for v in VARIANTS})  # distant registry
    notes: list[str] = field(default_factory=list)


class SlowRegistry:
    """A proxy to the npm registry on the Docker bridge's gateway that answers every request `latency` s
    late (the upstream's answer is fetched once and kept: only the added latency is measured)."""

    def __init__(self, latency: float) -> None:
        gateway = subprocess.run(["docker", "network", "inspect", "bridge", "--format",
                                  "{{(index .IPAM.Config 0).Gateway}}"], capture_output=True, text=True,
                                 check=True).stdout.strip()
        context = ssl.create_default_context(cafile=str(CA) if CA.exists() else None)
        kept: dict[str, bytes] = {}
        self.requests = 0
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                proxy.requests += 1
                if self.path not in kept:
                    with urllib.request.urlopen(UPSTREAM + self.path, context=context, timeout=60) as answer:
                        kept[self.path] = answer.read()
                time.sleep(latency)
                body = kept[self.path]
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer((gateway, 0), Handler)
        self.url = f"http://{gateway}:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def install_cached(lines: list[str]) -> bool | None:
    """Whether the build reused its install step, from minipaas' own line for it (`-----> npm ci ... (cached)`,
    the same for both builders); None when the output has no such line."""
    for line in lines:
        if re.match(r"-----> npm (ci|install)\b", line.strip()):
            return line.rstrip().endswith("(cached)")
    return None


def lock_wait(timed: list[tuple[float, str]]) -> float:
    """Seconds a build spent waiting for the host's BuildKit lock (another app's build), from its lines."""
    started = next((at for at, line in timed if "Waiting for another app's build" in line), None)
    resumed = next((at for at, line in timed if "The other build finished" in line), None)
    return resumed - started if started is not None and resumed is not None else 0.0


def push_retrying(checkout: Path, results: Results, what: str, **kwargs: object) -> Push:
    """A timed push, again (up to 3 times) when the legacy builder lost a cached intermediate image to an
    image removal of another host on this shared engine (`unknown parent image ID`): not what is measured."""
    for _attempt in range(3):
        push = timed_push(checkout, "master", **kwargs)  # type: ignore[arg-type]
        if push.returncode == 0 or "unknown parent image ID" not in push.text:
            break
        results.notes.append(f"{what}: pushed again after the engine lost an intermediate image")
    return push


def warm_pushes(host: BenchHost, builder: str, runs: int, results: Results) -> None:
    host.env["MINIPAAS_BUILDER"] = builder
    app = host.create_app(f"warm{builder[:2]}")
    checkout = host.checkout(app)
    commit(checkout, "initial")
    first = push_retrying(checkout, results, f"first push ({builder})", env=host.env)
    if first.returncode != 0:
        raise RuntimeError(f"the first push failed:\n{first.text}")
    for n in range(runs):
        marker = new_marker()
        set_marker(checkout, marker)
        commit(checkout, f"warm {n}")
        push = push_retrying(checkout, results, f"warm push {n} ({builder})", env=host.env, port=host.port,
                             app=app, marker=marker)
        if push.returncode != 0 or push.served is None:
            raise RuntimeError(f"warm push {n} ({builder}) failed or was not served:\n{push.text}")
        cached = install_cached([line for _, line in push.lines])
        if cached is not True:
            results.notes.append(f"warm push {n} ({builder}): `npm ci` was not reused")
        waited = lock_wait(push.lines)
        if waited:
            results.notes.append(f"warm push {n} ({builder}): {waited:.1f}s waiting for another app's build, "
                                 "not counted")
        results.warm[builder].append(push.served - waited)
        log(f"warm {builder} {n}: {push.served - waited:.2f}s")
        host.wait_retired(app)


def add_resolved(checkout: Path) -> None:
    """The lockfile as npm writes it by default, with each package's `resolved` URL. examples/hello's has
    none: npm then fetches every package's metadata to find its tarball, cache or not."""
    lock = json.loads((checkout / "package-lock.json").read_text())
    for path, entry in lock["packages"].items():
        if path:
            name = path.rsplit("node_modules/", 1)[1]
            entry.setdefault("resolved", f"{UPSTREAM}/{name}/-/{name.split('/')[-1]}-{entry['version']}.tgz")
    (checkout / "package-lock.json").write_text(json.dumps(lock, indent=2) + "\n")


def add_dependency(checkout: Path) -> None:
    """One more dependency in package.json and package-lock.json (v3), and a package.json no build had."""
    name, version, tarball, integrity = ADDED
    bust_dependencies(checkout)
    package = json.loads((checkout / "package.json").read_text())
    package["dependencies"][name] = version
    (checkout / "package.json").write_text(json.dumps(package, indent=2) + "\n")
    lock = json.loads((checkout / "package-lock.json").read_text())
    lock["packages"][""]["dependencies"][name] = version
    lock["packages"][f"node_modules/{name}"] = {"version": version, "resolved": tarball, "integrity": integrity}
    (checkout / "package-lock.json").write_text(json.dumps(lock, indent=2) + "\n")


def lockfile_builds(host: BenchHost, n: int, results: Results, into: dict[str, list[float]],
                    registry: SlowRegistry | None = None) -> None:
    from minipaas.build import buildpacks, builds
    from minipaas.errors import BuildFailed
    from minipaas.source.commit import read_commit
    from minipaas.state import settings as settings_mod

    host.env["MINIPAAS_BUILDER"] = "buildkit"
    app = host.create_app("lock")
    checkout = host.checkout(app)
    bust_dependencies(checkout)
    add_resolved(checkout)
    if registry:
        (checkout / ".npmrc").write_text(f"registry={registry.url}\n")
    commit(checkout, "initial, with its own package.json")
    first = push_retrying(checkout, results, f"lockfile run {n}, first push", env=host.env)
    if first.returncode != 0:
        raise RuntimeError(f"the first push failed:\n{first.text}")
    add_dependency(checkout)
    sha = commit(checkout, "one more dependency")
    git(checkout, "push", "-q", "paas", "master:refs/heads/bench")  # into the repository, not deployed

    real_render = buildpacks.render

    def without_cache_mounts(*args: object, **kwargs: object) -> str:
        return re.sub(r"--mount=type=cache,\S+ ", "", real_render(*args, **kwargs))  # type: ignore[arg-type]

    def build(builder: str, release: int, render: Callable[..., str]) -> float:
        settings = settings_mod.load({**host.env, "MINIPAAS_BUILDER": builder})
        timed: list[tuple[float, str]] = []
        for attempt in (1, 2, 3):
            timed.clear()
            try:
                with mock.patch.object(buildpacks, "render", render):
                    read = read_commit(settings.repo_path(app), sha)
                    built = builds.build(settings, app, release + 10 * attempt, builds.inspect(settings, app, read),
                                         lambda line: timed.append((time.monotonic(), line.strip())))
                break
            except BuildFailed as failed:  # see push_retrying
                if attempt == 3 or "unknown parent image ID" not in failed.message:
                    raise
                results.notes.append(f"lockfile run {n} ({builder}): built again after the engine lost an "
                                     "intermediate image")
        lines = [line for _, line in timed]
        cached = install_cached(lines)
        if cached is not False:
            results.notes.append(f"lockfile run {n} ({builder}, release {release}): `npm ci` was cached")
        waited = lock_wait(timed)
        if waited:
            results.notes.append(f"lockfile run {n} ({builder}): {waited:.1f}s waiting for another app's build, "
                                 "not counted")
        if os.environ.get("BENCH_VERBOSE"):
            start = timed[0][0]
            log("\n".join(f"{at - start:7.2f} {line}" for at, line in timed))
        return built.seconds - waited

    plans = [("buildkit, cache mounts", "buildkit", real_render),
             ("buildkit, no cache mounts", "buildkit", without_cache_mounts),
             ("legacy", "legacy", real_render)]
    for offset in range(len(plans)):
        name, builder, render = plans[(n + offset) % len(plans)]
        before = registry.requests if registry else 0
        seconds = build(builder, 100 + offset, render)
        if registry:
            results.requests[name].append(registry.requests - before)
        into[name].append(seconds)
        log(f"lockfile run {n}{' (distant registry)' if registry else ''}, {name}: {seconds:.2f}s")
    host.destroy_app(app)


def report(results: Results, runs: int, latency_ms: int) -> str:
    rows = ["| push | median s | min s | max s | runs | |", "| --- | --- | --- | --- | --- | --- |"]
    legacy = statistics.median(results.warm["legacy"]) if results.warm["legacy"] else None
    for builder in ("buildkit", "legacy"):
        values = results.warm[builder]
        ratio = f"{statistics.median(values) / legacy:.2f}× legacy" if legacy and values else ""
        rows.append(table_row(f"warm source-only push to live, {builder}", values, ratio))
    for where, measured in (("", results.lockfile), (f", registry +{latency_ms} ms", results.distant)):
        mounts = measured[VARIANTS[0]]
        base = statistics.median(mounts) if mounts else None
        for name in VARIANTS:
            values = measured[name]
            ratio = f"{statistics.median(values) / base:.2f}× with mounts" if base and values else ""
            if measured is results.distant and results.requests[name]:
                ratio += f"; {statistics.median(results.requests[name]):.0f} requests to the registry"
            rows.append(table_row(f"build after a lockfile change{where}, {name}", values, ratio))
    notes = "".join(f"\n- {note}" for note in results.notes)
    return f"{machine()}; {runs} runs each\n\n" + "\n".join(rows) + (f"\n\nNotes:{notes}" if notes else "") + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--latency-ms", type=int, default=150, help="added to each request of the distant registry")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--keep", action="store_true", help="keep the temp dir and its logs")
    args = parser.parse_args()
    results = Results()
    with bench_host(keep=args.keep) as host:
        for builder in ("buildkit", "legacy"):
            warm_pushes(host, builder, args.runs, results)
        for n in range(args.runs):
            lockfile_builds(host, n, results, results.lockfile)
        slow = SlowRegistry(args.latency_ms / 1000)
        try:
            for n in range(args.runs):
                lockfile_builds(host, n, results, results.distant, registry=slow)
        finally:
            slow.close()
    print(report(results, args.runs, args.latency_ms))
    if args.json:
        args.json.write_text(json.dumps(asdict(results), indent=2) + "\n")


if __name__ == "__main__":
    main()
