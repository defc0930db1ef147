"""HTTPS for a test host: a port of its own for nginx's TLS, and a GET through it checked against a CA."""

from __future__ import annotations

import http.client
import socket
import ssl

from tests.helpers.host import Paas, free_port


def https_get(paas: Paas, app: str, ca: str, path: str = "/", *, version: ssl.TLSVersion | None = None):
    context = ssl.create_default_context(cafile=ca)
    if version is not None:
        context.minimum_version = context.maximum_version = version
    conn = http.client.HTTPSConnection("127.0.0.1", paas.https_port, context=context, timeout=30)
    # SNI and certificate checks use the app's name, as a browser would.
    sock = socket.create_connection(("127.0.0.1", paas.https_port), timeout=30)
    conn.sock = context.wrap_socket(sock, server_hostname=f"{app}.paas.test")
    conn.request("GET", path, headers={"Host": f"{app}.paas.test"})
    resp = conn.getresponse()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()


def enable_https(paas: Paas) -> None:
    paas.https_port = free_port()
    paas.env["MINIPAAS_HTTPS_PORT"] = str(paas.https_port)
