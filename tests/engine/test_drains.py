"""Log drains end to end (issue 25): a real host, real pushes, the real rsyslogd shipper, and a syslog receiver
the test runs on 127.0.0.1 (TCP, one record a line). One app serves every assertion: bad input is one line and
adds nothing; the receiver gets every line the app printed, in order, each with the app, process type, release
and container; `logs APP` still shows them; a second drain whose port refuses connections changes nothing for the
app (a new push goes live and answers 200, its lines reach the first drain); nor does the shipper killed
(the watcher starts it again); removing the drains puts the app
back on the engine's json-file driver and stops the shipper. (URLs, redaction, the rendered config:
tests/unit/test_drains_units.py.)"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.helpers.faults import wait_for
from tests.helpers.host import EXAMPLE, Paas, commit, docker, free_port

LINES = 30
RECORD = re.compile(r'<\d+>1 \S+ \S+ (?P<app>\S+) (?P<process>\S+) - \[minipaas@32473 app="(?P<sd_app>[^"]+)" '
                    r'process="(?P<sd_process>[^"]+)" release="(?P<release>\d+)" container="(?P<container>\w+)"\] '
                    r'(?P<msg>.*)')


@dataclass
class Receiver:
    port: int
    lines: list[str] = field(default_factory=list)

    def records(self) -> list[dict[str, str]]:
        found = []
        for line in list(self.lines):
            match = RECORD.fullmatch(line)
            assert match, f"not a drain record: {line!r}"
            found.append(match.groupdict())
        return found

    def messages(self, release: int) -> list[str]:
        return [r["msg"] for r in self.records() if r["release"] == str(release)]


@contextlib.contextmanager
def syslog_receiver() -> Iterator[Receiver]:
    """A syslog server over TCP (newline-framed records, as rsyslog's omfwd sends them) on 127.0.0.1."""
    server = socket.create_server(("127.0.0.1", 0))
    received = Receiver(port=server.getsockname()[1])

    def serve(conn: socket.socket) -> None:
        buffer = b""
        with conn:
            while chunk := conn.recv(65536):
                buffer += chunk
                *done, buffer = buffer.split(b"\n")
                received.lines.extend(line.decode() for line in done)

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = server.accept()
                threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield received
    finally:
        server.close()


def printing_app(paas: Paas, app: str) -> Path:
    """The example app, printing LINES numbered lines (some with spaces kept as printed) as it starts."""
    checkout = paas.checkout(app, EXAMPLE)
    server = checkout / "server.js"
    server.write_text(server.read_text() + f"""
for (let i = 1; i <= {LINES}; i++) console.log(`drain line ${{i}} of ${{"r1"}}  end`);
""")
    commit(checkout, "print numbered lines")
    return checkout


def test_a_drain_gets_every_line_and_a_dead_one_changes_nothing(paas: Paas) -> None:
    with syslog_receiver() as drain:
        app = paas.new_app("d")
        url = f"syslog+tcp://127.0.0.1:{drain.port}"
        dead = f"syslog+tcp://127.0.0.1:{free_port()}"  # nothing listens there: connections are refused

        # bad input: one line each, nothing stored
        for bad in ("ftp://127.0.0.1:21", "syslog+tcp://127.0.0.1", "https://logs.example.com/x?token=s3cret"):
            refused = paas.run("logs:drain", app, bad, check=False)
            assert refused.returncode == 1 and len(refused.stderr.strip().splitlines()) == 1, refused
            assert refused.stderr.startswith("error: ") and "s3cret" not in refused.stderr
        assert "has no log drains" in paas.run("logs:drains", app).stdout

        # two drains before the first push: its containers log through the shipper from their start
        paas.run("logs:drain", app, url)
        paas.run("logs:drain", app, dead)
        again = paas.run("logs:drain", app, url, check=False)
        assert again.returncode == 1 and "already" in again.stderr
        assert paas.run("logs:drains", app).stdout.split()[1:] == [url, dead]

        checkout = printing_app(paas, app)
        paas.push(checkout)
        assert paas.get(app).status == 200
        # every line, in order, as printed (the loop runs as server.js loads, before the server listens)
        expected = [f"drain line {i} of r1  end" for i in range(1, LINES + 1)] + ["listening on 5000"]
        assert wait_for(lambda: len(drain.messages(1)) >= len(expected), 30), drain.lines
        assert drain.messages(1) == expected
        web = docker("inspect", "-f", "{{.Id}}", paas.container(f"{app}.web.1")).strip()
        [one] = {(r["app"], r["sd_app"], r["process"], r["sd_process"], r["container"]) for r in drain.records()}
        assert one == (app, app, "web", "web", web[:12])
        assert docker("inspect", "-f", "{{.HostConfig.LogConfig.Type}}", web).strip() == "syslog"
        shown = paas.run("logs", app).stdout  # the engine's dual-logging cache
        assert all(line in shown for line in expected)

        # the dead drain changes nothing: a new push goes live, answers, and its lines reach the live drain
        server = checkout / "server.js"
        server.write_text(server.read_text().replace('"r1"', '"r2"'))
        commit(checkout, "release 2 prints r2")
        paas.push(checkout)
        assert paas.get(app).status == 200
        assert wait_for(lambda: len(drain.messages(2)) >= LINES + 1, 30), drain.lines
        assert drain.messages(2) == [f"drain line {i} of r2  end" for i in range(1, LINES + 1)] + ["listening on 5000"]
        assert "cannot connect to 127.0.0.1" in (paas.home / "logs" / "drains.log").read_text()

        # the shipper killed: a restart still goes live (UDP to nobody never fails a start), the watcher starts it again
        pid_file = paas.home / "nginx" / "run" / "drains.pid"
        killed = int(pid_file.read_text())
        os.kill(killed, signal.SIGKILL)
        paas.run("ps:restart", app)
        assert paas.get(app).status == 200
        assert wait_for(lambda: pid_file.exists() and int(pid_file.read_text() or 0) not in (0, killed)
                        and Path(f"/proc/{int(pid_file.read_text())}").exists(), 30)
        # ps:restore (after a boot) starts it before it brings the apps back (unless the watcher was quicker)
        restarted = int(pid_file.read_text())
        os.kill(restarted, signal.SIGKILL)
        paas.run("ps:restore")
        assert int(pid_file.read_text()) not in (killed, restarted)
        assert Path(f"/proc/{int(pid_file.read_text())}/cmdline").read_bytes().startswith(b"/usr/sbin/rsyslogd")

                # removing one drain touches no container; removing the last puts the app back on json-file
        paas.run("logs:drain:remove", app, dead)
        assert paas.container(f"{app}.web.1") in docker("ps", "--format", "{{.Names}}").split()
        removed = paas.run("logs:drain:remove", app, url)
        assert "json-file" in removed.stdout
        # release 4, the restart's (earlier releases' containers retire in the background)
        assert docker("inspect", "-f", "{{.HostConfig.LogConfig.Type}}",
                      paas.container(f"{app}.web.4")).strip() == "json-file"
        assert paas.get(app).status == 200
        assert not (paas.home / "nginx" / "run" / "drains.pid").exists()
