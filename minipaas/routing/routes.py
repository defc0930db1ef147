"""Where each app's traffic goes: the routing table of nginx's Lua balancer, changed without a reload.

nginx keeps the table in shared memory (`nginx/lua/minipaas/routes.lua`); every vhost hands its
requests to the balancer, which picks one of the app's live web containers. A deploy changes the
app's entry through nginx's control server, a unix socket in a folder only root can enter, and the
same table is kept in `nginx/routes`, which nginx reads at every start and reload: a restarted nginx
routes as before. `switch` returns once nginx holds the new entry, so from then on every new request
reaches the new containers ("live" means live); the old ones finish what they have.

`parse` and `render` are pure; the rest writes the file and talks to nginx.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

from minipaas import faultpoints
from minipaas.errors import ProxyError
from minipaas.state import locks, perms
from minipaas.state.settings import Settings

ADDRESS = re.compile(r"[0-9a-fA-F.:\[\]]+:\d{1,5}")
CONTROL_TIMEOUT = 10.0


def routes_file(settings: Settings) -> Path:
    return settings.nginx_dir / "routes"


def owners_file(settings: Settings) -> Path:
    """Which container each routed address is (container id → [app, address]): how the watcher knows
    what to unroute when the engine reports a container gone."""
    return settings.nginx_dir / "route-owners.json"


def control_socket(settings: Settings) -> Path:
    # In a root-only folder: nginx's master (root) binds it, its workers serve it on the inherited
    # socket, and no other account (nginx's workers' group included) can change where apps go.
    return settings.nginx_dir / "control" / "control.sock"


def parse(text: str) -> dict[str, list[str]]:
    """`app host:port host:port` lines → app → addresses."""
    table: dict[str, list[str]] = {}
    for line in text.splitlines():
        fields = line.split()
        if fields:
            table[fields[0]] = [a for a in fields[1:] if ADDRESS.fullmatch(a)]
    return table


def render(table: dict[str, list[str]]) -> str:
    return "".join(f"{app} {' '.join(addresses)}\n" for app, addresses in sorted(table.items()))


def read(settings: Settings) -> dict[str, list[str]]:
    path = routes_file(settings)
    return parse(path.read_text(encoding="utf-8")) if path.exists() else {}


def addresses(settings: Settings, app: str) -> list[str]:
    """Where the app's traffic goes now (its live web containers), as minipaas last set it."""
    return read(settings).get(app, [])


def owned(settings: Settings, app: str) -> dict[str, str]:
    """The app's routed addresses by what serves there (container or Swarm task id → address)."""
    return {owner: address for owner, (of, address) in _owners(settings).items() if of == app}


def switch(settings: Settings, app: str, targets: dict[str, str]) -> None:
    """Send the app's requests to `targets` (host:port → container id); returns once nginx does so."""
    for address in targets:
        if not ADDRESS.fullmatch(address):
            raise ProxyError(f"not an address to route to: {address!r}")
    with _locked(settings):
        _change(settings, app, targets)


def unroute(settings: Settings, app: str) -> None:
    """Send the app no traffic at all: its vhost answers 503."""
    with _locked(settings):
        _change(settings, app, None)


def forget_container(settings: Settings, container: str, *, stale: Callable[[], bool] = lambda: False) -> str | None:
    """A container the engine says is gone leaves its app's route at once; returns that app, if routed.

    `stale` is asked under the table's lock, where no deploy changes the route meanwhile: whether the news
    is old (the container was started and routed again since)."""
    with _locked(settings):
        if stale():
            return None
        owners = _owners(settings)
        owned = owners.get(container)
        if owned is None:
            return None
        app, address = owned
        targets = {a: c for c, (o, a) in owners.items() if o == app and c != container}
        if address not in read(settings).get(app, []):
            return None
        _change(settings, app, targets or None)
        return app


def containers(settings: Settings, app: str) -> set[str]:
    """The containers the app's route names (their ids), as minipaas last set it."""
    return {container for container, (owner, _) in _owners(settings).items() if owner == app}


def routed(settings: Settings) -> dict[str, str]:
    """Every routed container (its id) and its app."""
    return {container: owner for container, (owner, _) in _owners(settings).items()}


def add_container(settings: Settings, app: str, address: str, container: str) -> None:
    """Put a container back into its app's route, beside the ones there (a restarted crash)."""
    with _locked(settings):
        targets = {a: c for c, (o, a) in _owners(settings).items() if o == app}
        targets[address] = container
        _change(settings, app, targets)


def _owners(settings: Settings) -> dict[str, tuple[str, str]]:
    try:
        data = json.loads(owners_file(settings).read_text(encoding="utf-8"))
        return {str(c): (str(v[0]), str(v[1])) for c, v in data.items()}
    except (OSError, ValueError, TypeError, IndexError, AttributeError):
        return {}


def _change(settings: Settings, app: str, targets: dict[str, str] | None) -> None:
    """The one way the table changes (under the lock): the files, then nginx; undone if nginx refuses."""
    table = read(settings)
    before_table, before_owners = dict(table), _owners(settings)
    owners = {c: v for c, v in before_owners.items() if v[0] != app}
    if targets is None:
        if app not in table:
            return
        del table[app]
    else:
        table[app] = list(targets)
        owners.update({container: (app, address) for address, container in targets.items()})
    # The files first: an nginx reload between the two reads them, and holds the new entry as well.
    _write(settings, table, owners)
    faultpoints.reached("switch")
    try:
        if targets is None:
            _control(settings, "DELETE", app)
        else:
            _control(settings, "PUT", app, " ".join(targets))
    except ProxyError:
        _write(settings, before_table, before_owners)
        raise


def _write(settings: Settings, table: dict[str, list[str]], owners: dict[str, tuple[str, str]]) -> None:
    perms.write_file(routes_file(settings), render(table).encode(), perms.PRIVATE_FILE)
    perms.write_file(owners_file(settings), json.dumps({c: list(v) for c, v in sorted(owners.items())}).encode(),
                     perms.PRIVATE_FILE)


def nginx_view(settings: Settings, app: str) -> list[str]:
    """What nginx itself routes the app to (its shared memory), for checks and tests."""
    return _control(settings, "GET", app).split()


def _locked(settings: Settings) -> AbstractContextManager[None]:
    """One writer of the table at a time, across processes (two apps deploying at once)."""
    return locks.held(locks.instance_lock(settings, "nginx.routes"))


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path) -> None:
        super().__init__("localhost", timeout=CONTROL_TIMEOUT)
        self.path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(CONTROL_TIMEOUT)
        sock.connect(str(self.path))
        self.sock = sock


def _control(settings: Settings, method: str, app: str, body: str = "") -> str:
    conn = _UnixConnection(control_socket(settings))
    try:
        conn.request(method, f"/routes?app={app}", body=body.encode() if method == "PUT" else None)
        response = conn.getresponse()
        text = response.read().decode(errors="replace")
    except OSError as exc:
        raise ProxyError(f"nginx does not answer on its control socket ({exc.strerror or exc}); "
                         "is it running? (`minipaas ps:restore` starts it)") from None
    finally:
        conn.close()
    if response.status not in (200, 204):
        raise ProxyError(f"nginx refused the route of {app}: HTTP {response.status} {text.strip()[:200]}")
    return text
