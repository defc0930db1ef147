"""The app-facing proxy: nginx's configuration for every app (see docs/architecture.md).

One nginx holds the clients' connections and talks to the apps' containers over kept-alive
connections: the host's nginx (MINIPAAS_NGINX=system) or a master of our own (private). Each app has
a vhost (`sites/<app>.conf`, server names = the app's domains); where its requests go is the routing
table of `routes.py`, which a deploy changes without a reload. nginx is reloaded only when a vhost
changes (domains, certificates, an app becoming a static site). Every change is written atomically,
checked with `nginx -t`, and rolled back if nginx rejects it.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import jinja2

from minipaas.adapters import nginx
from minipaas.build import buildpacks
from minipaas.build.buildpacks import template_cache
from minipaas.errors import InvalidInput, ProxyError
from minipaas.routing import certfiles, routes, sites
from minipaas.routing.docmodel import CSP
from minipaas.state import apps, locks, perms, releaselog
from minipaas.state.host import Host
from minipaas.state.settings import Settings

MAX_SOCKET_PATH = 100  # sun_path is 108 bytes, nginx needs "unix:" and a NUL


@dataclass(frozen=True)
class Layout:
    """Where the generated nginx files of one minipaas home live."""

    root: Path

    @property
    def sites(self) -> Path:
        return self.root / "sites"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def http_conf(self) -> Path:
        return self.root / "http.conf"

    @property
    def front_conf(self) -> Path:
        return self.root / "front.conf"

    @property
    def control(self) -> Path:
        return self.root / "control"


def layout(settings: Settings) -> Layout:
    return Layout(settings.nginx_dir)


def _templates(settings: Settings) -> jinja2.Environment:
    return jinja2.Environment(
        bytecode_cache=template_cache(settings.cache_dir),
        loader=jinja2.FileSystemLoader(str(settings.nginx_templates)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )


def _render(settings: Settings, template: str, **values: object) -> str:
    try:
        return _templates(settings).get_template(template).render(**values)
    except jinja2.TemplateError as exc:
        raise ProxyError(f"nginx template {template} in {settings.nginx_templates} is broken: {exc}") from None


def _worker_user(settings: Settings) -> tuple[str, str]:
    """(user, group) of nginx's workers in both tiers; empty without root, where nginx ignores
    `user` and the workers run as whoever runs minipaas. The group is the one perms gates folders on."""
    if os.geteuid() != 0 or not settings.nginx_user:
        return "", ""
    return settings.nginx_user, perms.workers_group_name(settings)


def _listen(settings: Settings, port: int | None = None) -> str:
    port = settings.http_port if port is None else port
    if settings.nginx == "private":
        return f"127.0.0.1:{port}"
    return str(port)


def has_ipv6() -> bool:
    """Whether this host has IPv6 at all (nginx refuses a configuration listening on [::] otherwise)."""
    return Path("/proc/net/if_inet6").exists() and socket.has_ipv6


def _listen6(settings: Settings, port: int | None = None) -> str:
    """The IPv6 twin of `_listen` ("" on a host without IPv6): every vhost answers on both."""
    if not has_ipv6():
        return ""
    port = settings.http_port if port is None else port
    return f"[::1]:{port}" if settings.nginx == "private" else f"[::]:{port}"


def _common(settings: Settings) -> dict[str, object]:
    lay = layout(settings)
    user, group = _worker_user(settings)
    return {
        "user": user,
        "group": group,
        "run_dir": lay.run,
        "log_dir": settings.logs_dir,
        "tmp_dir": lay.tmp,
        "sites_dir": lay.sites,
        "http_conf": lay.http_conf,
        "routes_file": routes.routes_file(settings),
        "control_socket": routes.control_socket(settings),
        "lua_dir": settings.nginx_templates / "lua",
        "lua_modules": lua_modules() if settings.nginx == "private" else [],
        "listen": _listen(settings),
        "listen_https": _listen(settings, settings.https_port),
        "listen6": _listen6(settings),
        "listen6_https": _listen6(settings, settings.https_port),
        "https_suffix": "" if settings.https_port == 443 else f":{settings.https_port}",
        "acme_root": settings.acme_root,
    }


def _locked(settings: Settings) -> AbstractContextManager[None]:
    """One writer of nginx files at a time, across processes (two apps deploying at once)."""
    return locks.held(settings.locks_dir / "proxy.lock")


def _write_checked(files: dict[Path, str], check: Callable[[], None], *,
                   readable: frozenset[Path] = frozenset()) -> bool:
    """Atomically replace each file with its text, run `check` once; on failure put every old file back.

    Returns False when every file already had exactly this text (nothing to reload). Only nginx's
    master (root) reads these files: they are root's alone, but for the `readable` ones.
    """
    old = {path: path.read_text(encoding="utf-8") if path.exists() else None for path in files}
    changed = [path for path, text in files.items() if old[path] != text]
    if not changed:
        return False
    for path in changed:
        _replace(path, files[path], readable)
    try:
        check()
    except ProxyError:
        for path in changed:
            before = old[path]
            if before is None:
                path.unlink(missing_ok=True)
            else:
                _replace(path, before, readable)
        raise
    return True


def _replace(path: Path, text: str, readable: frozenset[Path]) -> None:
    perms.write_file(path, text.encode(), 0o644 if path in readable else perms.PRIVATE_FILE)


def render_http_conf(settings: Settings, *, serves_https: bool) -> str:
    """http.conf: the catch-all servers for unknown names (on the HTTPS port too while some app serves
    HTTPS) and the include of every app's vhost. Marked `default_server` only in private mode."""
    return _render(settings, "http.conf.j2", serves_https=serves_https,
                   default_mark=" default_server" if settings.nginx == "private" else "", **_common(settings))


def _apps_serving_https(settings: Settings) -> set[str]:
    """Apps whose vhost exists and that have a certificate (their vhost listens on the HTTPS port)."""
    return {path.stem for path in layout(settings).sites.glob("*.conf")
            if certfiles.paths(settings, path.stem) is not None}


# -- masters -------------------------------------------------------------------------------

LUA_MODULES = (Path("/usr/lib/nginx/modules/ndk_http_module.so"),
               Path("/usr/lib/nginx/modules/ngx_http_lua_module.so"))


def lua_modules() -> list[Path]:
    """nginx's Lua module (Debian's libnginx-mod-http-lua), which our own master loads itself."""
    missing = [m for m in LUA_MODULES if not m.is_file()]
    if missing:
        raise ProxyError(f"nginx's Lua module is not installed ({missing[0]}): "
                         "apt-get install libnginx-mod-http-lua")
    return list(LUA_MODULES)


def _check_front(settings: Settings) -> None:
    lay = layout(settings)
    if settings.nginx == "private":
        nginx.test(lay.front_conf, lay.root)
    else:
        nginx.test(None)


def _old_router(settings: Settings) -> nginx.Master:
    """The second nginx tier of minipaas before the routing table; stopped and removed by `setup`."""
    lay = layout(settings)
    return nginx.Master(lay.root / "router.conf", lay.root, lay.run / "router.pid",
                        unix_sockets=(lay.run / "router.sock",))


def _front(settings: Settings) -> nginx.Master:
    """The private front (MINIPAAS_NGINX=private): our own master on the loopback ports it listens on."""
    lay = layout(settings)
    ports = (settings.http_port, settings.https_port) if _apps_serving_https(settings) else (settings.http_port,)
    addresses = ("127.0.0.1", "::1") if has_ipv6() else ("127.0.0.1",)
    return nginx.Master(lay.front_conf, lay.root, lay.run / "front.pid",
                        tcp=tuple((a, p) for a in addresses for p in ports),
                        unix_sockets=(routes.control_socket(settings),))


def _reload_front(settings: Settings) -> None:
    if settings.nginx == "private":
        nginx.reload(_front(settings))
    else:
        nginx.reload_system((routes.control_socket(settings),))


def setup(settings: Settings) -> None:
    """Write the main configurations and make sure nginx runs with them (init, restore, deploys)."""
    lay = layout(settings)
    control = routes.control_socket(settings)
    if len(str(control)) > MAX_SOCKET_PATH:
        raise InvalidInput(f"MINIPAAS_HOME is too long for nginx's control socket ({control})")
    # The folders nginx's workers pass through (run/, tmp/, static/, acme/) get their group before a
    # master starts; cheap when right already. What cannot be fixed, `minipaas init` reports.
    perms.secure_home(settings)
    values = _common(settings)
    with _locked(settings):
        http_text = render_http_conf(settings, serves_https=bool(_apps_serving_https(settings)))
        lay.control.mkdir(mode=perms.PRIVATE_DIR, exist_ok=True)
        if not routes.routes_file(settings).exists():
            perms.write_file(routes.routes_file(settings), b"", perms.PRIVATE_FILE)
        # A main configuration that changed (an upgrade: another worker user, new temp paths) is
        # applied by a reload; a master that is not running is started.
        if settings.nginx == "private":
            changed = _write_checked({lay.http_conf: http_text,
                                      lay.front_conf: _render(settings, "front.conf.j2", **values)},
                                     lambda: _check_front(settings))
            if nginx.running_pid(_front(settings)) is None:
                nginx.start(_front(settings))
            elif changed:
                _reload_front(settings)
        else:
            include = f"# minipaas apps (generated by `minipaas init`)\ninclude {lay.http_conf};\n"
            settings.system_nginx_conf.parent.mkdir(parents=True, exist_ok=True)
            # Beside the host's other nginx files, readable as they are: it holds only this include.
            changed = _write_checked({lay.http_conf: http_text, settings.system_nginx_conf: include},
                                     lambda: _check_front(settings),
                                     readable=frozenset({settings.system_nginx_conf}))
            if changed or not nginx.system_running():
                nginx.reload_system((control,))  # which starts it when it is not running
        _retire_old_router(settings)


def _retire_old_router(settings: Settings) -> None:
    """An install from before the routing table ran a second nginx (the router): the front no longer
    sends it anything once the vhosts above are written, so it is stopped and its files removed."""
    lay = layout(settings)
    old = _old_router(settings)
    pid = nginx.running_pid(old)
    if pid is not None:
        nginx.stop(old)
    for leftover in (lay.root / "router.conf", lay.run / "router.pid", lay.run / "router.sock"):
        leftover.unlink(missing_ok=True)
    if (lay.root / "upstreams").is_dir():
        for path in (lay.root / "upstreams").glob("*"):
            path.unlink()
        (lay.root / "upstreams").rmdir()


def ensure_running(settings: Settings) -> None:
    """Cheap check before a deploy: start whichever of our masters is not running."""
    if settings.nginx == "private":
        front_down = nginx.running_pid(_front(settings)) is None
    else:
        front_down = not nginx.system_running()
    if front_down or not layout(settings).control.exists():
        setup(settings)


# -- per app -------------------------------------------------------------------------------

def write_site(settings: Settings, app: str, domains: list[str], *, static: bool | None = None,
               markdown: bool | None = None, hsts: bool | None = None, reload: bool = False) -> None:
    """The app's front vhost; reloads the front only when it changed (or with `reload`).

    `static`: whether nginx serves the app's files itself; `markdown`: whether those files are a
    Markdown docs site, whose every response carries the docs pages' Content-Security-Policy as a
    header (None: as the app is now, for both). With a certificate in certs/<app>/ the vhost serves
    HTTPS and redirects HTTP to it. `reload`: files the vhost names changed (a new certificate at the
    same paths), which nginx reads only when reloaded.
    """
    lay = layout(settings)
    if static is None:
        static = sites.serving_root(settings, app) is not None
    if hsts is None:
        hsts = apps.setting_at(settings, app, "hsts") == "on"
    static_root = sites.current_link(settings, app) if static else None
    if markdown is None:
        markdown = bool(static) and _live_site_is_markdown(settings, app)
    cert = certfiles.paths(settings, app)
    hsts_header = '\n        add_header Strict-Transport-Security "max-age=31536000" always;' if cert and hsts else ""
    static_headers = hsts_header + (_csp_header() if markdown else "")
    text = _render(settings, "site.conf.j2", app=app, domains=domains, static_root=static_root,
                   certificate=cert[0] if cert else "", certificate_key=cert[1] if cert else "",
                   hsts_header=hsts_header, static_headers=static_headers, **_common(settings))
    with _locked(settings):
        https_apps = _apps_serving_https(settings) - {app} | ({app} if cert else set())
        http_text = render_http_conf(settings, serves_https=bool(https_apps))
        files = {lay.sites / f"{app}.conf": text, lay.http_conf: http_text}
        changed = _write_checked(files, lambda: _check_front(settings))
        if reload and not changed:
            _check_front(settings)
        if changed or reload:
            _reload_front(settings)


def serves_markdown(settings: Settings, buildpack: str) -> bool:
    """Whether a release of this buildpack is a Markdown docs site."""
    return any(p.name == buildpack and p.serve == "markdown" for p in buildpacks.load_all(settings.buildpacks_dir))


def _live_site_is_markdown(settings: Settings, app: str) -> bool:
    current = releaselog.live(Host(settings), app)
    return current is not None and current.serving == "static" and serves_markdown(settings, current.buildpack)


def _csp_header() -> str:
    # the docs pages' own policy, in their <meta> too
    return f'\n        add_header Content-Security-Policy "{CSP}" always;'


def switch(settings: Settings, app: str, release: int, targets: dict[str, str]) -> None:
    """Send the app's requests to `targets` (host:port → container id); returns once nginx does, without a
    reload. (`release` is the one they run, for the log.)"""
    routes.switch(settings, app, targets)


def unroute(settings: Settings, app: str) -> None:
    """Send the app no traffic at all (its vhost answers 503)."""
    routes.unroute(settings, app)


def upstream_addresses(settings: Settings, app: str) -> list[str]:
    """Where the app's traffic goes now."""
    return routes.addresses(settings, app)


def remove_app(settings: Settings, app: str) -> None:
    lay = layout(settings)
    routes.unroute(settings, app)
    with _locked(settings):
        removed = False
        path = lay.sites / f"{app}.conf"
        if path.exists():
            path.unlink()
            removed = True
        http_text = render_http_conf(settings, serves_https=bool(_apps_serving_https(settings)))
        removed = _write_checked({lay.http_conf: http_text}, lambda: _check_front(settings)) or removed
        if removed:
            _reload_front(settings)
