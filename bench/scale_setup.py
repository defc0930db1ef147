"""bench/scale.py's host at size: the apps, sites and review apps it puts on one minipaas host, timed, and
taken away again.

Pushed the way a user with many apps of one kind gets there fast: one checkout of the tiny app pushed to
every container app's repository (the same commit: BuildKit's layers are built once and cached; each app's
own install step, whose cache mounts are its own, runs again), one static and one Markdown checkout pushed
to every site, and each review app a branch of that checkout pushed to its parent.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from harness import DOMAIN, BenchHost, log, run
from scale_tools import MARKDOWN_FIXTURE, STATIC_FIXTURE, fixture_source, loadavg, tiny_source

KINDS = ("container app", "static site", "markdown site")
REVIEW_APPS_MAX = 10  # the default review-apps-max: more review apps of one parent would be stopped


@dataclass
class App:
    name: str
    kind: str  # one of KINDS
    parent: str | None = None  # a review app's
    branch: str | None = None

    @property
    def host_name(self) -> str:
        if self.parent is None:
            return f"{self.name}.{DOMAIN}"
        return f"{self.branch}.{self.parent}.{DOMAIN}"

    @property
    def container(self) -> bool:
        return self.kind == "container app"


@dataclass
class Timing:
    step: str  # "apps:create", "push: container app", "push: review app of a static site", ...
    index: int  # in the order they were made
    seconds: float


@dataclass
class Fleet:
    apps: list[App] = field(default_factory=list)
    timings: list[Timing] = field(default_factory=list)
    sources: dict[str, Path] = field(default_factory=dict)
    setup_seconds: float = 0.0
    loads: list[str] = field(default_factory=list)

    def of(self, kind: str, *, reviews: bool | None = None) -> list[App]:
        return [a for a in self.apps if a.kind == kind and (reviews is None or (a.parent is not None) == reviews)]

    @property
    def containers(self) -> list[App]:
        return [a for a in self.apps if a.container]

    @property
    def sites(self) -> list[App]:
        return [a for a in self.apps if not a.container]

    @property
    def reviews(self) -> list[App]:
        return [a for a in self.apps if a.parent is not None]


def plan(apps: int, sites: int, reviews: int, container_reviews: int, markdown_share: float) -> list[App]:
    """Every app to make: `apps` container apps and `sites` sites, `reviews` of all of them review apps
    (`container_reviews` of the container apps), each review app a branch of a parent of its kind, spread over
    the parents (round robin)."""
    container_reviews = min(container_reviews, reviews, max(apps - 1, 0))
    site_reviews = min(reviews - container_reviews, max(sites - 1, 0))
    markdown = round((sites - site_reviews) * markdown_share)
    out = [App(f"c{n:03d}", "container app") for n in range(1, apps - container_reviews + 1)]
    out += [App(f"m{n:03d}", "markdown site") for n in range(1, markdown + 1)]
    out += [App(f"s{n:03d}", "static site") for n in range(1, sites - site_reviews - markdown + 1)]
    for kinds, count in (({"container app"}, container_reviews), ({"static site", "markdown site"}, site_reviews)):
        parents = [a for a in out if a.kind in kinds and a.parent is None]
        for n in range(count):
            parent = parents[n % len(parents)]
            branch = f"rv{n // len(parents) + 1}"
            out.append(App(f"{parent.name}--{branch}", parent.kind, parent.name, branch))
    return out


def _timed(args: Sequence[str], *, cwd: Path | None = None, env: dict[str, str]) -> float:
    started = time.monotonic()
    run(args, cwd=cwd, env=env, timeout=900)
    return time.monotonic() - started


def build(host: BenchHost, wanted: list[App], *, jobs: int, marker: str) -> Fleet:
    """Create and push every app (`jobs` at a time), parents before their review apps."""
    fleet = Fleet(apps=[])
    fleet.sources = {
        "container app": tiny_source(host.work / "tiny", marker),
        "static site": fixture_source(host.work / "static", STATIC_FIXTURE),
        "markdown site": fixture_source(host.work / "markdown", MARKDOWN_FIXTURE),
    }
    lock = threading.Lock()
    started = time.monotonic()
    parents = [a for a in wanted if a.parent is None]
    reviews = [a for a in wanted if a.parent is not None]
    # More review apps to a parent than its limits allow: raised first, as its admin would.
    per_parent: dict[str, int] = {}
    for review in reviews:
        per_parent[review.parent or ""] = per_parent.get(review.parent or "", 0) + 1

    def made(app: App, step: str, seconds: float) -> None:
        with lock:
            fleet.timings.append(Timing(step, len([t for t in fleet.timings if t.step == step]), seconds))
            if app not in fleet.apps:
                fleet.apps.append(app)
            done = len(fleet.apps)
            if done % 50 == 0 or done == len(wanted):
                fleet.loads.append(loadavg())
                log(f"{done}/{len(wanted)} apps made ({time.monotonic() - started:.0f} s, load {loadavg()})")

    def create(app: App) -> None:
        seconds = _timed([*_cli(host), "apps:create", app.name], env=host.env)
        with lock:
            host.apps.append(app.name)  # host.close() destroys it, whatever happens next
        made(app, "apps:create", seconds)
        count = per_parent.get(app.name, 0)
        if count > 20:
            host.cli("settings:set", app.name, "review-apps-limit", str(count))
        if count > REVIEW_APPS_MAX and app.container:
            host.cli("settings:set", app.name, "review-apps-max", str(count))
        repo = host.home / "repos" / f"{app.name}.git"
        made(app, f"push: {app.kind}", _timed(["git", "push", "-q", str(repo), "master"],
                                                cwd=fleet.sources[app.kind], env=host.env))

    def review(app: App) -> None:
        repo = host.home / "repos" / f"{app.parent}.git"
        made(app, f"push: review app of a {app.kind}",
             _timed(["git", "push", "-q", str(repo), f"master:{app.branch}"], cwd=fleet.sources[app.kind],
                    env=host.env))

    _each(parents, create, jobs)
    _each(reviews, review, jobs)
    fleet.setup_seconds = time.monotonic() - started
    return fleet


def _cli(host: BenchHost) -> list[str]:
    import sys

    return [sys.executable, "-m", "minipaas"]


def _each(items: Sequence[App], work: Callable[[App], None], jobs: int) -> None:
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for future in [pool.submit(work, item) for item in items]:
            future.result()  # the first failure ends the bench (its cleanup runs)


def answer(port: int, host_name: str, timeout: float = 10) -> tuple[int, str]:
    """GET / with this Host through nginx: (status, body); (0, the error) when no answer came."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", "/", headers={"Host": host_name, "Connection": "close"})
        resp = conn.getresponse()
        return resp.status, resp.read().decode(errors="replace")
    except (OSError, http.client.HTTPException) as exc:
        return 0, type(exc).__name__
    finally:
        conn.close()


def check_all(port: int, apps: Sequence[App], marker: str | None = None) -> list[str]:
    """Every app answers 200 through nginx (a container app with its own host name, and `marker` when given);
    returns what did not."""
    wrong = []
    for app in apps:
        status, body = answer(port, app.host_name)
        if status != 200 or (app.container and (app.host_name not in body or (marker and marker not in body))):
            wrong.append(f"{app.name}: {status} {body[:60]!r}")
    return wrong


def serving_all(port: int, apps: Sequence[App], *, timeout: float) -> float | None:
    """Seconds until every app answers 200 (polled, one pass after another), None at the deadline."""
    started = time.monotonic()
    pending = list(apps)
    while pending and time.monotonic() - started < timeout:
        pending = [a for a in pending if answer(port, a.host_name, timeout=5)[0] != 200]
        if pending:
            time.sleep(0.05)
    return None if pending else time.monotonic() - started


def background_done(home: Path, timeout: float = 600) -> bool:
    """Wait until no `minipaas retire` of this home runs (the retirements and gc after each deploy)."""
    deadline = time.monotonic() + timeout
    needle = f"MINIPAAS_HOME={home}".encode()
    while time.monotonic() < deadline:
        busy = False
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                cmdline = (proc / "cmdline").read_bytes().split(b"\0")
                if b"retire" in cmdline and b"minipaas" in b" ".join(cmdline) and \
                        needle in (proc / "environ").read_bytes().split(b"\0"):
                    busy = True
                    break
            except OSError:
                continue
        if not busy:
            return True
        time.sleep(1)
    return False


def destroy(host: BenchHost, fleet: Fleet, jobs: int) -> float:
    """`apps:destroy --force` of every parent (its review apps go with it), `jobs` at a time; seconds."""
    started = time.monotonic()
    parents = [a.name for a in fleet.apps if a.parent is None and a.name in host.apps]

    def one(name: str) -> None:
        subprocess.run([*_cli(host), "apps:destroy", name, "--force"], env=host.env, capture_output=True,
                       timeout=900)
        host.apps.remove(name)

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        list(pool.map(one, parents))
    return time.monotonic() - started


def app_urls(host: BenchHost) -> dict[str, str]:
    """app → URL, as `apps:list --json` says."""
    return {row["name"]: row["url"] for row in json.loads(host.cli("apps:list", "--json").stdout)}
