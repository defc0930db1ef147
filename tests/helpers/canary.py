"""Canary releases in tests: a release that fails every Nth request or answers late, requests with the canary's
header, the releases' statuses, and load threads counting answers by release."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections import Counter
from pathlib import Path

from tests.helpers.host import Paas, commit


def release(checkout: Path, version: str, *, fail_every: int = 0, delay_ms: int = 0) -> str:
    """Commit a release answering `version`; every `fail_every`-th request a 500, each request after `delay_ms`."""
    (checkout / "server.js").write_text(
        f'// {checkout.name}\nconst http = require("http");\nlet n = 0;\n'
        'http.createServer((req, res) => {\n'
        f'  n += 1;\n  const fail = {fail_every} > 0 && n % {fail_every} === 0;\n'
        f'  setTimeout(() => {{ res.statusCode = fail ? 500 : 200; res.end("{version}\\n"); }}, {delay_ms});\n'
        '}).listen(process.env.PORT || 5000);\n')
    (checkout / "Dockerfile").write_text(
        'FROM minipaas/node:26\nWORKDIR /srv\nCOPY server.js .\nUSER node\nCMD ["node", "server.js"]\n')
    return commit(checkout, version)


def get(paas: Paas, app: str, headers: dict[str, str] | None = None,
        conn: http.client.HTTPConnection | None = None) -> tuple[int, str, str]:
    """(status, body, Set-Cookie) of one request; a new connection unless one is given."""
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", paas.port, timeout=30)
    try:
        conn.request("GET", "/", headers={"Host": f"{app}.paas.test", **(headers or {})})
        response = conn.getresponse()
        return response.status, response.read().decode().strip(), response.getheader("Set-Cookie") or ""
    finally:
        if own:
            conn.close()


def statuses(paas: Paas, app: str) -> dict[int, str]:
    return {r["number"]: r["status"] for r in json.loads(paas.run("releases", app, "--json").stdout)}


def wait_for(condition, timeout: float = 60, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return value


class Load(threading.Thread):
    """Requests until stopped, on one kept-alive connection or each on a new one: every failure is kept."""

    def __init__(self, paas: Paas, app: str, *, keep_alive: bool) -> None:
        super().__init__(daemon=True)
        self.paas, self.app, self.keep_alive = paas, app, keep_alive
        self.answers: Counter[str] = Counter()
        self.failures: list[str] = []
        self.done = threading.Event()

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.paas.port, timeout=30) if self.keep_alive else None
        while not self.done.is_set():
            try:
                status, body, _ = get(self.paas, self.app, conn=conn)
            except (OSError, http.client.HTTPException) as exc:
                self.failures.append(f"{type(exc).__name__}: {exc}")
                if conn is not None:
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", self.paas.port, timeout=30)
                continue
            if status == 200:
                self.answers[body] += 1
            else:
                self.failures.append(f"HTTP {status}: {body[:60]}")

    def __enter__(self) -> Load:
        self.start()
        wait_for(lambda: sum(self.answers.values()) + len(self.failures) > 20, what="the load's first answers")
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.join(timeout=30)
