"""nginx's text as pure functions of a spec (routing/nginxconf.py), compared with golden files.

No nginx, no engine, no home: the specs below are all the functions see. A change to a template shows
up here as a diff to read; `MINIPAAS_UPDATE_GOLDEN=1 pytest tests/unit/test_nginx_text.py` rewrites the
files after a change meant to be made (then read `git diff tests/golden`). The same text is checked
by a real nginx in the routing, TLS and static-site tests.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import pytest

from minipaas.build.docsite.model import CSP
from minipaas.routing import nginxconf
from minipaas.state.settings import SHARE_DIR
from tests.helpers.nginx_specs import HOME, PRIVATE, STATIC, SYSTEM

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "nginx"


PROXIED = nginxconf.Site(app="hello", domains=("hello.example.com", "www.example.com"),
                         release_domain="hello.example.com")
TLS = dataclasses.replace(PROXIED, certificate=(HOME / "certs/hello/fullchain.pem", HOME / "certs/hello/key.pem"))
DOCS = dataclasses.replace(STATIC, certificate=(HOME / "certs/docs/fullchain.pem", HOME / "certs/docs/key.pem"),
                           hsts=True, csp=CSP)
DASHBOARD = nginxconf.Site(app="-dashboard", domains=("dashboard.example.com",),
                          upstream_socket=HOME / "nginx/dashboard/dashboard.sock")
DASHBOARD_TLS = dataclasses.replace(DASHBOARD, hsts=True, certificate=(HOME / "certs/-dashboard/fullchain.pem",
                                                                       HOME / "certs/-dashboard/privkey.pem"))

CASES = {
    "front-private.conf": lambda: nginxconf.front_conf(PRIVATE),
    "http-private.conf": lambda: nginxconf.http_conf(PRIVATE, serves_https=False),
    "http-private-https.conf": lambda: nginxconf.http_conf(PRIVATE, serves_https=True),
    "http-system-https.conf": lambda: nginxconf.http_conf(SYSTEM, serves_https=True),
    "site-proxied-private.conf": lambda: nginxconf.site_conf(PRIVATE, PROXIED),
    "site-proxied-system.conf": lambda: nginxconf.site_conf(SYSTEM, PROXIED),
    "site-proxied-tls-hsts.conf": lambda: nginxconf.site_conf(PRIVATE, dataclasses.replace(TLS, hsts=True)),
    "site-static.conf": lambda: nginxconf.site_conf(SYSTEM, STATIC),
    "site-docs-tls-hsts.conf": lambda: nginxconf.site_conf(SYSTEM, DOCS),
    "site-dashboard-private.conf": lambda: nginxconf.site_conf(PRIVATE, DASHBOARD),
    "site-dashboard-tls-hsts.conf": lambda: nginxconf.site_conf(SYSTEM, DASHBOARD_TLS),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_rendered_text_matches_its_golden_file(name: str) -> None:
    # The templates' folder (where the Lua modules are) is wherever this checkout is.
    text = CASES[name]().replace(str(SHARE_DIR), "<share>")
    golden = GOLDEN / name
    if os.environ.get("MINIPAAS_UPDATE_GOLDEN") == "1":
        golden.write_text(text, encoding="utf-8")
    assert golden.exists(), f"no golden file {golden}: run with MINIPAAS_UPDATE_GOLDEN=1 and read the diff"
    assert text == golden.read_text(encoding="utf-8")


def test_hsts_needs_a_certificate_and_the_policy_goes_on_static_responses_only() -> None:
    # HSTS on a vhost without HTTPS would be a header nobody may trust: none is written.
    assert "Strict-Transport-Security" not in nginxconf.site_conf(PRIVATE, dataclasses.replace(PROXIED, hsts=True))
    tls_hsts = nginxconf.site_conf(PRIVATE, dataclasses.replace(TLS, hsts=True))
    # In the proxied location, in the one that answers 503 when no container runs (a named location has none
    # of the other's headers), and in a sleeping app's two (the one that holds a request, the one it goes on to).
    assert tls_hsts.count("Strict-Transport-Security") == 4
    docs = nginxconf.site_conf(SYSTEM, DOCS)
    # Every static location repeats both headers (an add_header in a location drops the server's).
    assert docs.count("Strict-Transport-Security") == docs.count(f'Content-Security-Policy "{CSP}"') == 4
    assert "proxy_pass" not in docs and "root /var/lib/minipaas/static/docs/current;" in docs


def test_listen_addresses_follow_the_mode_and_the_host() -> None:
    private = nginxconf.site_conf(PRIVATE, TLS)
    assert "listen 127.0.0.1:8080;" in private and "listen [::1]:8080;" in private
    assert "listen 127.0.0.1:8443 ssl http2;" in private and "return 301 https://$host:8443$request_uri;" in private
    system = nginxconf.site_conf(SYSTEM, TLS)
    assert "listen 80;" in system and "[::]" not in system and "return 301 https://$host$request_uri;" in system
    # The catch-all is the default server only where minipaas owns the whole configuration.
    assert "listen 127.0.0.1:8080 default_server;" in nginxconf.http_conf(PRIVATE, serves_https=False)
    assert not re.search(r"listen [^;]*default_server", nginxconf.http_conf(SYSTEM, serves_https=True))
    assert "ssl_reject_handshake on;" not in nginxconf.http_conf(PRIVATE, serves_https=False)
    # Long host names fit, unless the host's nginx sizes the hash buckets itself (twice is an error).
    assert "server_names_hash_bucket_size 256;" in nginxconf.http_conf(SYSTEM, serves_https=False)
    host_sets_it = dataclasses.replace(SYSTEM, names_bucket=False)
    assert "server_names_hash_bucket_size" not in nginxconf.http_conf(host_sets_it, serves_https=False)


def test_a_broken_template_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "site.conf.j2").write_text("server { {{ nope }} }\n")
    broken = dataclasses.replace(PRIVATE, templates=tmp_path)
    with pytest.raises(nginxconf.ProxyError, match=r"nginx template site.conf.j2 in .* is broken: 'nope' is undefined"):
        nginxconf.site_conf(broken, PROXIED)
