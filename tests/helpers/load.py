"""Load during a test: wrk with tests/load/mixed.lua against an app (its counts per status), and the check
that no request failed."""

from __future__ import annotations

import re
import signal
import subprocess
from pathlib import Path

from tests.helpers.host import Paas

LUA = Path(__file__).resolve().parents[1] / "load" / "mixed.lua"


def start_wrk(paas: Paas, app: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["wrk", "-d", "300s", "--timeout", "10s", "-H", f"Host: {app}.paas.test", *extra,
         f"http://127.0.0.1:{paas.port}/"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def stop_wrk(proc: subprocess.Popen[str]) -> dict[str, int]:
    proc.send_signal(signal.SIGINT)  # wrk prints its summary on SIGINT
    output, _ = proc.communicate(timeout=30)
    counts = {"requests": int(re.search(r"(\d+) requests in", output).group(1))}
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    counts["socket_errors"] = sum(int(g) for g in errors.groups()) if errors else 0
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    counts["non_2xx"] = int(non2xx.group(1)) if non2xx else 0
    counts["output"] = output  # type: ignore[assignment]
    return counts


def no_failed_request(counts: dict[str, int], *, more_than: int) -> None:
    """wrk's counts (stop_wrk): more than `more_than` requests, no socket error, no answer outside 2xx/3xx."""
    assert counts["requests"] > more_than, counts["output"]
    assert counts["socket_errors"] == 0, counts["output"]
    assert counts["non_2xx"] == 0, counts["output"]
