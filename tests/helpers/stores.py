"""A host of the fast tier: a fresh home (MINIPAAS_HOME under the test's tmp_path) whose SQLite store holds the
apps named, and nothing else: no engine, no nginx, no repository."""

from __future__ import annotations

from pathlib import Path

import pytest

from minipaas.state import settings as settings_mod
from minipaas.state import store
from minipaas.state.host import Host


def store_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *apps: str,
               parents: dict[str, str] | None = None) -> Host:
    """The home `tmp_path/home`, made the process' MINIPAAS_HOME for the test, with `apps` recorded (`parents`:
    review app → its app, for those of `apps` that are review apps)."""
    monkeypatch.setenv("MINIPAAS_HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    host = Host(settings_mod.load())
    with store.transaction(host.db) as db:
        for app in apps:
            db.execute("INSERT INTO apps (name, created_at, parent) VALUES (?, 0, ?)",
                       (app, (parents or {}).get(app)))
    return host
