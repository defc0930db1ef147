"""What each page shows, gathered through the functions the ssh commands use, for one key.

Nothing here queries the database or the engine on its own: the apps are `apps.listing` (`apps:list`),
releases `releaselog.listing` (`releases`), processes `processes.status` (`ps`), config `config.entries`
(`config`), domains `domains.of`, certificates `certs.info` (`certs`), services `services.linked_to`, disk
`diskreport.report` (`report`), base images `stacks.listing` (`stack:list`), what gc frees `gc.collect(dry_run=True)`,
the audit log `events.listing` (`events`), services' backups `addons/backups.listing` (`<kind>:backups`).
What a key may not reach is left out, as `apps:list` leaves it out for a deployer; config values are an
admin's alone.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from minipaas.access import access, events
from minipaas.access.access import Principal
from minipaas.errors import MinipaasError, NotFound
from minipaas.routing import certfiles, certs, domains, routes
from minipaas.state import apps, canaries, config, releaselog, services
from minipaas.state.host import Host
from minipaas.state.names import APP_NAME
from minipaas.state.releaselog import Kind, Serving, Status

if TYPE_CHECKING:  # imported where used: the dashboard's pages that list no process need none of deploy/
    from minipaas.running import listing

MAX_FILTER = 64
CANARY_EVENTS = 5  # the last steps, promotions and aborts of canaries an app page shows


def when(ts: float | None) -> str:
    if not ts:
        return "-"
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


@dataclass
class AppRow:
    name: str
    parent: str | None
    branch: str | None
    url: str
    release: int | None
    sha: str
    kind: str  # app, site, or - (nothing live)
    health: str  # serving, sleeping, down, stopped, not deployed
    last_at: str
    last_status: str
    last_kind: str
    tests: str
    reviews: list[AppRow] = field(default_factory=list)


def _health(host: Host, name: str, live: releaselog.Release | None, routed: dict[str, routes.Entry]) -> str:
    if live is None:
        return "not deployed"
    if apps.is_stopped(host, name):
        return "stopped"
    if live.serving == Serving.STATIC:
        return "serving"
    if routed.get(name) == []:  # its route `sleep`: idle, its next request wakes it (running/sleeping.py)
        return "sleeping"
    return "serving" if routed.get(name) else "down"


def apps_rows(host: Host, who: Principal, name_filter: str = "") -> list[AppRow]:
    """Every app the key may reach, each with its review apps under it; `name_filter`: part of a name."""
    listed = apps.listing(host)
    shown = {a.name for a in listed if a.parent is None and who.may_reach(a.name)}
    suffix = apps.port_suffix(host.settings)
    routed = routes.read(host.settings)
    wanted = name_filter.strip().lower()[:MAX_FILTER]
    rows: dict[str, AppRow] = {}
    for a in listed:
        if (a.parent or a.name) not in shown:
            continue
        history = releaselog.listing(host, a.name)
        live = next((r for r in history if r.status == Status.LIVE), None)
        last = history[0] if history else None
        build = next((r for r in history if r.kind == Kind.BUILD), None)
        row = AppRow(a.name, a.parent, a.branch, f"http://{a.domain}{suffix}/", a.release, (a.sha or "")[:7],
                     "-" if live is None else "site" if live.serving == Serving.STATIC else "app",
                     _health(host, a.name, live, routed), when(last.created_at if last else None),
                     last.status if last else "-", last.kind if last else "-", build.tests_text if build else "-")
        if a.parent is None:
            rows[a.name] = row
        elif a.parent in rows:
            rows[a.parent].reviews.append(row)
    out = list(rows.values())
    if wanted:
        out = [r for r in out if wanted in r.name or any(wanted in v.name or wanted in (v.branch or "")
                                                         for v in r.reviews)]
    return out


def reachable(host: Host, who: Principal, app: str) -> str:
    """The app, when it exists and the key may reach it; the same 404 otherwise (an app a key may not reach is
    not said to exist)."""
    if not APP_NAME.fullmatch(app) or not who.may_reach(app) or not apps.exists(host, app):
        raise NotFound(f"no app {app[:64]!r} here")
    return app


@dataclass
class AppPage:
    name: str
    parent: str | None
    releases: list[releaselog.Release]
    live: releaselog.Release | None
    processes: list[listing.Row]
    processes_error: str
    config_names: list[tuple[str, bool]]  # (key, secret)
    config_values: dict[str, str] | None  # an admin's, on request
    domains: list[tuple[str, str]]  # (domain, certificate expiry)
    certificate: str
    services: list[str]
    disk: dict[str, object] | None
    reviews: list[str]
    url: str
    stopped: bool
    canary: list[str]  # a running canary's share, step and each release's figures (`ps` says the same)
    canary_events: list[dict[str, object]]  # its last steps, promotions and aborts (the guard's, with its figures)


def app_page(host: Host, who: Principal, app: str, *, show_values: bool = False, with_disk: bool = True) -> AppPage:
    from minipaas.deploy import canaryguard
    from minipaas.running import diskreport, processes

    reachable(host, who, app)
    access.check(who, "ps", app)
    history = releaselog.listing(host, app)
    try:
        rows, error = processes.status(host, app), ""
    except MinipaasError as exc:
        rows, error = [], exc.message
    entries = config.entries(host, app)
    values = None
    if show_values:
        if not who.is_admin:
            raise access.PermissionDenied(f"{who.name} is a deployer: config values are an admin's to see")
        values = {key: entry.value for key, entry in entries.items()}
    try:
        if certfiles.paths(host.settings, app) is None:  # spares loading cryptography (~7 MB) for none
            raise NotFound("no certificate")
        info = certs.info(host, app)
        certificate = f"{', '.join(info.sans)}: expires {info.not_after:%Y-%m-%d} ({info.days_left} days)"
    except NotFound:
        certificate = "none (HTTP only)"
    except MinipaasError as exc:
        certificate = exc.message
    disk = None
    if with_disk:
        try:
            disk = next(iter(diskreport.report(host, only=app)), None)
        except MinipaasError:
            disk = None
    listed = [a for a in apps.listing(host) if a.name == app or a.parent == app]
    own = next((a for a in listed if a.name == app), None)
    return AppPage(
        name=app, parent=own.parent if own else None, releases=history,
        live=next((r for r in history if r.status == Status.LIVE), None), processes=rows, processes_error=error,
        config_names=[(key, entry.secret) for key, entry in entries.items()], config_values=values,
        domains=[(d, "") for d in domains.of(host, app)], certificate=certificate,
        services=[f"{s.kind}:{s.name}" for s in services.linked_to(host, app)], disk=disk,
        reviews=[a.name for a in listed if a.parent == app],
        url=f"http://{own.domain}{apps.port_suffix(host.settings)}/" if own else "",
        stopped=apps.is_stopped(host, app),
        canary=canaryguard.describe(host, running) if (running := canaries.of(host, app)) else [],
        canary_events=[e for e in events.listing(host, app, limit=200)
                       if str(e.get("command", "")).startswith("canary:")][:CANARY_EVENTS])


def release(host: Host, who: Principal, app: str, number: str) -> tuple[releaselog.Release, str]:
    """A release and its build log, as `releases:info` shows them."""
    reachable(host, who, app)
    access.check(who, "releases:info", app)
    if not (number.isascii() and number.isdigit()) or len(number) > 9:
        raise NotFound(f"no release {number[:12]!r} of {app}")
    return releaselog.get(host, app, int(number)), releaselog.build_log(host, app, int(number))


@dataclass
class ServiceRow:
    kind: str
    name: str
    version: str
    backups: list[tuple[str, str, str]]  # (file, size, taken), newest first: `<kind>:backups`


@dataclass
class HostPage:
    disk: list[dict[str, object]]
    base_images: list[dict[str, object]]
    gc_lines: list[str]
    services: list[ServiceRow]
    nodes: list[str]
    events: list[dict[str, object]]
    problems: list[str]


def size(n: int) -> str:
    """A backup's size as `<kind>:backups` says it."""
    return f"{n / 1e3:.0f} kB"


def service_rows(host: Host, problems: list[str]) -> list[ServiceRow]:
    """Each service with its kept backups, as `<kind>:list` and `<kind>:backups` (addons/backups.listing) say."""
    from minipaas.addons import backups as addon_backups

    rows = []
    for s in services.all_of(host):
        try:
            kept = [(b.name, size(b.size), when(b.taken_at)) for b in reversed(addon_backups.listing(host, s))]
        except (MinipaasError, OSError) as exc:
            problems.append(f"the backups of {s.kind}:{s.name}: {getattr(exc, 'message', None) or exc}")
            kept = []
        rows.append(ServiceRow(s.kind, s.name, s.version, kept))
    return rows


def host_page(host: Host, who: Principal) -> HostPage:
    """The host as `report`, `stack:list`, `gc --dry-run`, `*:list` and `*:backups`, `cluster:nodes` and
    `events` show it: an admin's page (those commands are an admin's)."""
    from minipaas.build import stacks
    from minipaas.cluster import disks, membership
    from minipaas.running import diskreport, gc

    access.check(who, "report", None)
    problems: list[str] = []
    page = HostPage([], [], [], [], [], events.listing(host, limit=50), problems)
    try:
        page.disk = diskreport.report(host)
        page.base_images = stacks.listing(str(host.settings.home))
        gc.collect(host, dry_run=True, progress=page.gc_lines.append)
    except MinipaasError as exc:
        problems.append(exc.message)
    page.services = service_rows(host, problems)
    try:
        if membership.registry_address(host.settings):
            page.nodes = [f"{n.info.hostname} {n.info.role} {n.info.availability} {n.info.status} "
                          f"{n.tasks} tasks, disk {disks.human(n.disk)}"
                          for n in membership.nodes(host.settings)]
    except MinipaasError as exc:
        problems.append(exc.message)
    return page
