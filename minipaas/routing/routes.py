"""Where each app's traffic goes: the routing table of nginx's Lua balancer, by app and version, changed
without a reload.

nginx keeps the table in shared memory (`nginx/lua/minipaas/routes.lua`); every vhost hands its
requests to the balancer, which picks one of the app's live web containers. An app's entry holds one
or more versions (releases), each with a weight (its share of new clients) and its containers; nginx
picks a version per request (a pin, a cookie, else the weights: docs/architecture.md) and a container
of it. A deploy changes the app's entry through nginx's control server, a unix socket in a folder only
root can enter, and the same table is kept in `nginx/routes`, which nginx reads at every start and
reload: a restarted nginx routes as before. `switch` and `set_versions` return once nginx holds the
new entry, so from then on every new request reaches the new containers ("live" means live); the old
ones finish what they have.

An app that sleeps (it was idle; running/sleeping.py) keeps an entry with no version, `sleep` in the table: nginx
holds its requests while minipaas wakes it (`nginx/lua/minipaas/wake.lua`), whose wakes the watcher asks for
(`wanted_wakes`); `last_requests` says when each app last served a request.

`parse`, `render`, `renormalised` and `parse_last_requests` are pure; the rest writes the files and talks to nginx.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from minipaas import faultpoints
from minipaas.adapters.unixhttp import UnixHTTPConnection
from minipaas.errors import ProxyError
from minipaas.state import locks, perms
from minipaas.state.settings import Settings

ADDRESS = re.compile(r"[0-9a-fA-F.:\[\]]+:\d{1,5}")
# A version's marker in a route's line: `<release>=<weight>`, followed by its addresses.
MARKER = re.compile(r"(\d{1,9})=(\d{1,3})")
# A sleeping app's entry: no version, its requests held while it wakes (an empty Entry in this module).
SLEEP = "sleep"
CONTROL_TIMEOUT = 10.0


@dataclass(frozen=True)
class Version:
    """One routable release of an app."""

    release: int  # its number (0: unknown, e.g. a table written by an older minipaas)
    weight: int  # its share of new clients, 0..100; an app's weights add up to 100
    targets: dict[str, str]  # "host:port" -> container or Swarm task id ("" where unknown)


def routes_file(settings: Settings) -> Path:
    return settings.nginx_dir / "routes"


def owners_file(settings: Settings) -> Path:
    """Which container each routed address is (container id → [app, address, release]): how the watcher knows
    what to unroute when the engine reports a container gone, and into which version it comes back."""
    return settings.nginx_dir / "route-owners.json"


def control_socket(settings: Settings) -> Path:
    # In a root-only folder: nginx's master (root) binds it, its workers serve it on the inherited
    # socket, and no other account (nginx's workers' group included) can change where apps go.
    return settings.nginx_dir / "control" / "control.sock"


# An app's entry in the file: its versions, each (release, weight, addresses).
Entry = list[tuple[int, int, list[str]]]


def parse_entry(fields: list[str]) -> Entry:
    """`12=90 host:port host:port 13=10 host:port` → versions; addresses before any marker (the format of
    minipaas before versions) are one version, release 0, weight 100; `sleep`: none (a sleeping app)."""
    entry: Entry = []
    for field in fields:
        marker = MARKER.fullmatch(field)
        if marker:
            entry.append((int(marker.group(1)), int(marker.group(2)), []))
        elif ADDRESS.fullmatch(field):
            if not entry:
                entry.append((0, 100, []))
            entry[-1][2].append(field)
    return entry


def render_entry(entry: Entry) -> str:
    if not entry:
        return SLEEP
    return " ".join(f"{release}={weight} {' '.join(addresses)}" for release, weight, addresses in entry)


def parse(text: str) -> dict[str, Entry]:
    """One line per app: `app 12=90 host:port ... 13=10 host:port ...` (or the older `app host:port ...`)."""
    table: dict[str, Entry] = {}
    for line in text.splitlines():
        fields = line.split()
        # An app's name alone (never written: an unrouted app's line goes) routes nothing, as in nginx: no entry.
        # An entry with no version is a sleeping app's, `sleep`.
        if len(fields) > 1:
            table[fields[0]] = parse_entry(fields[1:])
    return table


def render(table: dict[str, Entry]) -> str:
    return "".join(f"{app} {render_entry(entry)}\n" for app, entry in sorted(table.items()))


def check(versions: list[Version]) -> list[Version]:
    """The versions in release order, or ProxyError saying what is wrong with them."""
    if not versions:
        raise ProxyError("a route needs at least one version")
    releases = [v.release for v in versions]
    if len(set(releases)) != len(releases):
        raise ProxyError(f"a release is routed twice: {' '.join(map(str, sorted(releases)))}")
    for v in versions:
        if not 0 <= v.release <= 999_999_999:
            raise ProxyError(f"not a release number: {v.release}")
        if not 0 <= v.weight <= 100:
            raise ProxyError(f"weight {v.weight} of release {v.release} is not 0..100")
        if not v.targets:
            raise ProxyError(f"release {v.release} has no address to route to")
        for address in v.targets:
            if not ADDRESS.fullmatch(address):
                raise ProxyError(f"not an address to route to: {address!r}")
    if sum(v.weight for v in versions) != 100:
        raise ProxyError(f"weights must add up to 100, not {sum(v.weight for v in versions)} "
                         f"({' '.join(f'{v.release}={v.weight}' for v in versions)})")
    return sorted(versions, key=lambda v: v.release)


def renormalised(versions: list[Version]) -> list[Version]:
    """The weights scaled to add up to 100 again (a version left the route), the largest remainders rounded
    up; all of them 0: shared equally."""
    if not versions:
        return []
    total = sum(v.weight for v in versions)
    raw = [v.weight * 100 / total if total else 100 / len(versions) for v in versions]
    weights = [int(w) for w in raw]
    by_remainder = sorted(range(len(raw)), key=lambda i: (raw[i] - weights[i], versions[i].release), reverse=True)
    for i in by_remainder[:100 - sum(weights)]:
        weights[i] += 1
    return [Version(v.release, w, v.targets) for v, w in zip(versions, weights, strict=True)]


def read(settings: Settings) -> dict[str, Entry]:
    path = routes_file(settings)
    return parse(path.read_text(encoding="utf-8")) if path.exists() else {}


def addresses(settings: Settings, app: str) -> list[str]:
    """Where the app's traffic goes now (its live web containers, of every version), as minipaas last set it."""
    return [a for _, _, found in read(settings).get(app, []) for a in found]


def versions(settings: Settings, app: str) -> list[Version]:
    """The app's routed versions in release order, as minipaas last set them; empty if unrouted."""
    owner_of = {address: c for c, (of, address, _) in _owners(settings).items() if of == app}
    return [Version(release, weight, {a: owner_of.get(a, "") for a in found})
            for release, weight, found in read(settings).get(app, [])]


def owned(settings: Settings, app: str) -> dict[str, str]:
    """The app's routed addresses by what serves there (container or Swarm task id → address)."""
    return {owner: address for owner, (of, address, _) in _owners(settings).items() if of == app}


def switch(settings: Settings, app: str, targets: dict[str, str], *, release: int = 0) -> None:
    """Send all of the app's requests to `targets` (host:port → container id), one version; returns once
    nginx does so."""
    set_versions(settings, app, [Version(release, 100, dict(targets))])


def set_versions(settings: Settings, app: str, new: list[Version]) -> None:
    """Route the app to these versions at once (1..N, weights adding up to 100); returns once nginx does so."""
    checked = check(new)
    with _locked(settings):
        _change(settings, app, checked)


def unroute(settings: Settings, app: str) -> None:
    """Send the app no traffic at all: its vhost answers 503."""
    with _locked(settings):
        _change(settings, app, None)


def sleep(settings: Settings, app: str) -> None:
    """The app sleeps: no container gets its requests, nginx holds them and asks for a wake (`wanted_wakes`)."""
    with _locked(settings):
        _change(settings, app, [])


def sleeping(settings: Settings) -> set[str]:
    """The apps whose route sleeps, as minipaas last set it."""
    return {app for app, entry in read(settings).items() if not entry}


def wanted_wakes(settings: Settings, *, wait: float) -> list[str]:
    """The sleeping apps a request is waiting for, each once, as soon as there is one or after `wait` seconds."""
    text = control(settings, f"/wakes?wait={wait:g}", timeout=wait + CONTROL_TIMEOUT, what="the wakes")
    return [line for line in text.split() if line]


def woken(settings: Settings, app: str, failure: str = "") -> None:
    """Tell nginx the app's wake ended: its held requests go on (awake), or get a 503 saying `failure`."""
    control(settings, f"/wakes?app={app}", "POST", failure, what=f"the wake of {app}")


def last_requests(settings: Settings) -> tuple[float, dict[str, float]]:
    """nginx's clock now, and when each app that served a request since nginx started last did (unix seconds)."""
    return parse_last_requests(control(settings, "/idle", what="the apps' last requests"))


def parse_last_requests(text: str) -> tuple[float, dict[str, float]]:
    """`now 1700000000.5` then `APP SECONDS` a line → (now, {app: seconds}); lines that are neither are skipped."""
    now, last = 0.0, {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) != 2:
            continue
        try:
            value = float(fields[1])
        except ValueError:
            continue
        if fields[0] == "now":
            now = value
        else:
            last[fields[0]] = value
    return now, last


def forget_container(settings: Settings, container: str, *, stale: Callable[[], bool] = lambda: False) -> str | None:
    """A container the engine says is gone leaves its app's route at once; returns that app, if routed. A
    version left with no container leaves too, its weight shared by the others.

    `stale` is asked under the table's lock, where no deploy changes the route meanwhile: whether the news
    is old (the container was started and routed again since)."""
    with _locked(settings):
        if stale():
            return None
        found = _owners(settings).get(container)
        if found is None:
            return None
        app, address, _ = found
        if address not in addresses(settings, app):
            return None
        _change(settings, app, _without(versions(settings, app), address) or None)
        return app


def containers(settings: Settings, app: str) -> set[str]:
    """The containers the app's route names (their ids), as minipaas last set it."""
    return {container for container, (owner, _, _) in _owners(settings).items() if owner == app}


def routed(settings: Settings) -> dict[str, str]:
    """Every routed container (its id) and its app."""
    return {container: owner for container, (owner, _, _) in _owners(settings).items()}


def add_container(settings: Settings, app: str, address: str, container: str, *, release: int | None = None) -> None:
    """Put a container back into its app's route, beside the ones there (a restarted crash): into its release's
    version, else (release unknown or no longer routed) the version with the most weight."""
    if not ADDRESS.fullmatch(address):
        raise ProxyError(f"not an address to route to: {address!r}")
    with _locked(settings):
        before = versions(settings, app)
        if not before:
            _change(settings, app, [Version(release or 0, 100, {address: container})])
            return
        # Its home is chosen before the address leaves the others: a version whose one container this is (routed
        # again by a deploy or ps:restore meanwhile) must not vanish and send the container to another release.
        home = release if any(v.release == release for v in before) \
            else max(before, key=lambda v: (v.weight, v.release)).release
        # One version per address (the engine may have handed it out again, to a container of another release).
        now = [Version(v.release, v.weight, {**{a: c for a, c in v.targets.items() if a != address},
                                             **({address: container} if v.release == home else {})})
               for v in before]
        _change(settings, app, renormalised([v for v in now if v.targets]))


def _without(now: list[Version], address: str) -> list[Version]:
    """The versions without this address; one left with none goes, its weight shared by the others."""
    left = [Version(v.release, v.weight, {a: c for a, c in v.targets.items() if a != address}) for v in now]
    return renormalised([v for v in left if v.targets])


def _owners(settings: Settings) -> dict[str, tuple[str, str, int]]:
    """container → (app, address, release); entries of an older minipaas have no release (0)."""
    try:
        data = json.loads(owners_file(settings).read_text(encoding="utf-8"))
        return {str(c): (str(v[0]), str(v[1]), int(v[2]) if len(v) > 2 else 0) for c, v in data.items()}
    except (OSError, ValueError, TypeError, IndexError, AttributeError):
        return {}


def _change(settings: Settings, app: str, new: list[Version] | None) -> None:
    """The one way the table changes (under the lock): the files, then nginx; undone if nginx refuses. `new`: None
    unroutes, [] sleeps."""
    table = read(settings)
    before_table, before_owners = dict(table), _owners(settings)
    owners = {c: v for c, v in before_owners.items() if v[0] != app}
    if new is None:
        if app not in table:
            return
        del table[app]
    else:
        table[app] = [(v.release, v.weight, list(v.targets)) for v in new]
        owners.update({container: (app, address, v.release)
                       for v in new for address, container in v.targets.items() if container})
    # The files first: an nginx reload between the two reads them, and holds the new entry as well.
    _write(settings, table, owners)
    faultpoints.reached("switch")
    try:
        if new is None:
            _control(settings, "DELETE", app)
        else:
            _control(settings, "PUT", app, render_entry(table[app]))
    except ProxyError:
        _write(settings, before_table, before_owners)
        raise


def _write(settings: Settings, table: dict[str, Entry], owners: dict[str, tuple[str, str, int]]) -> None:
    perms.write_file(routes_file(settings), render(table).encode(), perms.PRIVATE_FILE)
    perms.write_file(owners_file(settings), json.dumps({c: list(v) for c, v in sorted(owners.items())}).encode(),
                     perms.PRIVATE_FILE)


def nginx_view(settings: Settings, app: str) -> list[str]:
    """What nginx itself routes the app to (its shared memory; every version's addresses), for checks and tests."""
    return [a for _, _, found in nginx_versions(settings, app) for a in found]


def nginx_versions(settings: Settings, app: str) -> Entry:
    """The app's versions as nginx holds them: (release, weight, addresses)."""
    return parse_entry(_control(settings, "GET", app).split())


def _locked(settings: Settings) -> AbstractContextManager[None]:
    """One writer of the table at a time, across processes (two apps deploying at once)."""
    return locks.held(locks.instance_lock(settings, "nginx.routes"))


def control(settings: Settings, path: str, method: str = "GET", body: str = "", *, what: str = "",
            timeout: float = CONTROL_TIMEOUT) -> str:
    """A request to nginx's control server (`/routes?app=NAME`, `/metrics?app=NAME`, `/wakes`, `/idle`); its answer's
    text. `what`: the thing refused, for the message."""
    conn = UnixHTTPConnection(control_socket(settings), timeout=timeout)
    try:
        conn.request(method, path, body=body.encode() if method in ("PUT", "POST") else None)
        response = conn.getresponse()
        text = response.read().decode(errors="replace")
    except OSError as exc:
        raise ProxyError(f"nginx does not answer on its control socket ({exc.strerror or exc}); "
                         "is it running? (`minipaas ps:restore` starts it)") from None
    finally:
        conn.close()
    if response.status not in (200, 204):
        raise ProxyError(f"nginx refused {what or path}: HTTP {response.status} {text.strip()[:200]}")
    return text


def _control(settings: Settings, method: str, app: str, body: str = "") -> str:
    return control(settings, f"/routes?app={app}", method, body, what=f"the route of {app}")
