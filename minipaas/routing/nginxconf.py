"""nginx's text, as pure functions of a spec: the private master's main file, the http-level file every
vhost shares, and one app's vhost.

A `Front` says what every file of one minipaas home shares (where its files live, what nginx listens
on, as whom its workers run); a `Site` says what one app's vhost serves (its names, a static root or
the routing table, a certificate, HSTS, a docs site's policy). The functions read nothing but the
templates in `Front.templates` (data: nginx/*.j2): no settings, no database, no nginx. proxy.py
builds the specs from the host's state and applies the text with `nginx -t` and roll-back; tests
compare the text with golden files (tests/golden/nginx/).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from minipaas.errors import ProxyError


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


@dataclass(frozen=True)
class Front:
    """What the generated files of one home share."""

    templates: Path  # the folder of front.conf.j2, http.conf.j2, site.conf.j2 and lua/
    layout: Layout
    private: bool  # our own master on loopback (MINIPAAS_NGINX=private), else the host's nginx
    http_port: int
    https_port: int
    ipv6: bool  # whether the host has IPv6 (nginx refuses to listen on [::] otherwise)
    log_dir: Path
    routes_file: Path
    control_socket: Path
    acme_root: Path
    user: str = ""  # the workers' account and group; "" where nginx runs without root
    group: str = ""
    lua_modules: tuple[Path, ...] = ()  # what the private master loads itself
    cache_dir: Path | None = None  # Jinja2's compiled templates, kept between runs
    # Whether http.conf sizes the server names' hash buckets for names up to 253 characters (not where
    # the host's own configuration sizes them: nginx refuses the directive twice).
    names_bucket: bool = True
    metrics_port: int = 0  # the loopback port Prometheus' text is served on (0: none)


@dataclass(frozen=True)
class Site:
    """What one app's vhost serves."""

    app: str
    domains: tuple[str, ...]
    static_root: Path | None = None  # nginx serves these files itself; None: the routing table's containers
    certificate: tuple[Path, Path] | None = None  # (chain, key): HTTPS, and HTTP redirects to it
    hsts: bool = False  # with a certificate only
    csp: str = ""  # a Content-Security-Policy on every static response (a Markdown docs site's)
    upstream_socket: Path | None = None  # a process of minipaas' own behind it (the dashboard), not an app
    # The app's default domain: `v<N>.<it>` reaches release N while it is routed (routes.lua); "": no such URLs.
    release_domain: str = ""


def _listen(front: Front, port: int) -> str:
    return f"127.0.0.1:{port}" if front.private else str(port)


def _listen6(front: Front, port: int) -> str:
    """The IPv6 twin of `_listen` ("" on a host without IPv6): every vhost answers on both."""
    if not front.ipv6:
        return ""
    return f"[::1]:{port}" if front.private else f"[::]:{port}"


def _shared(front: Front) -> dict[str, object]:
    lay = front.layout
    return {
        "user": front.user,
        "group": front.group,
        "run_dir": lay.run,
        "log_dir": front.log_dir,
        "tmp_dir": lay.tmp,
        "sites_dir": lay.sites,
        "http_conf": lay.http_conf,
        "routes_file": front.routes_file,
        "control_socket": front.control_socket,
        "lua_dir": front.templates / "lua",
        "lua_modules": list(front.lua_modules) if front.private else [],
        "listen": _listen(front, front.http_port),
        "listen_https": _listen(front, front.https_port),
        "listen6": _listen6(front, front.http_port),
        "listen6_https": _listen6(front, front.https_port),
        "https_suffix": "" if front.https_port == 443 else f":{front.https_port}",
        "acme_root": front.acme_root,
        "names_bucket": front.names_bucket,
        "metrics_port": front.metrics_port,
    }


def _environment(front: Front) -> Any:
    import jinja2  # here, not at the top: commands that only read routes (`ps`) import this module, never render

    cache = None
    if front.cache_dir is not None:
        folder = front.cache_dir / "templates"
        folder.mkdir(parents=True, exist_ok=True)
        cache = jinja2.FileSystemBytecodeCache(str(folder))
    return jinja2.Environment(bytecode_cache=cache, loader=jinja2.FileSystemLoader(str(front.templates)),
                              undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)


def _render(front: Front, template: str, **values: object) -> str:
    import jinja2

    try:
        return _environment(front).get_template(template).render(**_shared(front), **values)
    except jinja2.TemplateError as exc:
        raise ProxyError(f"nginx template {template} in {front.templates} is broken: {exc}") from None


def front_conf(front: Front) -> str:
    """front.conf: the private master's main file (workers, logs, temp paths, the include of http.conf)."""
    return _render(front, "front.conf.j2")


def http_conf(front: Front, *, serves_https: bool) -> str:
    """http.conf: the routing table's balancer and control server, the catch-all servers for unknown
    names (on the HTTPS port too while some app serves HTTPS) and the include of every vhost. The
    catch-alls are marked `default_server` only in private mode (the host's nginx may have its own)."""
    return _render(front, "http.conf.j2", serves_https=serves_https,
                   default_mark=" default_server" if front.private else "")


def site_conf(front: Front, site: Site) -> str:
    """sites/<app>.conf: the app's vhost."""
    hsts = '\n        add_header Strict-Transport-Security "max-age=31536000" always;' \
        if site.certificate and site.hsts else ""
    csp = f'\n        add_header Content-Security-Policy "{site.csp}" always;' if site.csp else ""
    chain, key = site.certificate or ("", "")
    proxied = not site.static_root and not site.upstream_socket
    # A regular expression's named capture becomes the variable routes.lua reads; no review app's slug is
    # `v<digits>` (state/names.py), so this name is never a review app's.
    release_names = ' "~^v(?<minipaas_release_host>[0-9]{1,9})\\.' + site.release_domain.replace(".", "\\.") \
        + '$"' if proxied and site.release_domain else ""
    return _render(front, "site.conf.j2", app=site.app, domains=list(site.domains), release_names=release_names,
                   static_root=site.static_root or "", upstream_socket=site.upstream_socket or "",
                   certificate=chain, certificate_key=key,
                   hsts_header=hsts, static_headers=hsts + csp)


# System mode: the host's nginx includes one instance's http.conf through a file of its own (conf.d/).
# Its routing table, control server and catch-alls have fixed names in nginx's one http block, so the
# host's nginx serves one minipaas instance; the file says which, for a second one to refuse with.
INCLUDE_MARKER = "# minipaas apps"
_INCLUDED = re.compile(r"^include (/\S+)/nginx/http\.conf;$", re.M)


def system_include(home: Path, layout: Layout) -> str:
    """The host nginx's file (MINIPAAS_SYSTEM_NGINX_CONF) including this instance's http.conf."""
    return f"{INCLUDE_MARKER} of {home} (generated by `minipaas init`)\ninclude {layout.http_conf};\n"


def included_home(text: str) -> str | None:
    """The home whose http.conf a file of the host's nginx includes, when minipaas wrote that file."""
    if not text.startswith(INCLUDE_MARKER):
        return None
    found = _INCLUDED.search(text)
    return found.group(1) if found else None
