"""Frozen nginx specs the text tests render (a private front, the host's system one, a static site), shared by
the golden-file tests and the tenant limits' tests."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from minipaas.routing import nginxconf
from minipaas.state.settings import SHARE_DIR

HOME = Path("/var/lib/minipaas")


PRIVATE = nginxconf.Front(
    templates=SHARE_DIR / "nginx", layout=nginxconf.Layout(HOME / "nginx"), private=True,
    http_port=8080, https_port=8443, ipv6=True, log_dir=HOME / "logs",
    routes_file=HOME / "nginx/control/routes.json", control_socket=HOME / "nginx/control/control.sock",
    acme_root=HOME / "acme", user="www-data", group="minipaas-web",
    lua_modules=(Path("/usr/lib/nginx/modules/ndk_http_module.so"),
                 Path("/usr/lib/nginx/modules/ngx_http_lua_module.so")), metrics_port=9145)


SYSTEM = dataclasses.replace(PRIVATE, private=False, http_port=80, https_port=443, ipv6=False, lua_modules=(),
                             metrics_port=0)


STATIC = nginxconf.Site(app="docs", domains=("docs.example.com",), static_root=HOME / "static/docs/current")
