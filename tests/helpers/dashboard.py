"""A dashboard home for the fast tier: a MINIPAAS_HOME with keys and apps in SQLite, and a client logged in
as a given key through starlette's TestClient (the `home` fixture: import it into the test module)."""

from __future__ import annotations

import base64
import hashlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from minipaas.access import sessions
from minipaas.access.access import Principal
from minipaas.dashboard import web
from minipaas.state import store
from minipaas.state.host import Host
from minipaas.state.settings import load

BASE = "http://dashboard.paas.test"


def fingerprint(seed: str) -> str:
    return "SHA256:" + base64.b64encode(hashlib.sha256(seed.encode()).digest()).decode().rstrip("=")


@dataclass
class Home:
    path: Path
    env: dict[str, str]
    host: Host

    def key(self, name: str, role: str, *apps: str) -> Principal:
        fp = fingerprint(name + str(len(self.host.db.execute("SELECT * FROM ssh_keys").fetchall())))
        with store.transaction(self.host.db) as db:
            db.execute("INSERT INTO ssh_keys (name, role, fingerprint, key_type, key_data, created_at) "
                       "VALUES (?, ?, ?, 'ssh-ed25519', 'AAAA', ?)", (name, role, fp, store.now()))
            for app in apps:
                db.execute("INSERT INTO key_grants (name, app) VALUES (?, ?)", (name, app))
        return Principal(name, role, fp, frozenset(apps))

    def app(self, name: str, *, parent: str | None = None, branch: str | None = None) -> None:
        with store.transaction(self.host.db) as db:
            db.execute("INSERT INTO apps (name, created_at, parent, branch, pushed_at, life) "
                       "VALUES (?, ?, ?, ?, ?, ?)", (name, store.now(), parent, branch, store.now(), "life"))
            for number, status in ((1, "superseded"), (2, "live")):
                db.execute("INSERT INTO releases (app, number, kind, sha, image, buildpack, status, pusher, "
                           "created_at, tests) VALUES (?, ?, 'build', ?, '', 'node', ?, 'alice', ?, 'passed')",
                           (name, number, f"{number}abcdef0123456789", status, store.now()))
            db.execute("INSERT INTO config (app, key, value, secret) "
                       "VALUES (?, 'DATABASE_URL', 'postgres://s3cret', 1)", (name,))


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Home]:
    path = tmp_path / "home"
    path.mkdir()
    env = {**os.environ, "MINIPAAS_HOME": str(path), "MINIPAAS_DOMAIN": "paas.test",
           "MINIPAAS_AUTHORIZED_KEYS": str(tmp_path / "authorized_keys"), "MINIPAAS_NGINX": "private"}
    host = Host(load(env))
    # No engine here: ps shows nothing and the disk report is empty (the engine tests show them).
    monkeypatch.setattr("minipaas.running.processes.status", lambda host, app: [])
    monkeypatch.setattr("minipaas.running.diskreport.report", lambda host, only=None: [])
    home = Home(path, env, host)
    home.app("shop")
    home.app("shop--feature-x", parent="shop", branch="feature/x")
    home.app("blog")
    yield home


def client(home: Home) -> TestClient:
    return TestClient(web.create_app(home.host.settings), base_url=BASE, follow_redirects=False)


def logged_in(home: Home, who: Principal) -> tuple[TestClient, str]:
    c = client(home)
    token = sessions.mint_link(home.host, who)
    page = c.get(f"/login/{token}")
    assert page.status_code == 200, page.text
    csrf = re.search(r'name="csrf" value="([^"]+)"', c.get("/").text)
    assert csrf is not None
    return c, csrf.group(1)
