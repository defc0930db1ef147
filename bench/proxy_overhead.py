#!/usr/bin/env python3
"""What minipaas' nginx costs on the hot path: requests/s and latency of the same container reached
straight, through a hand-written nginx reverse proxy with upstream keep-alive, and through minipaas.

One app (examples/hello) is deployed on an isolated minipaas host; the plain nginx has the same main
and events settings as minipaas' private front and an `upstream { server <the container>; keepalive }`.
wrk (1 thread, 16 connections, --seconds each) runs against each target, with keep-alive clients and
with `Connection: close` clients, in interleaved rounds; the table has the medians over the rounds and
minipaas' ratio to the plain nginx (requests/s) and its p50 difference.

    /opt/minipaas/venv/bin/python bench/proxy_overhead.py [--rounds 5] [--seconds 6] [--json out.json]

MINIPAAS_BENCH_CODE=/path/to/another/checkout measures that checkout's minipaas instead (the same
bench, another design: how the numbers in docs/benchmarks.md compare designs).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import statistics
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from harness import DOMAIN, BenchHost, bench_host, commit, free_port, log, machine, quit_nginx, wrk

THREADS, CONNECTIONS = 1, 16
MODES = {"keep-alive": {}, "close": {"Connection": "close"}}


@dataclass
class Sample:
    target: str
    mode: str
    round: int
    rps: float
    p50_ms: float | None
    p99_ms: float | None
    failed: int


def plain_conf(front_conf: Path, prefix: Path, port: int, upstream: str) -> str:
    """A hand-written reverse proxy: front.conf's main and events settings, upstream keep-alive."""
    text = front_conf.read_text(encoding="utf-8")
    main = [line.strip() for line in text.splitlines()
            if re.match(r"(user|worker_processes|worker_rlimit_nofile)\s", line.strip())]
    events = re.search(r"events\s*\{([^}]*)\}", text)
    if not events:
        raise RuntimeError(f"{front_conf}: no events block to copy")
    temp = "\n".join(f"    {kind}_temp_path {prefix}/tmp/{kind};"
                     for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return f"""# plain nginx baseline of bench/proxy_overhead.py
{chr(10).join(main)}
pid {prefix}/plain.pid;
error_log {prefix}/error.log warn;
events {{{events.group(1).rstrip()}
}}
http {{
    access_log off;
{temp}
    upstream app {{
        server {upstream};
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }}
    }}
}}
"""


@contextlib.contextmanager
def plain_nginx(host: BenchHost, upstream: str) -> Iterator[int]:
    prefix = host.work / "plain"
    (prefix / "tmp").mkdir(parents=True)
    port = free_port()
    conf = prefix / "plain.conf"
    conf.write_text(plain_conf(host.home / "nginx" / "front.conf", prefix, port, upstream), encoding="utf-8")
    result = subprocess.run(["nginx", "-c", str(conf), "-p", str(prefix)], capture_output=True, text=True,
                            timeout=30)
    if result.returncode != 0:
        raise RuntimeError(f"plain nginx did not start:\n{result.stderr}")
    pid_file = prefix / "plain.pid"
    try:
        yield port
    finally:
        quit_nginx(pid_file)


def container_address(host: BenchHost, app: str) -> str:
    """The app's web container as host:port, from `ps` (whichever design is measured)."""
    rows = json.loads(host.cli("ps", app, "--json").stdout)
    addresses = [r["address"] for r in rows if r.get("address")]
    if not addresses:
        raise RuntimeError(f"{app} has no web container address: {rows}")
    return str(addresses[0])


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=6)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--keep", action="store_true")
    options = parser.parse_args()
    print(f"machine: {machine()}")
    samples: list[Sample] = []
    with bench_host(keep=options.keep) as host:
        app = host.create_app("proxy")
        checkout = host.checkout(app)
        commit(checkout, "bench")
        host.push(checkout)
        address = container_address(host, app)
        log(f"{app} serves from {address}")
        with plain_nginx(host, address) as plain_port:
            targets = {
                "direct": (f"http://{address}/", {}),
                "plain nginx": (f"http://127.0.0.1:{plain_port}/", {"Host": f"{app}.{DOMAIN}"}),
                "minipaas": (f"http://127.0.0.1:{host.port}/", {"Host": f"{app}.{DOMAIN}"}),
            }
            for url, headers in targets.values():  # warm every path once
                wrk(url, headers, threads=THREADS, connections=CONNECTIONS, seconds=1)
            for number in range(1, options.rounds + 1):
                for mode, extra in MODES.items():
                    for target, (url, headers) in targets.items():
                        run = wrk(url, {**headers, **extra}, threads=THREADS, connections=CONNECTIONS,
                                  seconds=options.seconds)
                        samples.append(Sample(target, mode, number, run.rps, run.p50_ms, run.p99_ms,
                                              run.non_2xx_3xx + run.socket_errors))
                        log(f"round {number} {mode:<10} {target:<12} {run.rps:>9.0f} req/s  p50 {run.p50_ms} ms")
    print(report(samples, options.rounds, options.seconds))
    if options.json:
        options.json.write_text(json.dumps([asdict(s) for s in samples], indent=2))


def report(samples: list[Sample], rounds: int, seconds: int) -> str:
    lines = [f"wrk -t{THREADS} -c{CONNECTIONS} -d{seconds}s, {rounds} rounds, medians", "",
             "| clients | target | requests/s | p50 ms | p99 ms | failed | vs plain nginx |",
             "| --- | --- | ---: | ---: | ---: | ---: | --- |"]
    for mode in MODES:
        stats = {}
        for target in ("direct", "plain nginx", "minipaas"):
            mine = [s for s in samples if s.mode == mode and s.target == target]
            stats[target] = (median([s.rps for s in mine]), median([s.p50_ms for s in mine if s.p50_ms is not None]),
                             median([s.p99_ms for s in mine if s.p99_ms is not None]), sum(s.failed for s in mine))
        plain_rps, plain_p50 = stats["plain nginx"][0], stats["plain nginx"][1]
        for target, (rps, p50, p99, failed) in stats.items():
            versus = "" if target != "minipaas" else \
                f"{rps / plain_rps:.2f}x requests/s, p50 {p50 - plain_p50:+.2f} ms"
            lines.append(f"| {mode} | {target} | {rps:,.0f} | {p50:.2f} | {p99:.2f} | {failed} | {versus} |")
    return "\n".join(lines)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
