"""nginx configuration: validated before any reload, rolled back when nginx rejects it."""

from __future__ import annotations

import shutil

from tests.helpers.host import APPS, ROOT, Paas, commit


def broken_templates(paas: Paas, template: str) -> dict[str, str]:
    folder = paas.work / "nginx-templates"
    shutil.copytree(ROOT / "nginx", folder)
    path = folder / template
    path.write_text(path.read_text().replace("{", "{\n    this_is_not_a_directive on;", 1))
    return {**paas.env, "MINIPAAS_NGINX_TEMPLATES": str(folder)}


def test_broken_vhost_template_is_refused_and_the_old_vhost_restored(paas: Paas) -> None:
    app, _ = paas.deploy(APPS / "dockerfile")
    site = paas.home / "nginx" / "sites" / f"{app}.conf"
    before = site.read_text()
    good_env = paas.env
    paas.env = broken_templates(paas, "site.conf.j2")
    result = paas.run("domains:add", app, "www.example.test", check=False)
    paas.env = good_env
    assert result.returncode == 1
    assert "nginx rejected the configuration" in result.stderr
    assert "this_is_not_a_directive" in result.stderr
    assert site.read_text() == before
    assert paas.get(app).status == 200
    assert paas.run("domains", app).stdout.split() == [f"{app}.paas.test"]


def test_a_route_nginx_does_not_take_rejects_the_push_and_the_old_release_serves(paas: Paas) -> None:
    app, checkout = paas.deploy(APPS / "dockerfile")
    routes_before = (paas.home / "nginx" / "routes").read_text()
    control = paas.home / "nginx" / "control" / "control.sock"
    hidden = control.with_name("away.sock")
    control.rename(hidden)  # nginx serves on, but minipaas cannot reach its control server
    try:
        (checkout / "server.js").write_text((checkout / "server.js").read_text().replace("own", "new"))
        commit(checkout, "change")
        result = paas.push(checkout, expect_ok=False)
    finally:
        hidden.rename(control)
    assert "nginx does not answer on its control socket" in result.stderr
    assert paas.get(app).body == "from my own Dockerfile\n"
    assert len(paas.containers()) == 1
    assert (paas.home / "nginx" / "routes").read_text() == routes_before  # the table was put back


def test_unknown_host_gets_404_and_added_domain_serves(paas: Paas) -> None:
    app, _ = paas.deploy(APPS / "dockerfile")
    assert paas.get(app, host="nobody.paas.test").status == 404
    paas.run("domains:add", app, "www.example.test")
    assert paas.get(app, host="www.example.test").body == "from my own Dockerfile\n"
    paas.run("domains:remove", app, "www.example.test")
    assert paas.get(app, host="www.example.test").status == 404


def test_upgraded_connections_pass_through_nginx(paas: Paas) -> None:
    import socket

    app, _ = paas.deploy(APPS / "upgrade")
    with socket.create_connection(("127.0.0.1", paas.port), timeout=10) as sock:
        sock.sendall(f"GET /chat HTTP/1.1\r\nHost: {app}.paas.test\r\nUpgrade: echo\r\n"
                     "Connection: Upgrade\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(4096)
        assert head.startswith(b"HTTP/1.1 101")
        sock.sendall(b"ping over the upgraded connection")
        echoed = b""
        while len(echoed) < len(b"ping over the upgraded connection"):
            echoed += sock.recv(4096)
        assert echoed == b"ping over the upgraded connection"


def test_forwarded_headers_reach_the_app_and_the_routing_header_cannot_be_spoofed(paas: Paas) -> None:
    import http.client
    import json

    app, _ = paas.deploy(APPS / "upgrade")
    other, _ = paas.deploy(APPS / "dockerfile")
    conn = http.client.HTTPConnection("127.0.0.1", paas.port, timeout=10)
    # A client naming another app in a routing header reaches the app its Host names all the same.
    conn.request("GET", "/", headers={"Host": f"{app}.paas.test", "X-Minipaas-App": other,
                                      "X-Forwarded-For": "203.0.113.9"})
    seen = json.loads(conn.getresponse().read())
    conn.close()
    headers = seen["headers"]
    assert seen["app"] == "upgrade"
    assert headers["host"] == f"{app}.paas.test"
    assert headers["x-forwarded-for"] == "203.0.113.9, 127.0.0.1"
    assert headers["x-forwarded-proto"] == "http" and headers["x-forwarded-host"] == f"{app}.paas.test"
    assert headers["x-real-ip"] == "127.0.0.1" and headers["x-request-id"]
