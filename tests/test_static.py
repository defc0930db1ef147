"""Static sites and Markdown docs: served by nginx from release directories, switched by a symlink."""

from __future__ import annotations

import gzip
import http.client
import json

from conftest import APPS, EXAMPLE, Paas, commit


def fetch(paas: Paas, app: str, path: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", paas.port, timeout=30)
    try:
        conn.request("GET", path, headers={"Host": f"{app}.paas.test", **headers})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def test_plain_static_site_is_served_by_nginx_without_a_container(paas: Paas) -> None:
    app, checkout = paas.deploy(APPS / "static-site")
    assert paas.containers() == []
    status, headers, body = fetch(paas, app, "/")
    assert status == 200 and b"Static home" in body and headers["content-type"].startswith("text/html")
    assert headers["cache-control"] == "no-cache"
    assert b"About us" in fetch(paas, app, "/about")[2]  # clean URL
    status, _, body = fetch(paas, app, "/nope")
    assert status == 404 and b"Custom not found" in body
    status, headers, body = fetch(paas, app, "/css/site.0123abcd.css", **{"Accept-Encoding": "gzip"})
    assert status == 200 and headers["content-type"] == "text/css"
    assert "immutable" in headers["cache-control"]
    status, headers, body = fetch(paas, app, "/", **{"Accept-Encoding": "gzip"})
    assert headers.get("content-encoding") == "gzip" and b"Static home" in gzip.decompress(body)
    [rel] = json.loads(paas.run("releases", app, "--json").stdout)
    assert (rel["buildpack"], rel["serving"], rel["status"]) == ("static", "static", "live")

    (checkout / "index.html").write_text((checkout / "index.html").read_text().replace("Static home", "Home v2"))
    commit(checkout, "v2")
    paas.push(checkout)
    assert b"Home v2" in fetch(paas, app, "/")[2]
    assert sorted(p.name for p in (paas.home / "static" / app).iterdir()) == ["1", "2", "current"]


def test_a_container_app_can_become_a_static_site_and_back(paas: Paas) -> None:
    app, checkout = paas.deploy(APPS / "dockerfile")
    paas.run("settings:set", app, "drain-seconds", "0")
    site = paas.checkout(app + "-site", APPS / "static-site")
    site_remote = paas.home / "repos" / f"{app}.git"
    import subprocess

    subprocess.run(["git", "remote", "set-url", "paas", str(site_remote)], cwd=site, check=True)
    paas.push(site, extra=("--force",))
    assert b"Static home" in fetch(paas, app, "/")[2]
    paas.push(checkout, extra=("--force",))
    assert paas.get(app).body == "from my own Dockerfile\n"
    assert not (paas.home / "static" / app / "current").exists()


def test_markdown_docs_become_a_navigable_site(paas: Paas) -> None:
    app, _ = paas.deploy(APPS / "markdown-docs")
    assert paas.containers() == []
    status, _, body = fetch(paas, app, "/")
    assert status == 200 and b"<nav" in body
    status, _, body = fetch(paas, app, "/guide/install")
    assert status == 200 and b"Install" in body
    assert b'href="../index.html"' in body or b"index.html" in body
    page = fetch(paas, app, "/")[2].decode()
    assert "<script>alert" not in page and "&lt;script&gt;" in page  # raw HTML is shown, not run
    assert fetch(paas, app, "/assets/search-index.json")[0] == 200


def test_site_with_a_build_step_serves_its_output(paas: Paas) -> None:
    app, _ = paas.deploy(APPS / "site-build")
    assert paas.containers() == []
    status, _, body = fetch(paas, app, "/")
    assert status == 200 and b"built at build time" in body
    [rel] = json.loads(paas.run("releases", app, "--json").stdout)
    assert (rel["buildpack"], rel["serving"]) == ("static-build", "static")


def test_a_node_app_with_a_start_script_stays_a_container_app(paas: Paas) -> None:
    app, _ = paas.deploy(EXAMPLE)
    assert json.loads(paas.run("releases", app, "--json").stdout)[0]["serving"] == "container"


def test_symlinks_in_a_site_repo_are_never_followed(paas: Paas) -> None:
    app = paas.new_app()
    checkout = paas.checkout(app, APPS / "static-site")
    (checkout / "passwd.html").symlink_to("/etc/passwd")
    (checkout / "etc").symlink_to("/etc")
    commit(checkout, "hostile links")
    paas.push(checkout)
    for path in ("/passwd.html", "/passwd", "/etc/passwd", "/etc/hostname"):
        status, _, body = fetch(paas, app, path)
        assert status == 404 and b"root:" not in body
    assert not any(p.is_symlink() for p in (paas.home / "static" / app / "1").rglob("*"))
