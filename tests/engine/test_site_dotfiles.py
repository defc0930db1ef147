"""Issue 19, attack 9: a static site served its dotfiles (/.env, /.npmrc, /.git-credentials, /.ssh/id_rsa answered
200). Through real pushes and the private nginx: a plain static site pushed with a deployer's key over the real
sshd, a site with a build step and a Markdown docs site leave every dotfile and dot-folder out of what nginx serves
but /.well-known/, and nginx's own rule answers 404 for a dot path even when such a file is there."""

from __future__ import annotations

import http.client
from pathlib import Path

from tests.helpers.host import APPS, Paas, commit
from tests.helpers.ssh_client import add_key, checkout_for, push
from tests.helpers.sshd import Sshd

SECRET_FILES = {
    ".env": "DATABASE_PASSWORD=env-secret-1\n",
    ".npmrc": "//registry.npmjs.org/:_authToken=npm-secret-2\n",
    ".git-credentials": "https://user:git-secret-3@example.com\n",
    ".ssh/id_rsa": "-----BEGIN OPENSSH PRIVATE KEY-----\nssh-secret-4\n",
    "a/.config/credentials": "[remote]\n\turl = https://user:nested-secret-5@example.com\n",  # git keeps no .git/
    "docs/.env": "nested-secret-6\n",
}
SECURITY_TXT = "Contact: mailto:security@example.com\n"
# Requested as sent: percent-encoded, nested, dot segments, another case of the encoding, a precompressed twin.
DOT_PATHS = ["/.env", "/%2eenv", "/%2Eenv", "/.npmrc", "/.git-credentials", "/.ssh/id_rsa", "/%2essh/id_rsa",
             "/a/.config/credentials", "/a/%2econfig/credentials", "/a/./.config/credentials", "/x/../.env",
             "/docs/.env", "/.env.gz", "/.env.html", "/.ssh/", "/.git/", "/.well-known/.env"]


def fetch(paas: Paas, host: str, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", paas.port, timeout=30)
    try:
        conn.request("GET", path, headers={"Host": host})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def plant(checkout: Path, prefix: str = "") -> None:
    for name, text in {**SECRET_FILES, ".well-known/security.txt": SECURITY_TXT, ".well-known/.env": "wk-7\n"}.items():
        path = checkout / prefix / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    commit(checkout, "dotfiles")


def assert_no_dot_path_served(paas: Paas, host: str) -> None:
    for path in DOT_PATHS:
        status, body = fetch(paas, host, path)
        assert status in (400, 404), (path, status, body[:200])  # nginx refuses `/x/../` above the root with 400
        assert b"secret" not in body and b"wk-7" not in body, (path, body[:200])
    status, body = fetch(paas, host, "/.well-known/security.txt")
    assert status == 200 and body.decode() == SECURITY_TXT, (status, body[:200])


def assert_not_published(paas: Paas, app: str) -> None:
    live = (paas.home / "static" / app / "current").resolve()
    files = sorted(str(p.relative_to(live)) for p in live.rglob("*"))
    assert [f for f in files if f.startswith(".") or "/." in f] == [".well-known", ".well-known/security.txt"], files


def test_a_deployers_static_site_serves_no_dotfile_but_well_known(paas: Paas, sshd: Sshd) -> None:
    from minipaas.routing import acme
    from minipaas.state.settings import load

    add_key(paas, sshd, "ci", role="deployer")
    app = paas.new_app("dots")
    paas.run("ssh-keys:grant", "ci", app)
    checkout = checkout_for(paas, sshd, app, APPS / "static-site")
    plant(checkout)
    pushed = push(paas, sshd, checkout, "ci")
    assert "not served: .env, .git-credentials, .npmrc, .ssh/, .well-known/.env and 2 more (dotfiles" in \
        pushed.stderr, pushed.stderr
    host = f"{app}.paas.test"
    assert fetch(paas, host, "/")[0] == 200 and b"Static home" in fetch(paas, host, "/")[1]
    assert_no_dot_path_served(paas, host)
    assert_not_published(paas, app)

    # nginx's rule holds whatever is in the folder: a dotfile put there by hand is not served either.
    live = (paas.home / "static" / app / "current").resolve()
    (live / ".env").write_text("planted-secret\n")
    (live / "a" / ".git").mkdir(parents=True)
    (live / "a" / ".git" / "config").write_text("planted-secret\n")
    for path in ("/.env", "/%2eenv", "/a/.git/config", "/a/%2egit/config", "/a/%2Egit/config"):
        status, body = fetch(paas, host, path)
        assert status == 404 and b"planted-secret" not in body, (path, status)

    # ACME challenges are unaffected.
    settings = load(paas.env)
    token = settings.acme_root / ".well-known" / "acme-challenge" / "tok_en-1"
    acme._write_challenge(settings, token, "tok_en-1.thumbprint")
    assert fetch(paas, host, "/.well-known/acme-challenge/tok_en-1") == (200, b"tok_en-1.thumbprint")


def test_a_sites_build_output_serves_no_dotfile_but_well_known(paas: Paas) -> None:
    app = paas.new_app("built")
    checkout = paas.checkout(app, APPS / "site-build")
    build = checkout / "build.js"
    build.write_text(build.read_text() + (
        'fs.writeFileSync("dist/.env", "SECRET=build-secret-8\\n");\n'
        'fs.mkdirSync("dist/.git", { recursive: true });\n'
        'fs.writeFileSync("dist/.git/config", "build-secret-9\\n");\n'
        'fs.mkdirSync("dist/.well-known", { recursive: true });\n'
        f'fs.writeFileSync("dist/.well-known/security.txt", {SECURITY_TXT!r});\n'))
    commit(checkout, "a build that writes dotfiles")
    pushed = paas.push(checkout)
    assert "not served: .env, .git/ (dotfiles" in pushed.stderr, pushed.stderr
    host = f"{app}.paas.test"
    assert b"built at build time" in fetch(paas, host, "/")[1]
    for path in ("/.env", "/%2eenv", "/.git/config", "/%2egit/config"):
        status, body = fetch(paas, host, path)
        assert status == 404 and b"build-secret" not in body, (path, status)
    assert fetch(paas, host, "/.well-known/security.txt") == (200, SECURITY_TXT.encode())
    assert_not_published(paas, app)


def test_a_markdown_site_serves_no_dotfile_but_well_known(paas: Paas) -> None:
    app = paas.new_app("md")
    checkout = paas.checkout(app, APPS / "markdown-docs")
    plant(checkout)
    paas.push(checkout)
    host = f"{app}.paas.test"
    assert fetch(paas, host, "/")[0] == 200
    assert_no_dot_path_served(paas, host)
    assert_not_published(paas, app)
