"""The "Low" holes of issue 9: each test performs the attack and shows it refused, with one line where
there is a message, and nothing changed."""

from __future__ import annotations

import datetime
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

from tests.engine.test_tls import enable_https, https_get
from tests.helpers.host import APPS, EXAMPLE, ROOT, Paas, commit, docker, free_port
from tests.helpers.sshd import Sshd


def wait_for(condition, what: str, limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


# -- 1. HTTPS has a default server -----------------------------------------------------------------

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


def nginx_accepts(main_conf: Path, prefix: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["nginx", "-t", "-q", "-c", str(main_conf), "-p", str(prefix)],
                          capture_output=True, text=True, timeout=60)


def test_system_mode_catch_alls_never_clash_with_the_hosts_default_server(tmp_path: Path) -> None:
    """The host's nginx (system mode) may have default servers of its own, as Debian's `default`
    site does: our http.conf, included into it, must still pass `nginx -t`."""
    from minipaas.routing import proxy
    from minipaas.state import settings

    http_port, https_port = free_port(), free_port()
    host = tmp_path / "host"
    (host / "logs").mkdir(parents=True)

    def host_nginx_with(mode: str) -> Path:
        s = settings.load({"MINIPAAS_HOME": str(tmp_path / mode), "MINIPAAS_NGINX": mode,
                           "MINIPAAS_HTTP_PORT": str(http_port), "MINIPAAS_HTTPS_PORT": str(https_port)})
        proxy.layout(s).sites.mkdir(parents=True)
        proxy.layout(s).control.mkdir(parents=True)
        proxy.layout(s).http_conf.write_text(proxy.render_http_conf(s, serves_https=True))
        main = host / f"nginx-{mode}.conf"
        # Debian's nginx.conf loads its modules (modules-enabled/): the Lua module among them.
        modules = "".join(f"load_module {m};\n" for m in proxy.lua_modules())
        main.write_text(modules + f"""pid {host}/nginx.pid;
error_log {host}/logs/error.log;
events {{}}
http {{
    include {proxy.layout(s).http_conf};
    server {{
        listen {http_port} default_server;
        listen 127.0.0.1:{http_port} default_server;
        return 200 "the host's own default\\n";
    }}
    server {{
        listen {https_port} ssl default_server;
        listen 127.0.0.1:{https_port} ssl default_server;
        ssl_reject_handshake on;
    }}
}}
""")
        return main

    system = host_nginx_with("system")
    directives = [line for line in (tmp_path / "system" / "nginx" / "http.conf").read_text().splitlines()
                  if not line.lstrip().startswith("#")]
    assert not any("default_server" in line for line in directives)
    result = nginx_accepts(system, host)
    assert result.returncode == 0, result.stderr
    # The same host with the private-mode file (which marks its catch-alls): nginx refuses it, so the
    # check above would have seen a duplicate.
    private = nginx_accepts(host_nginx_with("private"), host)
    assert private.returncode != 0 and "duplicate default server" in private.stderr


# -- 8. a recycled pid is never signalled -----------------------------------------------------------

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


# -- 2. `run` hands the app's config to the container only ------------------------------------------

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


# -- 3. the laptop client takes -a/--app only where click takes options ----------------------------

@pytest.mark.parametrize(("argv", "sent"), [
    # The attack: after `--`, -a belongs to the command run in the container.
    (["run", "--", "grep", "-a", "sxb", "/etc/hosts"], ["run", "app", "--", "grep", "-a", "sxb", "/etc/hosts"]),
    (["run", "--", "grep", "--app", "x", "f"], ["run", "app", "--", "grep", "--app", "x", "f"]),
    # run and enter take no option after their first argument, as click parses them.
    (["run", "node", "-a", "x"], ["run", "app", "node", "-a", "x"]),
    (["enter", "web", "--app", "x"], ["enter", "app", "web", "--app", "x"]),
    # Before those, -a/--app picks the app, in every spelling click accepts.
    (["run", "-a", "other", "--", "id"], ["run", "other", "--", "id"]),
    (["run", "--app=other", "id"], ["run", "other", "id"]),
    (["config:set", "K=V", "--app", "other"], ["config:set", "other", "K=V"]),
    (["logs", "-n", "5", "-a", "other", "-f"], ["logs", "other", "-n", "5", "-f"]),
    # The value of another option is never taken for the app option.
    (["logs", "-n", "-a"], ["logs", "app", "-n", "-a"]),
    (["config:set", "K=V", "--", "-a", "x"], ["config:set", "app", "K=V", "--", "-a", "x"]),
    (["apps:list"], ["apps:list"]),
    (["no-such-command", "-a", "x"], ["no-such-command", "-a", "x"]),
])
def test_laptop_client_takes_the_app_option_only_where_click_would(argv: list[str], sent: list[str]) -> None:
    from minipaas.cli import cli
    from minipaas.ssh.remote import command_line

    assert command_line(argv, "app", cli.commands) == sent


@pytest.mark.parametrize(("argv", "words"), [
    (["config", "-a"], "-a needs an app name"),
    (["config", "-a", "x", "--app", "y"], "give --app (-a) once"),
    (["apps:list", "--app", "x"], "apps:list takes no app"),
])
def test_laptop_client_refuses_unclear_app_options(argv: list[str], words: str) -> None:
    from minipaas.cli import cli
    from minipaas.errors import InvalidInput
    from minipaas.ssh.remote import command_line

    with pytest.raises(InvalidInput, match=re.escape(words)):
        command_line(argv, "app", cli.commands)


# -- 4. sudo lets exactly one instance's `ssh-command --home HOME --user NAME --fingerprint FP` through --------

FP = "SHA256:" + "A1+/" * 10 + "xyz"  # the form of a fingerprint: 43 characters of base64


def test_the_sudoers_rule_is_one_regular_expression_of_a_key_name() -> None:
    from minipaas.access import keys, sudoers
    from minipaas.errors import InvalidInput

    assert keys.FINGERPRINT.fullmatch(FP)
    text = sudoers.rule("paas", "/usr/local/bin/minipaas", home="/srv/paas.one+x")
    [rule] = [line for line in text.splitlines() if line.startswith("paas ALL=")]
    assert rule == ("paas ALL=(root) NOPASSWD: /usr/local/bin/minipaas ^ssh-command --home /srv/paas\\.one\\+x "
                    f"--user {keys.KEY_NAME.pattern} --fingerprint SHA256\\:[A-Za-z0-9+/]{{43}}$")
    assert "*" not in rule
    assert 'Defaults:paas env_keep += "SSH_ORIGINAL_COMMAND SSH_CONNECTION"' in text
    assert sudoers.parse(text) == sudoers.Installed("paas", "/usr/local/bin/minipaas", "/srv/paas.one+x")
    for account, program in (("pa as", "/usr/local/bin/minipaas"), ("paas", "minipaas"),
                             ("paas", "/usr/bin/minipaas *"), ("paas", "/usr/../tmp/x"), ("paas\n", "/x")):
        with pytest.raises(InvalidInput):
            sudoers.rule(account, program)
    for home in ("/srv/a b", "relative", "/srv/../etc", "/srv/$(id)", "/srv/a\nb", "/srv//a", "/"):
        with pytest.raises(InvalidInput):
            sudoers.rule("paas", "/usr/local/bin/minipaas", home=home)


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


# -- 5. and 6. certs:add writes certificates only, and reads only what it may ---------------------

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
    assert "ssl" not in (paas.home / "nginx" / "sites" / f"{app}.conf").read_text()


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


def test_read_pem_reads_only_a_bounded_regular_file_whatever_it_is_given(tmp_path: Path) -> None:
    """read_pem itself (click's dir_okay=False stands before it on the command line): a folder raised
    IsADirectoryError when its descriptor was opened as a file, before the regular-file check."""
    from minipaas.errors import InvalidInput
    from minipaas.routing import certs

    huge = tmp_path / "huge.pem"
    huge.write_bytes(b"x" * (certs.MAX_PEM + 1))
    for path, words in [(str(tmp_path), "is not a regular file"), ("/dev/zero", "is not a regular file"),
                        (str(huge), "is larger than"), (str(tmp_path / "none"), "cannot read"),
                        ("a\nb", "cannot read the certificate file 'a\\nb'")]:
        with pytest.raises(InvalidInput) as refused:
            certs.read_pem(path, "certificate")
        assert words in refused.value.message and "\n" not in refused.value.message


@pytest.mark.parametrize("san", [b"0\x0f\x82\x0da\nerror: x.t", b"\x00\x01", b""])
def test_a_certificate_whose_names_cannot_be_read_is_one_line(san: bytes) -> None:
    """A subject alternative names extension of malformed DER: cryptography raised ValueError reading it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtensionOID, NameOID

    from minipaas.errors import InvalidInput
    from minipaas.routing import certs

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "shop.example")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(datetime.datetime(2020, 1, 1))
            .not_valid_after(datetime.datetime(2040, 1, 1))
            .add_extension(x509.UnrecognizedExtension(ExtensionOID.SUBJECT_ALTERNATIVE_NAME, san), critical=False)
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    with pytest.raises(InvalidInput) as refused:
        certs.parse(cert.public_bytes(serialization.Encoding.PEM), key_pem)
    assert "cannot be read" in refused.value.message and "\n" not in refused.value.message


@pytest.mark.parametrize(("found", "swapped"), [
    ("2A8648CE3D0201", "2A8648CE3D0209"),  # the public key's algorithm: an unknown one
    ("2A8648CE3D030107", "2A8648CE3D030109"),  # its curve: one cryptography has not
])
def test_a_certificate_of_a_key_kind_that_cannot_be_read_is_one_line(found: str, swapped: str) -> None:
    """cryptography raises UnsupportedAlgorithm, not ValueError, for a key it has no type for."""
    import base64

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from minipaas.errors import InvalidInput
    from minipaas.routing import certs

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "shop.example")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(datetime.datetime(2020, 1, 1))
            .not_valid_after(datetime.datetime(2040, 1, 1)).sign(key, hashes.SHA256()))
    der = cert.public_bytes(serialization.Encoding.DER).replace(bytes.fromhex(found), bytes.fromhex(swapped))
    pem = b"-----BEGIN CERTIFICATE-----\n" + base64.encodebytes(der) + b"-----END CERTIFICATE-----\n"
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    with pytest.raises(InvalidInput) as refused:
        certs.parse(pem, key_pem)
    assert "cannot be read" in refused.value.message and "\n" not in refused.value.message


# -- 7. and 9. package.json and the Procfile: checked facts only reach the Dockerfile --------------

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


@pytest.mark.parametrize(("document", "words"), [
    ({"engines": 20}, "engines in package.json must be an object, not a number"),
    ({"engines": ["node"]}, "engines in package.json must be an object, not an array"),
    ({"engines": {"node": 20}}, "engines.node in package.json must be a string"),
    ({"engines": {"node": None}}, "must be a string (a version range such as \"20\" or \">=20 <23\"), not null"),
    ({"scripts": "node server.js"}, "scripts in package.json must be an object, not a string"),
    ({"scripts": {"build": ["tsc"]}}, "scripts.'build' in package.json must be a string, not an array"),
    ({"scripts": {"start": True}}, "scripts.'start' in package.json must be a string, not a boolean"),
    ({"packageManager": 10}, "packageManager in package.json must be a string, not a number"),
    ({"packageManager": "bun@1.1.0"}, "names 'bun', which minipaas does not install (it knows npm, yarn, pnpm)"),
    ({"packageManager": "npm"}, "must be NAME@VERSION"),
    ({"packageManager": "npm@latest"}, "must name an exact version"),
    ({"packageManager": "npm@10.0.0\n"}, "must name an exact version"),
    ({"packageManager": "npm@10.0.0 && id"}, "must name an exact version"),
    ({"packageManager": "pnpm@9.1.0+sha512.x\nRUN id"}, "must name an exact version"),
    ({"packageManager": "yarn@4.1.0+md5.abc"}, "must name an exact version"),
    ({"packageManager": "npm@0.0.0-00"}, "must name an exact version"),  # SemVer: no leading zero in a number
    ({"packageManager": "pnpm@9.1.0-rc.01"}, "must name an exact version"),
    ({"packageManager": "npm@1\u0661.0.0"}, "must name an exact version"),  # a regex's \d takes any digit
])
def test_odd_package_json_facts_are_one_line(document: dict[str, object], words: str) -> None:
    from minipaas.build import packagejson
    from minipaas.errors import BuildFailed

    with pytest.raises(BuildFailed) as refused:
        packagejson.parse(json.dumps(document).encode())
    assert words in refused.value.message and "\n" not in refused.value.message


@pytest.mark.parametrize(("raw", "words"), [
    (b"[1, 2]", "must hold a JSON object"),
    (b"{", "is not valid JSON"),
    (b"\xff\xfe{}", "is not valid JSON"),
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    (b'{"x": "' + b"a" * (1024 * 1024) + b'"}', "larger than 1024 KiB"),
])
def test_odd_package_json_documents_are_one_line(raw: bytes, words: str) -> None:
    from minipaas.build import packagejson
    from minipaas.errors import BuildFailed

    with pytest.raises(BuildFailed, match=re.escape(words)):
        packagejson.parse(raw)


def test_package_json_facts_reach_the_dockerfile_checked() -> None:
    from minipaas.build import buildpacks, nodeinstall, packagejson
    from minipaas.state.settings import SHARE_DIR

    package = packagejson.parse(json.dumps({
        "packageManager": "pnpm@9.1.0+sha512.0123abcdef", "engines": {"node": ">=20"},
        "scripts": {"build": "vite build", "start": "node ."}, "other": {"anything": ["goes"]},
    }).encode())
    assert package == packagejson.Package(">=20", {"build": "vite build", "start": "node ."},
                                          packagejson.PackageManager("pnpm", "9.1.0", "sha512.0123abcdef"))
    [node] = [p for p in buildpacks.load_all(SHARE_DIR / "buildpacks") if p.name == "node"]
    # engines.node reaches no template: stacks.py resolves it to an exact version, the fact `base`.
    install = nodeinstall.decide(package, {"package.json", "pnpm-lock.yaml"}, lambda name: None)
    dockerfile = buildpacks.render(node, {"app": "a", "files": ["package.json", "pnpm-lock.yaml"],
                                          "package": package, "install": install, "procfile": {}, "build_ca": False,
                                          "base": "minipaas/node:26.10.0", "node_version": "26.10.0"})
    assert "FROM minipaas/node:26.10.0 AS build\n" in dockerfile and ">=20" not in dockerfile
    # The checked version and hash, no more, and only as an argument of a fixed script (ASCII JSON).
    assert "pnpm@9.1.0" not in "".join(line for line in dockerfile.splitlines() if not line.startswith("RUN "))
    [step] = [line for line in dockerfile.splitlines() if "pnpm@9.1.0" in line]
    assert step.endswith('"sh", "pnpm@9.1.0+sha512.0123abcdef"]'), step
    assert "RUN pnpm run build" in dockerfile
    assert packagejson.parse(None) == packagejson.Package()


@pytest.mark.parametrize(("text", "words"), [
    (b"Web: node web.js", "Procfile line 1: invalid process type 'Web'"),
    (b"web node web.js", "Procfile line 1 is not `type: command`"),
    (b"# comment\n\nweb:", "Procfile line 3: web has no command"),
    (b"web: a\nweb: b", "Procfile line 2: web is defined twice"),
    (b"web: node\x1b[2J web.js", "Procfile line 1: the command of web holds a control character"),
    (b"web: node web.js\rworker: x", "the command of web holds a control character"),
    (b"web: node\x00", "control character"),
    (b"we b: x", "invalid process type 'we b'"),
    (b"web: caf\xe9", "the Procfile is not valid UTF-8"),
    (b"web: " + b"x" * 70_000, "the Procfile is larger than 64 KiB"),
])
def test_odd_procfiles_are_one_line(text: bytes, words: str) -> None:
    from minipaas.build import procfile
    from minipaas.errors import BuildFailed

    with pytest.raises(BuildFailed) as refused:
        procfile.parse(text)
    assert words in refused.value.message and "\n" not in refused.value.message


def test_a_procfile_of_the_documented_form_is_read() -> None:
    from minipaas.build import procfile

    text = b"# processes\r\nweb: node web.js --port $PORT\r\n\r\nworker:node\tworker.js\nrelease: node migrate.js\n"
    assert procfile.parse(text) == {"web": "node web.js --port $PORT", "worker": "node\tworker.js",
                                    "release": "node migrate.js"}


# -- 7. a newline in an ssh command forges no row of `events` -----------------------------------------

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


# -- 10. every response of a Markdown docs site carries its CSP -------------------------------------

EVIL = "<!doctype html><title>evil</title><script>document.title = document.cookie</script>\n"


def test_raw_html_in_a_docs_repo_is_served_under_the_docs_csp(paas: Paas, tmp_path: Path) -> None:
    from minipaas.routing.docmodel import CSP

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
