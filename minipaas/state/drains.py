"""Each app's log drains (their URLs, in the order they were added) and the home's shipper port.

Records only: what a drain URL may be and what the shipper is told are access/drains.py's; applying them is
running/drains.py's. The URLs are kept in app_settings under `log-drains` (a JSON list; not a `config:`-style
setting, so it is not in apps.SETTINGS), in the root-only database: they go when the app goes.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

from minipaas.state import store
from minipaas.state.host import Host
from minipaas.state.settings import Settings

KEY = "log-drains"


def of(host: Host, app: str) -> list[str]:
    row = host.db.execute("SELECT value FROM app_settings WHERE app = ? AND key = ?", (app, KEY)).fetchone()
    return list(json.loads(row["value"])) if row else []


def every(host: Host) -> dict[str, list[str]]:
    """Each app with drains: its URLs."""
    rows = host.db.execute("SELECT app, value FROM app_settings WHERE key = ? ORDER BY app", (KEY,)).fetchall()
    return {row["app"]: list(json.loads(row["value"])) for row in rows if json.loads(row["value"])}


def store_urls(host: Host, app: str, urls: list[str]) -> None:
    with store.transaction(host.db) as db:
        if urls:
            db.execute("INSERT INTO app_settings (app, key, value) VALUES (?, ?, ?) "
                       "ON CONFLICT (app, key) DO UPDATE SET value = excluded.value", (app, KEY, json.dumps(urls)))
        else:
            db.execute("DELETE FROM app_settings WHERE app = ? AND key = ?", (app, KEY))


def port_file(settings: Settings) -> Path:
    return settings.layout.drains_dir / "port"


def port(settings: Settings) -> int | None:
    """The shipper's 127.0.0.1 UDP port, once it has one."""
    try:
        return int(port_file(settings).read_text().strip())
    except (OSError, ValueError):
        return None


def ensure_port(settings: Settings) -> int:
    """The shipper's port, chosen once per home (a port free now, kept: containers are made with it)."""
    known = port(settings)
    if known is not None:
        return known
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        chosen = probe.getsockname()[1]
    settings.layout.drains_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    port_file(settings).write_text(f"{chosen}\n")
    return chosen
