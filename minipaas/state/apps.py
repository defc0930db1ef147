"""Apps: which exist, and their per-app settings (SETTINGS: defaults, checks, help).

Creating and destroying an app touches every layer: that is deploy/lifecycle.py's.
"""

from __future__ import annotations

import itertools
import os
import re
import secrets
import string
from collections.abc import Callable
from dataclasses import dataclass

from minipaas.adapters import buildcgroups
from minipaas.errors import Conflict, InvalidInput, NotFound
from minipaas.state import store
from minipaas.state.durations import duration_seconds, idle_seconds, ttl_seconds
from minipaas.state.host import Host
from minipaas.state.names import (
    check_app,
    check_hostname,
    is_count,
    is_cpus,
    is_size,
    review_parts,
    valid_image_patterns,
)
from minipaas.state.settings import Settings


@dataclass(frozen=True)
class AppSetting:
    default: str
    check: Callable[[str], bool]
    help: str


def _int_between(low: int, high: int) -> Callable[[str], bool]:
    return lambda v: is_count(v, low, high)


def _size_at_least(low: str) -> Callable[[str], bool]:
    return lambda v: is_size(v, at_least=low)


# A build leaves a core to the live apps (and to nginx) on a host with more than one.
_BUILD_CPUS = str(max(1, len(os.sched_getaffinity(0)) - 1))


def _plain_path(value: str) -> bool:
    """A relative slash-separated name (a branch, a folder): no `..`, no `.` part (the folder it is in: a static-dir
    of `.` would serve the whole repository), no leading slash, no odd characters."""
    return bool(re.fullmatch(r"[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*", value)) and ".." not in value \
        and "." not in value.split("/")


def _branch(value: str) -> bool:
    """A branch name git can have (git check-ref-format's rules for these characters): no part starting with
    a dot or ending with `.lock`, no dot at the end."""
    return _plain_path(value) and not any(part.startswith(".") or part.endswith(".lock") for part in
                                          value.split("/")) and not value.endswith(".")


# Push options a deployer may use only where an admin allowed them (setting `deployer-push-options`).
PRIVILEGED_PUSH_OPTIONS = ("skip-tests", "no-cache")


def _push_options(value: str) -> bool:
    """A comma-separated list of privileged push options (empty: none)."""
    return value == "" or all(v.strip() in PRIVILEGED_PUSH_OPTIONS for v in value.split(","))


def push_options_allowed(value: str) -> frozenset[str]:
    return frozenset(v.strip() for v in value.split(",") if v.strip())


# The most `max-containers` may be raised to: an app's network is a /26 (62 addresses; adapters/networks.py), which
# holds during a rollout the old release's containers and the new one's, its release command and its services.
MAX_CONTAINERS = 28

# markdown-html's values before it had GitHub's default: stored as the names they stand for.
MARKDOWN_HTML_ALIASES = {"on": "sanitize", "off": "escape"}

SETTINGS: dict[str, AppSetting] = {
    "deploy-branch": AppSetting(
        "", lambda v: v == "" or _branch(v), "branch whose pushes deploy (empty: master or main)"),
    "healthcheck-path": AppSetting(
        "/", lambda v: bool(re.fullmatch(r"/[A-Za-z0-9._~!$&'()*+,;=:@%/?-]*", v)),
        "path the health check requests"),
    "healthcheck-timeout": AppSetting("60", _int_between(1, 3600), "seconds a new release has to answer"),
    "drain-seconds": AppSetting("10", _int_between(0, 3600), "seconds old containers keep running after the switch"),
    "memory": AppSetting("512m", _size_at_least("6m"), "memory limit per container, at least 6m (the engine's least)"),
    "cpus": AppSetting("", lambda v: v == "" or is_cpus(v),
                       "CPUs per container, 0.01 to 1024, e.g. 0.5 (empty: no limit)"),
    "keep-releases": AppSetting("5", _int_between(0, 10_000),
                                "releases gc keeps rollback-able (0: keep everything, gc off)"),
    "pids": AppSetting("512", _int_between(16, 100_000), "most processes and threads per container"),
    "read-only": AppSetting("off", lambda v: v in ("on", "off"),
                            "on: the container's filesystem is read-only, with a writable /tmp"),
    "build-memory": AppSetting("2g", _size_at_least("32m"), "memory a build's steps may use together, e.g. 1g"),
    "build-cpus": AppSetting(_BUILD_CPUS, is_cpus, "CPUs a build may use, 0.01 to 1024, e.g. 1.5"),
    "build-pids": AppSetting("2048", _int_between(16, 100_000), "most processes and threads a build may run at once"),
    "build-timeout": AppSetting("900", _int_between(1, 3600), "seconds a build may take before it is cancelled"),
    "static-dir": AppSetting(
        "", lambda v: v == "" or _plain_path(v), "folder a static site is served from (empty: found automatically)"),
    "hsts": AppSetting("off", lambda v: v in ("on", "off"),
                       "on: HTTPS responses carry Strict-Transport-Security (browsers then insist on HTTPS)"),
    "markdown-html": AppSetting("sanitize", lambda v: v in ("sanitize", "escape", *MARKDOWN_HTML_ALIASES),
                                "sanitize: raw HTML in Markdown pages is kept, sanitized as GitHub does; "
                                "escape: it is shown as text (on and off are taken for sanitize and escape)"),
    "letsencrypt": AppSetting("off", lambda v: v in ("on", "off"),
                              "on: letsencrypt:renew keeps a certificate from the ACME CA (letsencrypt:enable)"),
    "build-images": AppSetting("", valid_image_patterns,
                               "images the app's own Dockerfile may use besides minipaas' base images "
                               "(patterns such as `node:*-slim`, separated by blanks)"),
    "review-apps": AppSetting("on", lambda v: v in ("on", "off"),
                              "on: a push of any other branch deploys it as a review app `<app>--<branch>` "
                              "at its own URL; off: other branches are only accepted"),
    "review-apps-max": AppSetting("10", _int_between(0, 1000),
                                  "review apps kept running; beyond it the least recently pushed is stopped "
                                  "(0: no limit but review-apps-limit)"),
    "review-apps-limit": AppSetting("20", _int_between(1, 1000),
                                    "review apps the app may have, running or stopped; a push of one more branch "
                                    "is refused (review-apps-max of them run)"),
    "max-containers": AppSetting("20", _int_between(1, MAX_CONTAINERS),
                                 "containers the app may run, all its process types together (ps:scale, app.json "
                                 "formation); a release or scale beyond it is refused"),
    "review-url": AppSetting("{slug}.{app}.{domain}", lambda v: _valid_review_url(v),
                             "a review app's host name: {slug} (the branch's), {app} and {domain} (the host's)"),
    "tests": AppSetting("on", lambda v: v in ("on", "off", "review-only"),
                        "on: a push runs the app's tests (its test script) in the build, and a failure rejects it; "
                        "off: never; review-only: only in review apps"),
    "canary": AppSetting("0", _int_between(0, 99),
                         "percent of new clients a pushed release takes beside the live one before `releases:promote` "
                         "(0: a push takes all traffic at once; `git push -o canary=N` for one push)"),
    "canary-steps": AppSetting("", lambda v: v == "" or canary_steps(v) is not None,
                               "the shares a canary goes through by itself, e.g. 10,50,100 (100: it promotes "
                               "itself), each after canary-interval if the guard holds (empty: manual)"),
    "review-apps-ttl": AppSetting("7d", lambda v: ttl_seconds(v) is not None,
                                  "a review app whose branch got no push for this long is destroyed by the daily "
                                  "timer and gc, e.g. 12h, 7d, 30d (1h to 365d; 0: never)"),
    "review-apps-db": AppSetting("empty", lambda v: v in ("copy", "empty", "shared"),
                                 "a new review app's database in the app's linked Postgres (and Redis): empty (its "
                                 "own, migrated by the release command), copy (its own, with the app's data at its "
                                 "creation) or shared (the app's own URL)"),
    "canary-interval": AppSetting("2m", lambda v: duration_seconds(v) is not None,
                                  "how long each canary step lasts, e.g. 90s, 2m, 1h (10s to 24h)"),
    "canary-min-requests": AppSetting("200", _int_between(1, 10_000_000),
                                      "requests a canary step needs, each release, before the guard judges it"),
    "idle": AppSetting("0", lambda v: idle_seconds(v) is not None,
                       "how long the app may serve no request before it sleeps (its containers removed until its "
                       "next request wakes it), e.g. 30m, 2h (0: never; review apps follow review-apps-idle)"),
    "review-apps-idle": AppSetting("30m", lambda v: idle_seconds(v) is not None,
                                   "how long a review app may serve no request before it sleeps, e.g. 30m "
                                   "(0: never)"),
    "deployer-push-options": AppSetting(
        "", _push_options, f"push options deployers may use (comma-separated: {', '.join(PRIVILEGED_PUSH_OPTIONS)}; "
                           "empty: none, admins always may)"),
}

def canary_steps(value: str) -> tuple[int, ...] | None:
    """`10,50,100` → (10, 50, 100): rising percentages from 1 to 100; None if it is not that."""
    parts = [p.strip() for p in value.split(",")]
    if not parts or len(parts) > 10 or not all(re.fullmatch(r"[0-9]{1,3}", p) for p in parts):
        return None
    steps = tuple(int(p) for p in parts)
    if not all(1 <= s <= 100 for s in steps) or any(a >= b for a, b in itertools.pairwise(steps)):
        return None
    return steps


# Settings of the app itself, not inherited by its review apps (a review app's own value is ignored).
PARENT_ONLY = frozenset({"deploy-branch", "review-apps", "review-apps-max", "review-apps-limit", "review-url",
                         "review-apps-ttl", "review-apps-db",
                         "review-apps-idle"})


REVIEW_URL_FIELDS = frozenset({"slug", "app", "domain"})


def _valid_review_url(template: str) -> bool:
    """`{slug}` and the other fields as they are: str.format's attributes (`{app.x}`), indexes, conversions and
    format specs would raise, or render one branch's slug well and another's not (`{slug:.4}`)."""
    try:
        fields = [(name, spec, conversion) for _, name, spec, conversion in string.Formatter().parse(template)
                  if name is not None]
    except ValueError:  # an unmatched brace
        return False
    if "slug" not in {name for name, _, _ in fields} or \
            any(name not in REVIEW_URL_FIELDS or spec or conversion for name, spec, conversion in fields):
        return False
    try:
        check_hostname(render_review_url(template, slug="a-b", app="app", domain="example.com"))
    except InvalidInput:
        return False
    return True


def render_review_url(template: str, *, slug: str, app: str, domain: str) -> str:
    return template.format_map({"slug": slug, "app": app, "domain": domain})


def exists(host: Host, name: str) -> bool:
    return host.db.execute("SELECT 1 FROM apps WHERE name = ?", (name,)).fetchone() is not None


def require(host: Host, name: str) -> str:
    check_app(name)
    if not exists(host, name):
        raise NotFound(f"app {name} does not exist (create it with `minipaas apps:create {name}`)")
    return name


def new_life() -> str:
    """A new app's life id: random, never reused, so nothing named after it outlives the app."""
    return secrets.token_hex(8)


def insert(host: Host, name: str, *, domain: str) -> None:
    """A new app's row and its default domain, in one transaction; a domain another app has refuses both."""
    with store.transaction(host.db) as db:
        if db.execute("SELECT app FROM domains WHERE domain = ?", (domain,)).fetchone():
            raise Conflict(f"domain {domain} already belongs to another app")
        db.execute("INSERT INTO apps (name, created_at, life) VALUES (?, ?, ?)", (name, store.now(), new_life()))
        db.execute("INSERT INTO domains (domain, app) VALUES (?, ?)", (domain, name))


def delete(host: Host, name: str) -> None:
    """The app's row gone, with what references it (grants, config, domains, settings...: ON DELETE CASCADE)."""
    with store.transaction(host.db) as db:
        db.execute("DELETE FROM apps WHERE name = ?", (name,))


def destroyed(host: Host, name: str) -> list[str]:
    """`apps:destroy`'s last step: the app's row gone as `delete`, and its retirements, in one transaction; returns
    the keys that had a grant on it."""
    with store.transaction(host.db) as db:
        granted = [row["name"] for row in db.execute("SELECT name FROM key_grants WHERE app = ? ORDER BY name",
                                                       (name,))]
        db.execute("DELETE FROM apps WHERE name = ?", (name,))
        db.execute("DELETE FROM retirements WHERE app = ?", (name,))
    return granted


def life(host: Host, name: str) -> str:
    """The id of this app's life (since its `apps:create`); "" for an app that no longer exists."""
    row = host.db.execute("SELECT life FROM apps WHERE name = ?", (name,)).fetchone()
    return row["life"] if row else ""


def set_stopped(host: Host, name: str, stopped: bool) -> None:
    """Whether the app was stopped with ps:stop: ps:restore leaves it so until ps:start or a deploy."""
    with store.transaction(host.db) as db:
        db.execute("UPDATE apps SET stopped = ? WHERE name = ?", (int(stopped), name))


def is_stopped(host: Host, name: str) -> bool:
    row = host.db.execute("SELECT stopped FROM apps WHERE name = ?", (name,)).fetchone()
    return bool(row and row["stopped"])


def names(host: Host) -> list[str]:
    return [row["name"] for row in host.db.execute("SELECT name FROM apps ORDER BY name")]


@dataclass(frozen=True)
class Listed:
    """An app as `apps:list` shows it: its parent and branch (a review app's), live release and default domain."""

    name: str
    parent: str | None
    branch: str | None
    release: int | None
    sha: str | None
    domain: str


def listing(host: Host) -> list[Listed]:
    """Every app with its live release and default domain, each followed by its review apps (the most recently
    pushed first, as `reviews.of`), in two queries whatever the number of apps."""
    templates = {row["app"]: row["value"]
                 for row in host.db.execute("SELECT app, value FROM app_settings WHERE key = 'review-url'")}
    rows = host.db.execute(
        "SELECT a.name, a.parent, a.branch, r.number, r.sha FROM apps a "
        "LEFT JOIN releases r ON r.app = a.name AND r.status = 'live' "
        "ORDER BY coalesce(a.parent, a.name), a.parent IS NOT NULL, coalesce(a.pushed_at, a.created_at) DESC, a.name")
    out = []
    for row in rows:
        review = review_parts(row["name"]) if row["parent"] else None
        if review is None:
            domain = f"{row['name']}.{host.settings.domain}"
        else:
            domain = render_review_url(templates.get(row["parent"], SETTINGS["review-url"].default), slug=review[1],
                                       app=row["parent"], domain=host.settings.domain)
        out.append(Listed(row["name"], row["parent"], row["branch"], row["number"], row["sha"], domain))
    return out


def idle_limits(host: Host) -> dict[str, int]:
    """Every app that may sleep and after how many idle seconds: a review app by its parent's `review-apps-idle`, any
    other by its `idle` (those at 0 are left out), in one query whatever the number of apps. Only apps whose live
    release runs containers: a static or Markdown site has none to stop."""
    defaults = {key: SETTINGS[key].default for key in ("idle", "review-apps-idle")}
    rows = host.db.execute(
        "SELECT a.name, coalesce(s.value, ?) AS review_idle, coalesce(o.value, ?) AS own_idle, a.parent "
        "FROM apps a JOIN releases r ON r.app = a.name AND r.status = 'live' AND r.serving = 'container' "
        "LEFT JOIN app_settings s ON s.app = a.parent AND s.key = 'review-apps-idle' "
        "LEFT JOIN app_settings o ON o.app = a.name AND o.key = 'idle' "
        "WHERE a.stopped = 0", (defaults["review-apps-idle"], defaults["idle"]))
    limits = {}
    for row in rows:
        seconds = idle_seconds(row["review_idle"] if row["parent"] else row["own_idle"])
        if seconds:
            limits[row["name"]] = seconds
    return limits


def port_suffix(settings: Settings) -> str:
    """What an app's URL adds after its host name: the HTTP port, unless it is 80."""
    return "" if settings.http_port == 80 else f":{settings.http_port}"


def default_domain(host: Host, name: str) -> str:
    """`<app>.<domain>`; a review app's from its parent's review-url (`<slug>.<app>.<domain>`)."""
    review = review_parts(name)
    if review is not None and exists(host, review[0]):
        parent, slug = review
        return render_review_url(get_setting(host, parent, "review-url"), slug=slug, app=parent,
                                 domain=host.settings.domain)
    return f"{name}.{host.settings.domain}"


def build_limits(host: Host, name: str) -> buildcgroups.BuildLimits:
    values = all_settings(host, name)
    return buildcgroups.BuildLimits(memory=values["build-memory"], cpus=float(values["build-cpus"]),
                                    pids=int(values["build-pids"]), timeout=int(values["build-timeout"]))


def get_setting(host: Host, name: str, key: str) -> str:
    if key not in SETTINGS:
        raise InvalidInput(f"unknown setting {key!r}; known: {', '.join(SETTINGS)}")
    # A review app's own value, else its parent's, else the default.
    row = host.db.execute(
        "SELECT s.value FROM app_settings s, apps a WHERE a.name = ? AND s.key = ? "
        "AND (s.app = a.parent OR (s.app = a.name AND (a.parent IS NULL OR ? = 0))) "
        "ORDER BY s.app = a.name DESC LIMIT 1",
        (name, key, key in PARENT_ONLY)).fetchone()
    return _canonical(key, row["value"]) if row else SETTINGS[key].default


def _canonical(key: str, value: str) -> str:
    """A value as it is stored and shown: markdown-html's on/off (kept from before) as sanitize/escape."""
    return MARKDOWN_HTML_ALIASES.get(value, value) if key == "markdown-html" else value


def all_settings(host: Host, name: str) -> dict[str, str]:
    return {key: get_setting(host, name, key) for key in SETTINGS}


def check_setting(key: str, value: str) -> None:
    """Refuse, in one line, a setting that does not exist or a value it does not take."""
    if key not in SETTINGS:
        raise InvalidInput(f"unknown setting {key!r}; known: {', '.join(SETTINGS)}")
    if not SETTINGS[key].check(value):
        raise InvalidInput(f"invalid value {value!r} for {key}: {SETTINGS[key].help}")


def set_setting(host: Host, name: str, key: str, value: str) -> None:
    check_setting(key, value)
    value = _canonical(key, value)
    with store.transaction(host.db) as db:
        db.execute("INSERT INTO app_settings (app, key, value) VALUES (?, ?, ?) "
                   "ON CONFLICT (app, key) DO UPDATE SET value = excluded.value", (name, key, value))
