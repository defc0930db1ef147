"""`minipaas init`: create or upgrade everything this host's settings call for, idempotently."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from minipaas import buildkit, builds, engine, proxy, store
from minipaas.settings import SETTINGS_FILE, Settings, load


def init(progress: Callable[[str], None], settings: Settings | None = None) -> Settings:
    s = settings or load()
    # The builder is found once, here, and written down: a push does not probe the docker CLIs.
    s = dataclasses.replace(s, builder=_builder(s))
    for folder in (s.home, s.repos_dir, s.logs_dir, s.locks_dir, s.cache_dir):
        folder.mkdir(parents=True, exist_ok=True)
    s.home.chmod(0o755)
    (s.home / SETTINGS_FILE).write_text(s.to_toml(), encoding="utf-8")
    conn = store.connect(s.db_path)
    version = store.migrate(conn)
    conn.close()
    progress(f"-----> State in {s.db_path} (schema version {version})")
    engine.ensure_network(s.network)
    progress(f"-----> Docker network {s.network} ready")
    proxy.setup(s)
    where = f"private nginx on 127.0.0.1:{s.http_port}" if s.nginx == "private" else \
        f"the host's nginx on port {s.http_port}"
    progress(f"-----> Apps are served at http://<app>.{s.domain} by {where}")
    for line in builds.describe(s):
        progress(f"-----> {line[0].upper()}{line[1:]}")
    return s


def _builder(s: Settings) -> str:
    """auto and buildkit are resolved now; a builder found earlier is kept while its CLI is there."""
    wanted = s.builder
    if wanted.startswith(("buildkit:", "buildx:")) and not buildkit.parse(wanted).cli_exists():
        wanted = "auto"
    return buildkit.find(wanted, prefer_legacy=builds.enforcement().layout is None).spec
