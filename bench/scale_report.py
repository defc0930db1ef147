"""bench/scale.py's Markdown tables: medians, with min and max where there are several runs."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from scale_tools import median

TARGET_COMMAND_MS = 200
TARGET_SWITCH_S = 1.0
TARGET_RATIO = 0.9


def _f(value: float | None, fmt: str = "{:.2f}") -> str:
    return "-" if value is None or value != value else fmt.format(value)


def _mmm(values: Sequence[float], scale: float = 1.0, fmt: str = "{:.0f}") -> tuple[str, str, str]:
    if not values:
        return "-", "-", "-"
    return fmt.format(median(values) * scale), fmt.format(min(values) * scale), fmt.format(max(values) * scale)


def _met(ok: bool) -> str:
    return "met" if ok else "**missed**"


def summary(r: Any) -> list[str]:
    fleet = r.fleet
    reviews = fleet.reviews
    container_reviews = sum(1 for a in reviews if a.container)
    sites = fleet.sites
    markdown = sum(1 for a in sites if a.kind == "markdown site")
    switches = [d.switch for d in r.under_load.deploys if d.switch is not None] if r.under_load else []
    failed = f"{r.under_load.wrk.failed} of {r.under_load.wrk.requests} (wrk), {len(r.under_load.failures)} of " \
             f"{r.under_load.polled} (poller)" if r.under_load and r.under_load.wrk else "-"
    fp = r.footprint
    mem = "-"
    if fp:
        nginx, watcher = fp.memory[0], fp.memory[1]
        mem = (f"nginx {nginx.rss_mib:.0f} MiB RSS / {nginx.pss_mib:.0f} MiB PSS ({nginx.processes} processes); "
               f"watcher {watcher.rss_mib:.0f} MiB; idle app {_f(median(fp.app_mib), '{:.1f}')} MiB "
               f"(median of {len(fp.app_mib)})")
    disk = f"{median(fp.site_bytes) / 1024:.0f} KiB" if fp and fp.site_bytes else "-"
    rest = "-"
    if r.restore:
        serving = _f(r.restore.serving_seconds, "{:.1f}")
        rest = f"{r.restore.restore_seconds:.1f} s (every app serving after {serving} s)"
    return ["| container apps | sites (of them Markdown) | review apps (of container apps) | switch, median [max] "
            "| failed requests in the other apps | memory | disk per site | ps:restore |",
            "| ---: | ---: | ---: | --- | --- | --- | ---: | --- |",
            f"| {len(fleet.containers)} | {len(sites)} ({markdown}) | {len(reviews)} ({container_reviews}) "
            f"| {_f(median(switches))} s [{_f(max(switches) if switches else None)} s] | {failed} | {mem} | {disk} "
            f"| {rest} |"]


def setup_table(fleet: Any) -> list[str]:
    out = ["| step | count | median s | first tenth, median s | last tenth, median s | sum s |",
           "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for step in dict.fromkeys(t.step for t in fleet.timings):
        times = [t.seconds for t in sorted(fleet.timings, key=lambda t: t.index) if t.step == step]
        tenth = max(1, len(times) // 10)
        out.append(f"| {step} | {len(times)} | {median(times):.2f} | {median(times[:tenth]):.2f} "
                   f"| {median(times[-tenth:]):.2f} | {sum(times):.0f} |")
    out += ["", f"All {len(fleet.apps)} made in {fleet.setup_seconds:.0f} s; the load average every 50 apps: "
            + ", ".join(load.split()[0] for load in fleet.loads) + "."]
    return out


def commands_table(commands: Sequence[Any]) -> list[str]:
    out = [f"| command | median ms | min ms | max ms | runs | under {TARGET_COMMAND_MS} ms | load at start |",
           "| --- | ---: | ---: | ---: | ---: | --- | --- |"]
    for c in commands:
        med, low, high = _mmm(c.seconds, 1000)
        target = "" if "--help" in c.label else _met(median(c.seconds) * 1000 < TARGET_COMMAND_MS)
        out.append(f"| `{c.label}` | {med} | {low} | {high} | {len(c.seconds)} | {target} | {c.load} |")
    return out


def footprint_tables(fp: Any, fleet: Any) -> list[str]:
    out = ["| process | processes | RSS MiB | PSS MiB |", "| --- | ---: | ---: | ---: |"]
    out += [f"| {m.what} | {m.processes} | {m.rss_mib:.1f} | {m.pss_mib:.1f} |" for m in fp.memory]
    if fp.app_mib:
        med, low, high = _mmm(fp.app_mib, fmt="{:.1f}")
        out.append(f"| app containers (`docker stats`), each: median [min-max] | {len(fp.app_mib)} "
                   f"| {med} [{low}-{high}] "
                   f"| (sum {sum(fp.app_mib):.0f}) |")
    out += ["", "| measurement | value |", "| --- | --- |"]
    if fp.site_bytes:
        med, low, high = _mmm(fp.site_bytes, 1 / 1024)
        out.append(f"| disk under static/SITE (allocated), each: median [min-max] | {med} KiB [{low}-{high}] |")
    if fp.repo_bytes:
        med, low, high = _mmm(fp.repo_bytes, 1 / 1024)
        out.append(f"| disk of each bare repository (allocated): median [min-max] | {med} KiB [{low}-{high}] |")
    out += [f"| {k} | {v} |" for k, v in fp.counters.items()]
    out += ["", f"Load at measurement: {fp.load}."]
    return out


def hot_table(hot: Sequence[Any], connections: int, seconds: int) -> list[str]:
    stats = {}
    for target in ("plain nginx", "minipaas"):
        runs = [h.run for h in hot if h.target == target]
        stats[target] = (median([x.rps for x in runs]), median([x.p50_ms for x in runs if x.p50_ms is not None]),
                         median([x.p99_ms for x in runs if x.p99_ms is not None]), sum(x.failed for x in runs),
                         [x.load.split()[0] for x in runs])
    plain = stats["plain nginx"]
    out = [f"wrk -t1 -c{connections} -d{seconds}s keep-alive, the Host header of each request the next container "
           f"app's; {len(hot) // 2} interleaved rounds, medians.", "",
           "| target | requests/s | p50 ms | p99 ms | failed | vs plain nginx | 1-min load at each run |",
           "| --- | ---: | ---: | ---: | ---: | --- | --- |"]
    for target, (rps, p50, p99, failed, loads) in stats.items():
        ratio = rps / plain[0]
        versus = "" if target != "minipaas" else \
            f"**{ratio:.2f}x** requests/s ({_met(ratio >= TARGET_RATIO)}), p50 {p50 - plain[1]:+.2f} ms"
        out.append(f"| {target} | {rps:,.0f} | {p50:.2f} | {p99:.2f} | {failed} | {versus} | {', '.join(loads)} |")
    return out


def deploys_table(u: Any) -> list[str]:
    out = ["| app | push s | switch s (healthy → served) | healthy → `is live` line s | push → served s |",
           "| --- | ---: | ---: | ---: | ---: |"]
    for d in u.deploys:
        live = None if d.live_at is None or d.healthy_at is None else d.live_at - d.healthy_at
        out.append(f"| {d.app} | {d.push_seconds:.2f} | {_f(d.switch)} | {_f(live)} | {_f(d.served)} |")
    switches = [d.switch for d in u.deploys if d.switch is not None]
    w = u.wrk
    out += ["", f"Switch: median {_f(median(switches))} s, max {_f(max(switches) if switches else None)} s "
            f"(target under {TARGET_SWITCH_S:.0f} s: {_met(bool(switches) and max(switches) < TARGET_SWITCH_S)}). "
            f"Meanwhile, across the {u.hosts} other apps: wrk {w.requests} requests, {w.non_2xx_3xx} non-2xx/3xx, "
            f"{w.socket_errors} socket errors, p99 {_f(w.p99_ms)} ms; the poller {u.polled} requests, "
            f"{len(u.failures)} failed (target 0: {_met(w.failed == 0 and not u.failures)}). Load at start: {u.load}."]
    if w.failed_lines or u.failures:
        out += ["", "Failures: " + "; ".join([*w.failed_lines[:5], *u.failures[:10]])]
    return out


def builds_table(runs: Sequence[Any], burn: int) -> list[str]:
    base = runs[0].wrk if runs else None
    out = [f"wrk -t1 across the other container apps; a build that keeps 2 CPUs busy for {burn} s.", "",
           "| build | push s | requests/s | p50 ms | p99 ms | p99 vs no build | failed | 1-min load at start |",
           "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for b in runs:
        label = "no build" if not b.cpus else f"build-cpus {b.cpus}"
        ratio = "" if not b.cpus or not base or not base.p99_ms or b.wrk.p99_ms is None else \
            f"{b.wrk.p99_ms / base.p99_ms:.1f}x"
        out.append(f"| {label} | {_f(b.push_seconds if b.cpus else None, '{:.1f}')} | {b.wrk.rps:,.0f} "
                   f"| {_f(b.wrk.p50_ms)} | {_f(b.wrk.p99_ms)} | {ratio} | {b.wrk.failed} | {b.wrk.load} |")
    return out


def restore_lines(rs: Any, wrong: Sequence[str]) -> list[str]:
    return [f"{rs.how}: {rs.containers} containers, stopped in {rs.stop_seconds:.1f} s. `ps:restore` exited after "
            f"{rs.restore_seconds:.1f} s; every app answered 200 after {_f(rs.serving_seconds, '{:.1f}')} s "
            f"(from the start of ps:restore); {len(wrong)} apps answered otherwise afterwards"
            + (f" ({'; '.join(wrong[:5])})" if wrong else "") + f". Load at start: {rs.load}."]


def report(r: Any, args: argparse.Namespace) -> str:
    out = [f"## scale: {r.started}", "", f"{r.about}", f"command: `{r.command}`",
           "1-minute load average (1/5/15) before each part: " + "; ".join(f"{k} {v}" for k, v in r.loads.items()), ""]
    if r.fleet:
        out += [*summary(r), "", "### Setup", "", *setup_table(r.fleet)]
        if r.wrong_after_setup:
            out += ["", f"{len(r.wrong_after_setup)} apps did not answer as they should after the setup: "
                    + "; ".join(r.wrong_after_setup[:10])]
    if r.commands:
        out += ["", "### Commands", "", *commands_table(r.commands)]
    if r.footprint:
        out += ["", "### Memory, disk, the engine", "", *footprint_tables(r.footprint, r.fleet)]
    if r.hot:
        out += ["", "### Hot path", "", *hot_table(r.hot, args.connections, args.seconds)]
    if r.under_load:
        out += ["", "### Deploys under load", "", *deploys_table(r.under_load)]
    if r.builds:
        out += ["", "### A build against the other apps' latency", "", *builds_table(r.builds, args.burn)]
    if r.restore:
        out += ["", "### ps:restore", "", *restore_lines(r.restore, r.wrong_after_restore)]
    if r.destroy_seconds is not None:
        out += ["", f"`apps:destroy --force` of every parent ({args.jobs} at a time): {r.destroy_seconds:.0f} s."]
    return "\n".join(out)
