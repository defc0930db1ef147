"""Sites with a build step, pushed for real: the output folder the build made is served, never a source folder
the repository holds unchanged; framework presets; the static-dir setting. Eleventy and Vite are installed
from the npm registry by the build, as a user's push would.
"""

from __future__ import annotations

import json
import re

from tests.helpers.host import APPS, Paas, commit
from tests.helpers.static import fetch


def release(paas: Paas, app: str) -> dict[str, object]:
    return json.loads(paas.run("releases", app, "--json").stdout)[0]


def test_an_eleventy_starter_serves_site_not_its_public_sources(paas: Paas) -> None:
    """`start: eleventy --serve` would have made it a Node app; its source public/ would have been served."""
    app = paas.new_app()
    checkout = paas.checkout(app, APPS / "eleventy-starter")
    output = paas.push(checkout).stderr
    assert "serving the build output in _site/" in output
    assert paas.containers() == []
    assert (release(paas, app)["buildpack"], release(paas, app)["serving"]) == ("static-build", "static")
    status, headers, body = fetch(paas, app, "/")
    assert status == 200 and b"Home of the starter" in body and headers["cache-control"] == "no-cache"
    assert b"About this starter" in fetch(paas, app, "/about/")[2]  # a page Eleventy rendered
    status, _, body = fetch(paas, app, "/robots.txt")  # copied by Eleventy from public/ to the root
    assert status == 200 and body.startswith(b"User-agent")
    assert fetch(paas, app, "/public/robots.txt")[0] == 404
    assert fetch(paas, app, "/css/index.css")[0] == 200

    # static-dir: a folder without index.html is refused and changes nothing; a path leaving the app too
    for folder, words in [("public", "has no index.html"), ("../x", "invalid value"), ("/etc", "invalid value")]:
        result = paas.run("settings:set", app, "static-dir", folder, check=False)
        assert result.returncode == 1 and words in result.stderr and len(result.stderr.strip().splitlines()) == 1
        assert json.loads(paas.run("settings", app, "--json").stdout)["static-dir"] == ""
    assert b"Home of the starter" in fetch(paas, app, "/")[2]


def test_a_static_dir_through_a_symlink_is_refused(paas: Paas) -> None:
    app = paas.new_app()
    checkout = paas.checkout(app, APPS / "site-build")
    (checkout / "escape").symlink_to("/etc")
    commit(checkout, "a link out")
    paas.push(checkout)
    for folder in ("escape", "escape/ssl"):
        result = paas.run("settings:set", app, "static-dir", folder, check=False)
        assert result.returncode == 1 and "symbolic link" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    assert json.loads(paas.run("settings", app, "--json").stdout)["static-dir"] == ""
    assert b"built at build time" in fetch(paas, app, "/")[2]


def test_static_dir_reserves_the_live_build_at_once(paas: Paas) -> None:
    """The build writes dist/ and docs/: detection serves dist/; static-dir docs serves docs/ without a push."""
    app = paas.new_app()
    checkout = paas.checkout(app, APPS / "site-build")
    (checkout / "build.js").write_text(
        'const fs = require("fs");\n'
        'for (const [dir, text] of [["dist", "the app"], ["manual", "the manual"]]) {\n'
        '  fs.mkdirSync(dir, { recursive: true });\n'
        '  fs.writeFileSync(`${dir}/index.html`, `<!doctype html><title>x</title><h1>${text}</h1>\\n`);\n'
        "}\n")
    commit(checkout, "two folders")
    paas.push(checkout)
    assert b"the app" in fetch(paas, app, "/")[2]
    result = paas.run("settings:set", app, "static-dir", "manual")
    assert "serving the build output in manual/" in result.stdout + result.stderr
    assert b"the manual" in fetch(paas, app, "/")[2]
    [latest, first] = json.loads(paas.run("releases", app, "--json").stdout)[:2]
    assert (latest["kind"], latest["status"], latest["sha"]) == ("settings", "live", first["sha"])
    # a folder the live build does not have: stored, for the next push
    result = paas.run("settings:set", app, "static-dir", "later")
    assert "next push" in result.stdout + result.stderr
    assert b"the manual" in fetch(paas, app, "/")[2]
    (checkout / "notes.txt").write_text("a change\n")
    commit(checkout, "a change")
    rejected = paas.push(checkout, expect_ok=False)  # ... which, without that folder, is rejected
    assert "static-dir later: the build produced no such folder" in rejected.stderr
    paas.run("settings:set", app, "static-dir", "")  # back to detection, at once
    assert b"the app" in fetch(paas, app, "/")[2]


def test_a_vite_app_serves_dist_with_immutable_hashed_assets(paas: Paas) -> None:
    app = paas.new_app()
    checkout = paas.checkout(app, APPS / "vite-template")
    output = paas.push(checkout).stderr
    assert "serving the build output in dist/" in output
    status, _, body = fetch(paas, app, "/")
    assert status == 200 and b"Counter built by Vite" in body
    scripts = re.findall(rb'src="(/assets/index-[A-Za-z0-9_-]{8}\.js)"', body)
    styles = re.findall(rb'href="(/assets/index-[A-Za-z0-9_-]{8}\.css)"', body)
    assert scripts and styles, body
    for asset, kind in ((scripts[0], "javascript"), (styles[0], "text/css")):
        status, headers, _ = fetch(paas, app, asset.decode())
        assert status == 200 and kind in headers["content-type"]
        assert headers["cache-control"] == "public, max-age=31536000, immutable"
    status, headers, body = fetch(paas, app, "/favicon.svg")  # Vite copied it from public/
    assert status == 200 and b"<svg" in body and "immutable" not in headers["cache-control"]


def test_a_site_that_builds_no_index_is_told_about_start_scripts(paas: Paas) -> None:
    app = paas.new_app()
    checkout = paas.checkout(app, APPS / "site-no-index")
    result = paas.push(checkout, expect_ok=False)
    assert "the build wrote no index.html (in dist/)" in result.stderr
    assert "give it a `start` script in package.json or a Procfile `web:` line" in result.stderr
    assert paas.repo_ref(app) == ""
