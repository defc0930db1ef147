"""The canary's guard: judged on the figures nginx counts per release (routing/metrics.py), a canary moves on
through its `canary-steps`, promotes itself at 100 %, or is aborted by itself on a breach, said in `events` with
the figures that tripped it.

A breach, over the step so far and once the canary has served `canary-min-requests`: its 5xx share above the
stable release's plus 1 point, or its p95 latency above 1.5 times the stable's (and at least 10 ms above it: a
millisecond's noise on a fast app is no breach). A step ends after `canary-interval` with no breach and at least
`canary-min-requests` requests to each release; then the next share, or promotion when that is 100.

`judge` is pure; `tick` (the watcher calls it every few seconds) reads the figures and applies the verdict under
the app's lock.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

from minipaas.access import events
from minipaas.deploy import canary
from minipaas.errors import MinipaasError
from minipaas.routing import metrics
from minipaas.state import apps, canaries, durations, locks, store
from minipaas.state.canaries import Canary
from minipaas.state.host import Host
from minipaas.state.settings import Settings

ERROR_MARGIN = 0.01  # the canary's 5xx share may exceed the stable's by 1 point
LATENCY_FACTOR = 1.5  # its p95 may be 1.5x the stable's
LATENCY_FLOOR = 0.010  # ...and must be this much slower (seconds) before that counts


@dataclass(frozen=True)
class Figures:
    """One release's requests over the step so far."""

    requests: int
    errors: int  # answered 5xx
    p95: float | None  # seconds; None without requests

    @property
    def error_share(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def text(self) -> str:
        p95 = f"{self.p95 * 1000:.0f} ms" if self.p95 is not None else "-"
        return f"{self.requests} requests, {self.error_share:.1%} 5xx, p95 {p95}"


@dataclass(frozen=True)
class Verdict:
    action: str  # wait, advance (to `weight`), promote, abort
    reason: str
    weight: int = 0


def judge(*, steps: tuple[int, ...], step: int, elapsed: float, interval: float, min_requests: int,
          stable: Figures, canary: Figures) -> Verdict:
    """What the guard does now with a canary at `steps[step]` for `elapsed` seconds of its step."""
    figures = f"canary {canary.text()}; stable {stable.text()}"
    if canary.requests >= min_requests:
        if canary.error_share > stable.error_share + ERROR_MARGIN:
            return Verdict("abort", f"5xx share {canary.error_share:.1%} above the stable release's "
                                    f"{stable.error_share:.1%} + 1 point ({figures})")
        if canary.p95 is not None and stable.p95 is not None and canary.p95 > stable.p95 * LATENCY_FACTOR \
                and canary.p95 - stable.p95 >= LATENCY_FLOOR:
            return Verdict("abort", f"p95 {canary.p95 * 1000:.0f} ms above 1.5x the stable release's "
                                    f"{stable.p95 * 1000:.0f} ms ({figures})")
    if step + 1 >= len(steps):
        return Verdict("wait", f"at its last step ({steps[step]}%): `releases:promote` ({figures})")
    if elapsed < interval:
        return Verdict("wait", f"step {steps[step]}% for {interval - elapsed:.0f}s more ({figures})")
    short = min_requests - min(canary.requests, stable.requests)
    if short > 0:
        return Verdict("wait", f"step {steps[step]}% needs {short} more requests to each release ({figures})")
    following = steps[step + 1]
    if following >= 100:
        return Verdict("promote", f"held through {steps[step]}% ({figures})", 100)
    return Verdict("advance", f"held through {steps[step]}% ({figures})", following)


# -- applied: the watcher's tick ----------------------------------------------------------------------------------

TICK_SECONDS = 5.0


def follow(settings: Settings) -> None:
    """Judge every canary of the home every TICK_SECONDS, until the process ends (a thread of the watcher)."""
    while True:
        try:
            tick(settings)
        except Exception as exc:
            print(f"watch: canary guard: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        time.sleep(TICK_SECONDS)


def tick(settings: Settings) -> list[tuple[str, Verdict]]:
    """One round over the home's canaries; returns what it did to which (waits left out)."""
    host = Host(settings)
    done = []
    for running in canaries.every(host):
        verdict = _verdict(host, running)
        if verdict.action == "wait":
            continue
        with locks.try_app_lock(settings, running.app) as held:
            if not held or canaries.of(host, running.app) != running:  # a deploy or a command is at it: next tick
                continue
            _apply(host, running, verdict)
            done.append((running.app, verdict))
    return done


def _verdict(host: Host, running: Canary) -> Verdict:
    app = running.app
    interval = durations.duration_seconds(apps.get_setting(host, app, "canary-interval")) or 120
    stable, new = step_figures(host.settings, running)
    return judge(steps=running.steps, step=running.step, elapsed=store.now() - running.step_started_at,
                 interval=interval, min_requests=int(apps.get_setting(host, app, "canary-min-requests")),
                 stable=stable, canary=new)


def step_figures(settings: Settings, running: Canary) -> tuple[Figures, Figures]:
    """The stable release's and the canary's figures since the step began, as nginx counted them: from the minute
    it began on (nginx counts per minute; the requests of that minute before the step are of the same releases, at
    the shares before), at most the last 15 minutes."""
    raw = metrics.read(settings, running.app, [running.stable, running.release])
    first = max(int(running.step_started_at // 60), int(raw.now // 60) - 14)

    def figures(release: int) -> Figures:
        counts = metrics.Counts()
        for minute, kept in raw.minutes.get(release, {}).items():
            if minute >= first:
                counts.add(kept)
        p95 = metrics.percentile(raw, counts, 95)
        return Figures(requests=round(counts.requests), errors=round(counts.classes.get(5, 0)),
                       p95=None if p95 is None else p95 / 1000)

    return figures(running.stable), figures(running.release)


def _apply(host: Host, running: Canary, verdict: Verdict) -> None:
    app = running.app

    def say(line: str) -> None:
        print(f"watch: {line.strip()}", file=sys.stderr, flush=True)

    if verdict.action == "abort":
        canary.abort_locked(host, app, running, say, reason=f"aborted by the guard: {verdict.reason}")
        events.record(host, app=app, command=f"canary:abort {app} {running.release}", outcome=verdict.reason)
    elif verdict.action == "promote":
        canary.promote_locked(host, app, running, say)
        events.record(host, app=app, command=f"canary:promote {app} {running.release}", outcome=verdict.reason)
    else:
        canary.reweigh(host, app, running, step=running.step + 1, weight=verdict.weight)
        say(f"{app}: canary release {running.release} now takes {verdict.weight}% ({verdict.reason})")
        events.record(host, app=app, command=f"canary:step {app} {running.release} {verdict.weight}%",
                      outcome=verdict.reason)


def describe(host: Host, running: Canary) -> list[str]:
    """A canary's state for `ps`, `releases` and `report`: its share and step, and each release's figures over
    the step (nginx's counts; a line saying so when nginx cannot be asked)."""
    app = running.app
    if running.automatic:
        steps = " → ".join(f"{s}%" for s in running.steps)
        where = f"step {running.step + 1} of {len(running.steps)} ({steps}, every " \
                f"{apps.get_setting(host, app, 'canary-interval')})"
    else:
        where = f"until `releases:promote {app}` or `releases:abort {app}`"
    lines = [f"canary: release {running.release} takes {running.weight}% of new clients beside release "
             f"{running.stable}, {where}"]
    try:
        stable, new = step_figures(host.settings, running)
    except MinipaasError as exc:
        return [*lines, f"        its figures: {exc.message}"]
    lines.append(f"        this step: release {running.release} {new.text()}; release {running.stable} {stable.text()}")
    return lines
