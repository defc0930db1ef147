"""The "Low" holes of issue 9 that need the engine or a push: each test performs the attack and shows it
refused, with one line where there is a message, and nothing changed (the rest: tests/unit/test_security_low.py)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.host import APPS, EXAMPLE, ROOT, Paas, commit, docker
from tests.helpers.sshd import Sshd
from tests.helpers.tls import enable_https, https_get

FP = "SHA256:" + "A1+/" * 10 + "xyz"  # the form of a fingerprint: 43 characters of base64


def wait_for(condition, what: str, limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)



def tls_handshake(port: int, name: str) -> ssl.SSLSocket:
    """A TLS handshake with SNI `name`, trusting anything: only whether the server accepts it matters."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        return context.wrap_socket(sock, server_hostname=name)
    except BaseException:
        sock.close()
        raise



def test_unknown_names_get_no_app_over_https_nor_http(paas: Paas) -> None:
    enable_https(paas)
    app, _ = paas.deploy(APPS / "static-site")
    paas.run("certs:generate", app)
    cert_file = str(paas.home / "certs" / app / "fullchain.pem")

    with pytest.raises(ssl.SSLError, match="UNRECOGNIZED_NAME"):
        tls_handshake(paas.https_port, "stranger.example.test")
    with pytest.raises(ssl.SSLError, match="UNRECOGNIZED_NAME"):
        tls_handshake(paas.https_port, f"other.{app}.paas.test")
    plain = paas.get(app, host="stranger.example.test")
    assert plain.status == 404 and plain.body == "no app is served at this address\n"
    assert "static home" not in plain.body.lower()

    # The app's own name still works, with its certificate.
    status, _, body = https_get(paas, app, cert_file)
    assert status == 200 and b"Static home" in body
    with tls_handshake(paas.https_port, f"{app}.paas.test") as tls:
        assert tls.version() in ("TLSv1.2", "TLSv1.3")

    # With no certificate left, nothing listens on the HTTPS port at all.
    paas.run("certs:remove", app)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", paas.https_port), timeout=10).close()
    assert paas.get(app).status == 200



HUP_RECORDER = """
import signal, sys, time
log = open(sys.argv[1], "a", buffering=1)
signal.signal(signal.SIGHUP, lambda *_: log.write("SIGHUP\\n"))
log.write("ready\\n")
time.sleep(300)
"""



def gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith(("Z", "X"))
    except OSError:
        return True



def test_a_recycled_nginx_pid_gets_no_signal_and_the_app_is_served(paas: Paas, tmp_path: Path) -> None:
    app, _ = paas.deploy(APPS / "dockerfile")
    paas.run("settings:set", app, "drain-seconds", "0")
    pid_file = paas.home / "nginx" / "run" / "front.pid"
    master = int(pid_file.read_text())
    os.kill(master, signal.SIGQUIT)  # nginx's master ends (a crash, a reboot) ...
    wait_for(lambda: gone(master), "nginx's master to end")
    log = tmp_path / "signals.log"
    # ... and its pid now belongs to another process, which must never get the master's SIGHUP.
    bystander = subprocess.Popen([sys.executable, "-c", HUP_RECORDER, str(log)])
    try:
        wait_for(lambda: log.exists() and log.read_text() == "ready\n", "the bystander to start")
        pid_file.write_text(f"{bystander.pid}\n")

        paas.run("ps:restart", app)  # a deploy: it finds nginx down and starts it, then switches traffic

        assert log.read_text() == "ready\n"  # no SIGHUP
        assert bystander.poll() is None
        assert paas.get(app).body == "from my own Dockerfile\n"
        new_master = int(pid_file.read_text())
        assert new_master != bystander.pid
        assert Path(f"/proc/{new_master}/cmdline").read_bytes().startswith(b"nginx: master process")
    finally:
        bystander.kill()
        bystander.wait()



def test_run_gives_config_to_the_container_and_not_to_the_hosts_docker(paas: Paas) -> None:
    app, _ = paas.deploy(EXAMPLE)
    # Both would redirect or break the host's `docker` program if config reached its environment.
    paas.run("config:set", app, "DOCKER_HOST=tcp://127.0.0.1:1", "PATH=/nonexistent", "--no-restart")
    shown = paas.run("run", app, "--", "/usr/local/bin/node", "-e",
                     "console.log(process.env.DOCKER_HOST, process.env.PATH)")
    assert shown.stdout == "tcp://127.0.0.1:1 /nonexistent\n", shown.stderr
    assert paas.run("run", app, "--", "/usr/local/bin/node", "-e", "process.exit(7)", check=False).returncode == 7
    piped = paas.run("run", app, "--", "/bin/sh", "-c", "test -t 0 && echo tty || /bin/cat", input="via stdin\n")
    assert piped.stdout == "via stdin\n"
    assert [c for c in paas.container_names() if ".run." in c] == []  # auto-removed once ended



@pytest.fixture
def sudo_account(paas: Paas) -> Iterator[tuple[str, Path, Path]]:
    """A throwaway local account with the rendered rule installed for it, and the program the rule
    names: a wrapper that logs its arguments and runs this checkout's minipaas (the home comes from the
    arguments, as under the real rule: sudo passes no MINIPAAS_HOME on)."""
    from minipaas.access import sudoers

    sudo = shutil.which("sudo")
    assert sudo is not None, "sudo is not installed (install.sh installs it): the rule cannot be checked"
    account = f"mpt{uuid.uuid4().hex[:10]}"
    folder = Path(tempfile.mkdtemp(prefix="minipaas-sudo-"))
    folder.chmod(0o755)  # the account's sudo must reach the program
    log = folder / "ran.log"
    program = folder / "minipaas"
    program.write_text(f"#!/bin/sh\necho \"$*\" >>{log}\n"
                       f"exec env PYTHONPATH={ROOT} {sys.executable} -m minipaas \"$@\"\n")
    program.chmod(0o755)
    rule_file = Path(f"/etc/sudoers.d/minipaas-test-{uuid.uuid4().hex[:12]}")  # no dot: sudo reads it
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", account], check=True)
    try:
        candidate = folder / "rule"
        candidate.write_text(sudoers.rule(account, str(program), home=str(paas.home)))
        checked = subprocess.run(["visudo", "-cf", str(candidate)], capture_output=True, text=True)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        shutil.copyfile(candidate, rule_file)
        rule_file.chmod(0o440)
        yield account, program, log
    finally:
        rule_file.unlink(missing_ok=True)
        subprocess.run(["userdel", account], check=True)
        shutil.rmtree(folder)



def as_account(account: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "SSH_ORIGINAL_COMMAND": "apps:list"}
    return subprocess.run(["runuser", "-u", account, "--", "sudo", "-n", *args], capture_output=True, text=True,
                          timeout=120, env=env)



def test_sudo_lets_only_one_user_argument_through(paas: Paas, sudo_account: tuple[str, Path, Path]) -> None:
    account, program, log = sudo_account
    home = str(paas.home)
    other = str(paas.home.parent / "other")  # another home: one the account would have made itself
    for extra in (["--home", home, "--user", "dep", "--user", "adm", "--fingerprint", FP],
                  ["--home", home, "--user", "Adm", "--fingerprint", FP],
                  ["--home", home, "--user", "a b", "--fingerprint", FP],
                  ["--home", home, "--user", "a", "--fingerprint", FP, "x"], ["--home", home, "--user", "a"],
                  ["--user", "a"], ["--home", other, "--user", "a", "--fingerprint", FP],
                  ["--home", f"{home}/../../x", "--user", "a", "--fingerprint", FP],
                  ["--home", home + "x", "--user", "a", "--fingerprint", FP],
                  ["--home", home, "--user", "a", "--fingerprint", FP + "A"],
                  ["--home", home, "--user", "a", "--fingerprint", FP.replace(":", "x", 1)],
                  ["--user", "a", "--home", home, "--fingerprint", FP], ["--help"]):
        refused = as_account(account, str(program), "ssh-command", *extra)
        assert refused.returncode == 1 and "a password is required" in refused.stderr, (extra, refused.stderr)
        assert not log.exists()  # minipaas never ran
    allowed = as_account(account, str(program), "ssh-command", "--home", home, "--user", "a", "--fingerprint", FP)
    # The rule matched: minipaas ran as root, and refuses a key that is not registered.
    assert log.read_text() == f"ssh-command --home {home} --user a --fingerprint {FP}\n"
    assert allowed.returncode == 1 and allowed.stderr == "error: the key for a is no longer registered\n"



def test_ssh_command_itself_takes_exactly_one_user(paas: Paas) -> None:
    home = str(paas.home)
    twice = paas.run("ssh-command", "--home", home, "--user", "dep", "--user", "adm", "--fingerprint", FP, check=False)
    assert twice.returncode == 1 and twice.stderr == "error: ssh-command takes exactly one --user NAME\n"
    two_homes = paas.run("ssh-command", "--home", home, "--home", "/tmp", "--user", "adm", "--fingerprint", FP,
                         check=False)
    assert two_homes.returncode == 1 and two_homes.stderr == (
        "error: ssh-command takes exactly one --home HOME, --user NAME and --fingerprint SHA256:...\n")
    once = paas.run("ssh-command", "--home", home, "--user", "adm", "--fingerprint", FP, check=False)
    assert once.returncode == 1 and once.stderr == "error: the key for adm is no longer registered\n"



def self_signed(work: Path, name: str) -> tuple[Path, Path]:
    cert, key = work / "cert.pem", work / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-days", "30", "-subj", f"/CN={name}", "-addext", f"subjectAltName=DNS:{name}",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key



def one_error_line(result: subprocess.CompletedProcess[str], words: str) -> None:
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ") and words in result.stderr, \
        result.stderr



def test_a_private_key_in_the_certificate_file_is_refused(paas: Paas) -> None:
    app = paas.new_app()
    cert, key = self_signed(paas.work, f"{app}.paas.test")
    pasted = paas.work / "pasted.pem"
    for label in ("PRIVATE KEY", "EC PRIVATE KEY", "RSA PRIVATE KEY", "ENCRYPTED PRIVATE KEY"):
        body = key.read_text().replace("PRIVATE KEY", label)
        for text in (cert.read_text() + body, body + cert.read_text()):
            pasted.write_text(text)
            one_error_line(paas.run("certs:add", app, str(pasted), str(key), check=False), "holds a private key")
    assert not (paas.home / "certs" / app).exists()
    # Its vhost serves no HTTPS (the home's own path, random, may hold the letters "ssl": read the directives).
    vhost = (paas.home / "nginx" / "sites" / f"{app}.conf").read_text()
    assert not re.search(r"^\s*(ssl_certificate|listen\s[^;]*\bssl\b)", vhost, re.M), vhost



def test_fullchain_holds_the_certificate_blocks_only(paas: Paas) -> None:
    enable_https(paas)
    app = paas.new_app()
    cert, key = self_signed(paas.work, f"{app}.paas.test")
    noisy = paas.work / "noisy.pem"
    # As `openssl pkcs12` prints it: attributes around the block, which fullchain.pem needs not hold.
    noisy.write_text(f"Bag Attributes\n    localKeyID: 01 02\nsubject=/CN=secret-note\n{cert.read_text()}trailer\n")
    paas.run("certs:add", app, str(noisy), str(key))
    written = (paas.home / "certs" / app / "fullchain.pem").read_text()
    assert written == cert.read_text()
    assert "secret-note" not in written and "trailer" not in written



def test_certs_add_reads_a_bounded_regular_file_or_says_why_not(paas: Paas) -> None:
    app = paas.new_app()
    cert, key = self_signed(paas.work, f"{app}.paas.test")
    fifo = paas.work / "fifo"
    os.mkfifo(fifo)
    huge = paas.work / "huge.pem"
    huge.write_bytes(b"A" * (1024 * 1024 + 1))
    for cert_file, key_file, words in [
        ("/dev/zero", str(key), "the certificate file '/dev/zero' is not a regular file"),
        (str(cert), "/dev/zero", "the key file '/dev/zero' is not a regular file"),
        (str(fifo), str(key), "is not a regular file"),  # no writer: reading it would wait forever
        (str(huge), str(key), "is larger than 1024 KiB"),
        (str(cert), str(huge), "is larger than 1024 KiB"),
    ]:
        one_error_line(paas.run("certs:add", app, cert_file, key_file, check=False, timeout=60), words)
    assert not (paas.home / "certs" / app).exists()



def push_package(paas: Paas, change: dict[str, object]) -> tuple[str, subprocess.CompletedProcess[str]]:
    """Push the example app with package.json changed: it must be rejected before anything is built."""
    app = paas.new_app()
    checkout = paas.checkout(app, EXAMPLE)
    package = checkout / "package.json"
    package.write_text(json.dumps({**json.loads(package.read_text()), **change}, indent=2))
    commit(checkout, "odd package.json")
    return app, paas.push(checkout, expect_ok=False)



def assert_rejected_before_building(paas: Paas, app: str, result: subprocess.CompletedProcess[str],
                                    words: str) -> None:
    output = result.stdout + result.stderr
    errors = [line.rstrip() for line in output.splitlines() if line.startswith("remote: !")]
    assert errors[-1] == "remote: !     push rejected; nothing was deployed", output  # a first push
    assert len(errors) == 2 and words in errors[0], output
    assert "internal error" not in output and "Traceback" not in output
    assert "Step " not in output and "Building" not in output  # no build started
    assert paas.repo_ref(app) == ""
    assert docker("images", "-q", paas.repository(app)) == ""
    assert paas.containers() == []



def test_a_newline_in_package_manager_adds_no_dockerfile_line(paas: Paas) -> None:
    app, result = push_package(paas, {"packageManager": "npm@10.0.0\nRUN touch /pwned"})
    assert_rejected_before_building(paas, app, result, "packageManager in package.json must name an exact version")
    assert "'npm@10.0.0\\nRUN touch /pwned'" in result.stderr  # shown escaped, on its one line



def test_engines_node_of_the_wrong_type_is_one_line(paas: Paas) -> None:
    app, result = push_package(paas, {"engines": {"node": 20}})
    assert_rejected_before_building(paas, app, result, "engines.node in package.json must be a string")



def test_control_characters_in_an_ssh_command_show_escaped_in_one_row(paas: Paas, sshd: Sshd) -> None:
    paas.run("ssh-keys:add", "alice", input=sshd.key("alice").with_suffix(".pub").read_text())
    forged = "2099-01-01 00:00:00  root   victim  ok       apps:destroy victim --force"
    sshd.ssh("alice", "apps:list", f"'\x1b[2Jx\n{forged}'")
    table = paas.run("events").stdout.splitlines()
    assert len(table) == 2, table  # the header and one row
    assert table[0].split() == ["WHEN", "USER", "APP", "OUTCOME", "COMMAND"]
    assert "alice" in table[1] and "\\n2099-01-01" in table[1] and "\\x1b[2J" in table[1]
    assert not any(line.startswith("2099") for line in table)
    assert "\x1b" not in "\n".join(table)



EVIL = "<!doctype html><title>evil</title><script>document.title = document.cookie</script>\n"



def test_raw_html_in_a_docs_repo_is_served_under_the_docs_csp(paas: Paas, tmp_path: Path) -> None:
    from minipaas.build.docsite.model import CSP

    source = tmp_path / "docs"
    shutil.copytree(APPS / "markdown-docs", source)
    (source / "evil.html").write_text(EVIL)
    (source / "guide" / "evil.html").write_text(EVIL)
    app, checkout = paas.deploy(source)
    for path in ("/evil.html", "/evil", "/guide/evil.html"):
        served = paas.get(app, path)
        assert served.status == 200 and served.body == EVIL  # the file as it is ...
        assert served.headers["content-security-policy"] == CSP  # ... but no browser runs its script
    for path in ("/", "/guide/install.html", "/assets/docsite.css", "/no-such-page"):
        assert paas.get(app, path).headers["content-security-policy"] == CSP, path

    # A plain static site (its own scripts are its business) gets no such header; rolling back to
    # the docs site brings it back.
    for path in checkout.iterdir():
        if path.name != ".git":
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    (checkout / "index.html").write_text("<!doctype html><script>console.log('mine')</script>\n")
    commit(checkout, "a plain static site")
    paas.push(checkout)
    plain = paas.get(app, "/")
    assert plain.status == 200 and "mine" in plain.body and "content-security-policy" not in plain.headers
    paas.run("releases:rollback", app)
    assert paas.get(app, "/evil.html").headers["content-security-policy"] == CSP

