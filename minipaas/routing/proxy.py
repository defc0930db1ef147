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
from pathlib import Path

from minipaas.adapters import nginx
from minipaas.build import buildpacks
from minipaas.build.docsite.model import CSP
from minipaas.errors import Conflict, InvalidInput, ProxyError
from minipaas.routing import certfiles, nginxconf, routes, sites
from minipaas.routing.nginxconf import Layout
from minipaas.state import apps, locks, perms, releaselog
from minipaas.state.host import Host
from minipaas.state.releaselog import Serving
from minipaas.state.settings import Settings

DASHBOARD_SITE = "-dashboard"
DASHBOARD_TARGET = "@dashboard"  # what certs:* and letsencrypt:* take in an app's place (no app name has an @)
MAX_SOCKET_PATH = 100  # sun_path is 108 bytes, nginx needs "unix:" and a NUL


def layout(settings: Settings) -> Layout:
    return Layout(settings.nginx_dir)


def has_ipv6() -> bool:
    """Whether this host has IPv6 at all (nginx refuses a configuration listening on [::] otherwise)."""
    return Path("/proc/net/if_inet6").exists() and socket.has_ipv6


def front_spec(settings: Settings) -> nginxconf.Front:
    """What every generated file of this home shares, from its settings and this host."""
    # Without root nginx ignores `user` and the workers run as whoever runs minipaas. The group is
    # the one perms gates folders on.
    as_root = os.geteuid() == 0 and bool(settings.nginx_user)
    return nginxconf.Front(
        templates=settings.nginx_templates, layout=layout(settings), private=settings.nginx == "private",
        http_port=settings.http_port, https_port=settings.https_port, ipv6=has_ipv6(),
        log_dir=settings.logs_dir, routes_file=routes.routes_file(settings),
        control_socket=routes.control_socket(settings), acme_root=settings.acme_root,
        user=settings.nginx_user if as_root else "", group=perms.workers_group_name(settings) if as_root else "",
        lua_modules=tuple(lua_modules()) if settings.nginx == "private" else (), cache_dir=settings.cache_dir,
        names_bucket=settings.nginx == "private"
        or not nginx.system_sets("server_names_hash_bucket_size", settings.nginx_dir),
        metrics_port=settings.metrics_port)


def site_spec(host: Host, app: str, domains: list[str], *, static: bool | None = None,
              markdown: bool | None = None, hsts: bool | None = None) -> nginxconf.Site:
    """What the app's vhost serves, as the app is now (None) or as a deploy about to switch says."""
    settings = host.settings
    if static is None:
        static = sites.serving_root(settings, app) is not None
    if hsts is None:
        hsts = apps.get_setting(host, app, "hsts") == "on"
    if markdown is None:
        markdown = bool(static) and _live_site_is_markdown(host, app)
    return nginxconf.Site(app=app, domains=tuple(domains),
                          static_root=sites.current_link(settings, app) if static else None,
                          certificate=certfiles.paths(settings, app), hsts=hsts,
                          csp=CSP if static and markdown else "",
                          release_domain="" if static else apps.default_domain(host, app))


def _locked(settings: Settings) -> AbstractContextManager[None]:
    """One writer of nginx files at a time, across processes (two apps deploying at once)."""
    return locks.held(locks.instance_lock(settings, "nginx.proxy"))


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
    return nginxconf.http_conf(front_spec(settings), serves_https=serves_https)


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
    metrics = (("127.0.0.1", settings.metrics_port),) if settings.metrics_port else ()
    return nginx.Master(lay.front_conf, lay.root, lay.run / "front.pid",
                        tcp=tuple((a, p) for a in addresses for p in ports) + metrics,
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
    front = front_spec(settings)
    with _locked(settings):
        http_text = nginxconf.http_conf(front, serves_https=bool(_apps_serving_https(settings)))
        lay.control.mkdir(mode=perms.PRIVATE_DIR, exist_ok=True)
        if not routes.routes_file(settings).exists():
            perms.write_file(routes.routes_file(settings), b"", perms.PRIVATE_FILE)
        # A main configuration that changed (an upgrade: another worker user, new temp paths) is
        # applied by a reload; a master that is not running is started.
        if settings.nginx == "private":
            changed = _write_checked({lay.http_conf: http_text,
                                      lay.front_conf: nginxconf.front_conf(front)},
                                     lambda: _check_front(settings))
            if nginx.running_pid(_front(settings)) is None:
                nginx.start(_front(settings))
            elif changed:
                _reload_front(settings)
        else:
            check_system_nginx(settings)
            include = nginxconf.system_include(settings.home, lay)
            settings.system_nginx_conf.parent.mkdir(parents=True, exist_ok=True)
            # Beside the host's other nginx files, readable as they are: it holds only this include.
            changed = _write_checked({lay.http_conf: http_text, settings.system_nginx_conf: include},
                                     lambda: _check_front(settings),
                                     readable=frozenset({settings.system_nginx_conf}))
            if changed or not nginx.system_running():
                nginx.reload_system((control,))  # which starts it when it is not running
        _retire_old_router(settings)


def check_system_nginx(settings: Settings) -> None:
    """System mode: one line when the host's nginx serves another minipaas instance already (a file of its
    folder includes another home's http.conf): the host's nginx has room for one (nginxconf.INCLUDE_MARKER)."""
    folder = settings.system_nginx_conf.parent
    for path in sorted(folder.glob("*.conf")) if folder.is_dir() else ():
        try:
            home = nginxconf.included_home(path.read_text(encoding="utf-8", errors="replace"))
        except OSError:
            continue
        if home is not None and home != str(settings.home):
            raise Conflict(f"the host's nginx serves the minipaas instance at {home} already ({path}): "
                           f"run this one (MINIPAAS_HOME {settings.home}) with MINIPAAS_NGINX=private")


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


def front_master(settings: Settings) -> int | None:
    """Private mode: the pid of our own master when it runs."""
    return nginx.running_pid(_front(settings))


def front_died(settings: Settings) -> int | None:
    """Private mode: the pid of our master when it ended without stopping (its pid file stays; see nginx.died_pid)."""
    return nginx.died_pid(_front(settings))


def ensure_running(settings: Settings) -> None:
    """Cheap check before a deploy: start whichever of our masters is not running."""
    if settings.nginx == "private":
        front_down = nginx.running_pid(_front(settings)) is None
    else:
        front_down = not nginx.system_running()
    if front_down or not layout(settings).control.exists():
        setup(settings)


# -- per app -------------------------------------------------------------------------------

def write_site(host: Host, app: str, domains: list[str], *, static: bool | None = None,
               markdown: bool | None = None, hsts: bool | None = None, reload: bool = False) -> None:
    """The app's front vhost; reloads the front only when it changed (or with `reload`).

    `static`: whether nginx serves the app's files itself; `markdown`: whether those files are a
    Markdown docs site, whose every response carries the docs pages' Content-Security-Policy as a
    header (None: as the app is now, for both). With a certificate in certs/<app>/ the vhost serves
    HTTPS and redirects HTTP to it. `reload`: files the vhost names changed (a new certificate at the
    same paths), which nginx reads only when reloaded.
    """
    _apply_site(host.settings, site_spec(host, app, domains, static=static, markdown=markdown, hsts=hsts),
                reload=reload)


def write_dashboard_site(settings: Settings, *, reload: bool = False) -> None:
    """The dashboard's vhost (`dashboard-domain`, else dashboard.<domain>), proxied to its socket; HTTPS (with
    HSTS) once certs/-dashboard/ holds a certificate. `-dashboard` is no app's name (APP_NAME starts with a
    letter): the vhost and the certificate folder are its own."""
    socket_path = settings.dashboard_socket
    if len(str(socket_path)) > MAX_SOCKET_PATH:
        raise InvalidInput(f"MINIPAAS_HOME is too long for the dashboard's socket ({socket_path})")
    certificate = certfiles.paths(settings, DASHBOARD_SITE)
    _apply_site(settings, nginxconf.Site(app=DASHBOARD_SITE, domains=(settings.dashboard_host,),
                                         upstream_socket=socket_path, certificate=certificate,
                                         hsts=certificate is not None), reload=reload)


def _apply_site(settings: Settings, site: nginxconf.Site, *, reload: bool) -> None:
    lay, app, front = layout(settings), site.app, front_spec(settings)
    text = nginxconf.site_conf(front, site)
    with _locked(settings):
        https_apps = _apps_serving_https(settings) - {app} | ({app} if site.certificate else set())
        http_text = nginxconf.http_conf(front, serves_https=bool(https_apps))
        files = {lay.sites / f"{app}.conf": text, lay.http_conf: http_text}
        changed = _write_checked(files, lambda: _check_front(settings))
        if reload and not changed:
            _check_front(settings)
        if changed or reload:
            _reload_front(settings)


def serves_markdown(settings: Settings, buildpack: str) -> bool:
    """Whether a release of this buildpack is a Markdown docs site."""
    return any(p.name == buildpack and p.serve == "markdown" for p in buildpacks.load_all(settings.buildpacks_dir))


def _live_site_is_markdown(host: Host, app: str) -> bool:
    current = releaselog.live(host, app)
    return current is not None and current.serving == Serving.STATIC \
        and serves_markdown(host.settings, current.buildpack)


def switch(settings: Settings, app: str, release: int, targets: dict[str, str]) -> None:
    """Send all of the app's requests to `targets` (host:port → container id) of `release`, one version;
    returns once nginx does, without a reload."""
    routes.switch(settings, app, targets, release=release)


def set_versions(settings: Settings, app: str, versions: list[routes.Version]) -> None:
    """Route the app to several releases at once, each with its share of new clients (routes.set_versions)."""
    routes.set_versions(settings, app, versions)


def versions(settings: Settings, app: str) -> list[routes.Version]:
    """The app's routed versions (release, weight, targets), as minipaas last set them."""
    return routes.versions(settings, app)


def unroute(settings: Settings, app: str) -> None:
    """Send the app no traffic at all (its vhost answers 503)."""
    routes.unroute(settings, app)


def upstream_addresses(settings: Settings, app: str) -> list[str]:
    """Where the app's traffic goes now."""
    return routes.addresses(settings, app)


def routed_containers(settings: Settings, app: str) -> set[str]:
    """The containers (ids) the app's traffic goes to now."""
    return routes.containers(settings, app)


def routed_tasks(settings: Settings, app: str) -> dict[str, str]:
    """What serves at each of the app's routed addresses: container or Swarm task id → address."""
    return routes.owned(settings, app)


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
