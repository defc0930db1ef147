"""A raw GET of a static site's file through the host's nginx (status, headers, bytes), for caching headers."""

from __future__ import annotations

import http.client

from tests.helpers.host import Paas


def fetch(paas: Paas, app: str, path: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", paas.port, timeout=30)
    try:
        conn.request("GET", path, headers={"Host": f"{app}.paas.test", **headers})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()
