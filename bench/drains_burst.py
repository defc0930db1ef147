"""Log drains under a burst: how many of the lines a container prints at once reach a drain, with the shipper's
UDP input at the kernel's default socket buffer and at access/drains.py's RECEIVE_BUFFER.

A real rsyslogd with the rendered config (access/drains.py `render`), a real container with the engine's syslog
driver (`log_config`), and a TCP drain this script runs on 127.0.0.1. Prints a Markdown table: per buffer and
burst size, the lines received (median, min of --runs) and the seconds until the last one arrived (median).
`/opt/minipaas/venv/bin/python bench/drains_burst.py [--runs 3] [--image minipaas/debian:bookworm]`
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from minipaas.access import drains
from minipaas.adapters import rsyslog

QUIET = 2.0  # seconds with no new line: the burst is over (UDP loses lines silently; nothing else says so)


def one_run(lines: int, buffer: str, image: str) -> tuple[int, float]:
    got: list[bytes] = []
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        with server:
            conn, _ = server.accept()
            buf = b""
            with conn:
                while chunk := conn.recv(1 << 16):
                    buf += chunk
                    *done, buf = buf.split(b"\n")
                    got.extend(done)

    threading.Thread(target=serve, daemon=True).start()
    with tempfile.TemporaryDirectory() as work, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        config, pid_file = Path(work) / "rsyslog.conf", Path(work) / "rsyslog.pid"
        config.write_text(drains.render(port=port, work_dir=work, receive_buffer=buffer, drains={
            "bench": [drains.parse(f"syslog+tcp://127.0.0.1:{server.getsockname()[1]}")]}))
        rsyslog.start(config, pid_file, Path(work) / "rsyslog.log", port)
        try:
            options = drains.log_config("bench", "web", 1, port)["Config"]
            assert isinstance(options, dict)
            started = time.monotonic()
            subprocess.run(["docker", "run", "--rm", "--log-driver", "syslog",
                            *[f"--log-opt={key}={value}" for key, value in options.items()],
                            image, "seq", "1", str(lines)], check=True, stdout=subprocess.DEVNULL)
            last, seen = time.monotonic(), 0
            while len(got) < lines and time.monotonic() - last < QUIET:
                if len(got) != seen:
                    seen, last = len(got), time.monotonic()
                time.sleep(0.02)
            numbers = [int(line.rsplit(b" ", 1)[1]) for line in got]
            assert numbers == sorted(numbers), "lines out of order"
            return len(got), last - started
        finally:
            rsyslog.stop(pid_file, config)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--image", default="minipaas/debian:bookworm")
    args = parser.parse_args()
    print("| UDP input buffer | lines printed | received (median) | received (min) | seconds (median) |\n"
          "| --- | --- | --- | --- | --- |")
    for buffer in ("", drains.RECEIVE_BUFFER):
        for lines in (20_000, 100_000):
            runs = [one_run(lines, buffer, args.image) for _ in range(args.runs)]
            received = [r[0] for r in runs]
            print(f"| {buffer or 'kernel default'} | {lines} | {statistics.median(received):.0f} | {min(received)} "
                  f"| {statistics.median(r[1] for r in runs):.2f} |", flush=True)


if __name__ == "__main__":
    main()
