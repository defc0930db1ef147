"""Static sites and Markdown docs: served by nginx from release directories, switched by a symlink."""

from __future__ import annotations

import gzip
import json

from tests.helpers.host import APPS, EXAMPLE, Paas, commit
from tests.helpers.static import fetch


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
    app, checkout = paas.deploy(APPS / "markdown-docs")
    assert paas.containers() == []
    status, _, body = fetch(paas, app, "/")
    assert status == 200 and b"<nav" in body
    status, _, body = fetch(paas, app, "/guide/install")
    assert status == 200 and b"Install" in body
    assert b'href="../index.html"' in body or b"index.html" in body
    page = fetch(paas, app, "/")[2].decode()
    assert "<script>alert" not in page and "raw html must not run" not in page  # sanitized away, as on GitHub
    assert fetch(paas, app, "/assets/search-index.json")[0] == 200
    paas.run("settings:set", app, "markdown-html", "off")  # the old name of `escape`: raw HTML shown as text
    assert json.loads(paas.run("settings", app, "--json").stdout)["markdown-html"] == "escape"
    (checkout / "faq.md").write_text("# FAQ\n")
    commit(checkout, "a page more")
    paas.push(checkout)
    page = fetch(paas, app, "/")[2].decode()
    assert "<script>alert" not in page and "&lt;script&gt;alert" in page


def test_a_docs_folder_written_for_github_renders_as_there(paas: Paas) -> None:
    """Raw HTML sanitized (kept: align, details, img, a id/name, picture, kbd, sub/sup; gone: script, onclick,
    onerror), GitHub's heading ids, and the broken links between pages listed as warnings of a push that works."""
    app = paas.new_app()
    output = paas.push(paas.checkout(app, APPS / "docs-github")).stderr
    warnings = [line.split("remote:", 1)[1].strip() for line in output.splitlines() if "warning:" in line]
    assert warnings == ["warning: guide/setup.md links to ../missing.md#x, which does not exist",
                        "warning: guide/setup.md links to configuration.md#no-such-heading, which does not exist"]
    status, headers, body = fetch(paas, app, "/")
    page = body.decode()
    assert status == 200 and "script-src 'self'" in headers["content-security-policy"]
    for kept in ('<h1 align="center">', '<img src="assets/logo.svg" alt="Widgetry logo" width="96">',
                 "<details>", "<summary>Show the install command</summary>", '<a id="top-of-readme"></a>',
                 '<a name="legacy-anchor"></a>', "<kbd>fast</kbd>", "H<sub>2</sub>O", "mc<sup>2</sup>",
                 '<source srcset="assets/logo.svg" media="(prefers-color-scheme: dark)">',
                 '<a href="#getting-started">Back to getting started</a>', '<h2 id="getting-started">'):
        assert kept in page, kept
    for gone in ("<script>document", "hijacked", "onclick", "onerror", "&lt;h1", "&lt;a id"):
        assert gone not in page, gone
    setup = fetch(paas, app, "/guide/setup")[2].decode()
    for heading in ('<h2 id="install">', '<h2 id="install-1">', '<h2 id="install-2">', '<h2 id="überprüfen">'):
        assert heading in setup
    assert 'href="configuration.html#files--folders"' in setup


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


IMMUTABLE = "public, max-age=31536000, immutable"


def test_fingerprinted_names_of_todays_bundlers_are_cached_a_year(paas: Paas) -> None:
    app = paas.new_app()
    checkout = paas.checkout(app, APPS / "static-site")
    names = {
        "assets/index-C-mhJ7ZS.js": IMMUTABLE,  # Vite, Rollup: `-` and 8 base64url characters
        "assets/logo-BwVp1x2Z.png": IMMUTABLE,
        "chunk-AB12CD34.mjs": IMMUTABLE,  # esbuild
        "app.3f9a1c2b.css": IMMUTABLE,  # webpack: hex
        "static/js/787.1a2b3c4d.chunk.js": IMMUTABLE,
        "bundle/cC8wS6ZjFU.js": IMMUTABLE,  # Eleventy's bundler: a name of 10 base64url characters
        "about.js": "public, max-age=3600",  # ordinary names
        "logo.png": "public, max-age=3600",
        "main-controls.js": "public, max-age=3600",
        "navigation.js": "public, max-age=3600",
        "jquery-3.7.1.min.js": "public, max-age=3600",
    }
    for name in names:
        (checkout / name).parent.mkdir(parents=True, exist_ok=True)
        (checkout / name).write_bytes(b"/* " + name.encode() + b" */\n")
    commit(checkout, "assets")
    paas.push(checkout)
    for name, expected in names.items():
        status, headers, _ = fetch(paas, app, f"/{name}")
        assert (name, status, headers["cache-control"]) == (name, 200, expected)
    _, headers, _ = fetch(paas, app, "/about")
    assert headers["cache-control"] == "no-cache"
