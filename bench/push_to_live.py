#!/usr/bin/env python3
"""Warm push-to-live of minipaas against a plain `docker build` + `docker run` of a hand-written Dockerfile.

Each run changes examples/hello's server.js (a source-only change: the dependencies are cached) and
times until the change is served:
  minipaas   `git push` of the change to an app whose previous push is live, until GET / through
             minipaas' nginx answers 200 with the new text; once with the host's builder (BuildKit
             where the host's Docker has it) and once with MINIPAAS_BUILDER=legacy;
  no-op      `git push paas master:main` of the live commit, main being behind (the hook finds the commit
             live and does nothing);
  plain      what someone without minipaas would run for the same app: a hand-written single-stage
             Dockerfile (`COPY package*.json`, `npm ci --omit=dev`, `COPY . .`, `CMD node server.js`,
             FROM the same Node.js base image), `docker build -t`, `docker rm -f` of the previous
             container, `docker run -d`, then GET / on the container's address until it answers with
             the change (no proxy, no health check, no zero-downtime switch); with BuildKit
             (DOCKER_BUILDKIT=1 on the docker CLI that has it) and with the legacy builder.
Each kind runs in turn (rotating order), so that a slow moment of the machine spreads over all of them.
The ratio column is the median against the plain build with the same builder, measured in the same run.

    /opt/minipaas/venv/bin/python bench/push_to_live.py [--runs 7] [--json out.json]
"""

from __future__ import annotations

import argparse
import http.client
import json
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from harness import (
    CA,
    BenchHost,
    bench_host,
    commit,
    docker,
    log,
    machine,
    new_marker,
    set_marker,
    table_row,
    timed_push,
)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from minipaas.build import buildkit

RATIO_TARGET = 1.5
PLAIN_DOCKERFILE = """\
FROM {base}
WORKDIR /app
COPY package.json package-lock.json ./
{install}
COPY . .
ENV NODE_ENV=production PORT=5000
CMD ["node", "server.js"]
"""
# The build CA (this host reaches the npm registry through a TLS proxy): a secret with BuildKit; the legacy
# builder has none, so the plain Dockerfile copies it in, as people do.
INSTALL = {
    "buildkit": "RUN --mount=type=secret,id=ca NODE_EXTRA_CA_CERTS=/run/secrets/ca npm ci --omit=dev --no-audit",
    "legacy": "COPY ca.pem /tmp/ca.pem\nRUN NODE_EXTRA_CA_CERTS=/tmp/ca.pem npm ci --omit=dev --no-audit",
}
KINDS = ("minipaas buildkit", "plain buildkit", "minipaas legacy", "plain legacy")


@dataclass
class Results:
    seconds: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in (*KINDS, "no-op push")})
    build_only: dict[str, list[float]] = field(default_factory=lambda: {"plain buildkit": [], "plain legacy": []})
    notes: list[str] = field(default_factory=list)


class Plain:
    """The hand-written Dockerfile way: a folder, `docker build`, `docker run`, poll the container."""

    def __init__(self, folder: Path, base: str, builder: str, docker_cli: str) -> None:
        self.folder, self.builder, self.cli = folder, builder, docker_cli
        self.tag = f"mpbench-plain-{builder}:{new_marker()}"
        self.container = ""
        self.env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "DOCKER_BUILDKIT": "1" if builder == "buildkit" else "0"}
        (folder / "Dockerfile").write_text(PLAIN_DOCKERFILE.format(base=base, install=INSTALL[builder]))
        (folder / ".dockerignore").write_text("node_modules\n.git\n")
        if builder == "legacy":
            shutil.copy(CA, folder / "ca.pem")

    def _build(self) -> None:
        extra = ["--secret", f"id=ca,src={CA}"] if self.builder == "buildkit" else []
        subprocess.run([self.cli, "build", "-q", *extra, "-t", self.tag, "."], cwd=self.folder, env=self.env,
                       check=True, capture_output=True, timeout=900)

    def deploy(self, marker: str) -> tuple[float, float]:
        """Build and run the folder as it is; returns (seconds until the marker is served, build seconds)."""
        started = time.monotonic()
        self._build()
        built = time.monotonic() - started
        if self.container:
            subprocess.run([self.cli, "rm", "-f", self.container], env=self.env, check=True, capture_output=True)
        self.container = subprocess.run([self.cli, "run", "-d", self.tag], env=self.env, check=True,
                                        capture_output=True, text=True).stdout.strip()
        ip = subprocess.run([self.cli, "inspect", "-f", "{{.NetworkSettings.IPAddress}}", self.container],
                            env=self.env, check=True, capture_output=True, text=True).stdout.strip()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if marker in _get(ip, 5000):
                return time.monotonic() - started, built
            time.sleep(0.01)
        raise RuntimeError(f"the plain container never served {marker}")

    def close(self) -> None:
        if self.container:
            subprocess.run([self.cli, "rm", "-f", self.container], capture_output=True)
        subprocess.run([self.cli, "rmi", "-f", self.tag], capture_output=True)


def _get(ip: str, port: int) -> str:
    conn = http.client.HTTPConnection(ip, port, timeout=2)
    try:
        conn.request("GET", "/", headers={"Connection": "close"})
        return conn.getresponse().read().decode(errors="replace")
    except (OSError, http.client.HTTPException):
        return ""
    finally:
        conn.close()


def minipaas_push(host: BenchHost, app: str, checkout: Path, builder: str) -> float:
    marker = new_marker()
    set_marker(checkout, marker)
    commit(checkout, f"change {marker}")
    env = {**host.env, "MINIPAAS_BUILDER": builder}
    push = timed_push(checkout, "master", env=env, port=host.port, app=app, marker=marker)
    if push.returncode != 0 or push.served is None:
        raise RuntimeError(f"push failed or never served:\n{push.text}")
    return push.served


def measure(runs: int) -> Results:
    results = Results()
    found = buildkit.find("auto")
    if found.kind == "legacy":
        results.notes.append("no docker CLI with BuildKit here: the BuildKit rows measure the legacy builder")
    docker_cli = found.cli or "docker"
    with bench_host() as host:
        apps = {}
        for builder in ("buildkit", "legacy"):
            app = host.create_app(f"ptl-{builder[:2]}")
            checkout = host.checkout(app)
            commit(checkout, "first")
            env = {**host.env, "MINIPAAS_BUILDER": builder}
            first = timed_push(checkout, "master", env=env)
            if first.returncode != 0:
                raise SystemExit(f"the first push of {app} failed:\n{first.text}")
            apps[builder] = (app, checkout)
        base = docker("image", "inspect", "-f", '{{index .Config.Labels "minipaas.node.version"}}',
                      f"{host.env.get('MINIPAAS_INSTANCE', 'minipaas')}/{apps['buildkit'][0]}:1",
                      check=False).strip()
        base_image = f"minipaas/node:{base}" if base else "minipaas/node:26"
        plains = {}
        for builder in ("buildkit", "legacy"):
            folder = host.work / f"plain-{builder}"
            shutil.copytree(apps[builder][1], folder, ignore=shutil.ignore_patterns(".git", "node_modules"))
            plains[builder] = Plain(folder, base_image, builder, docker_cli)
            plains[builder].deploy(_set(folder))  # the first build: dependencies installed and cached
        try:
            for run in range(runs):
                order = KINDS[run % len(KINDS):] + KINDS[:run % len(KINDS)]
                for kind in order:
                    who, builder = kind.split()
                    if who == "minipaas":
                        app, checkout = apps[builder]
                        results.seconds[kind].append(minipaas_push(host, app, checkout, builder))
                    else:
                        served, built = plains[builder].deploy(_set(plains[builder].folder))
                        results.seconds[kind].append(served)
                        results.build_only[kind].append(built)
                app, checkout = apps["buildkit"]
                noop = timed_push(checkout, "master:main", env=host.env)
                if noop.returncode != 0 or "already live" not in noop.text:
                    raise RuntimeError(f"the no-op push did not find its commit live:\n{noop.text}")
                results.seconds["no-op push"].append(noop.seconds)  # main is behind again after the next run's push
                log(f"run {run + 1}/{runs}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in results.seconds.items()))
        finally:
            for plain in plains.values():
                plain.close()
    return results


def _set(folder: Path) -> str:
    marker = new_marker()
    set_marker(folder, marker)
    return marker


def report(results: Results, runs: int) -> str:
    med = {k: statistics.median(v) for k, v in results.seconds.items() if v}
    lines = [f"Machine: {machine()}; {runs} runs of each, medians in seconds.", "",
             "| warm change, until served | median | min | max | runs | ratio |", "|---|---|---|---|---|---|"]
    for kind in (*KINDS, "no-op push"):
        ratio = ""
        if kind.startswith("minipaas"):
            plain = med.get(kind.replace("minipaas", "plain"))
            if plain:
                ratio = f"{med[kind] / plain:.2f}x plain (target ≤ {RATIO_TARGET}x)"
        lines.append(table_row(kind, results.seconds[kind], ratio))
    for kind, values in results.build_only.items():
        lines.append(table_row(f"{kind}: `docker build` alone", values))
    lines += [f"- {note}" for note in results.notes]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--json", type=Path, help="also write the raw numbers here")
    args = parser.parse_args()
    results = measure(args.runs)
    print(report(results, args.runs))
    if args.json:
        args.json.write_text(json.dumps(asdict(results), indent=2))


if __name__ == "__main__":
    main()
