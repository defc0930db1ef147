"""letsencrypt:*: certificates from a real ACME server (Debian's pebble) over HTTP-01.

pebble validates by fetching http://<domain>:<the test nginx's port>/.well-known/acme-challenge/...
after asking pebble-challtestsrv, a mock DNS server, which answers 127.0.0.1 for every name. The
issued chain is then checked by a real TLS client against pebble's root CA.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import json
import os
import re
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.helpers.host import APPS, Paas, free_port
from tests.helpers.tls import enable_https, https_get

PEBBLE = Path("/usr/bin/pebble")
CHALLTESTSRV = Path("/usr/bin/pebble-challtestsrv")

pytestmark = pytest.mark.skipif(not PEBBLE.exists() or not CHALLTESTSRV.exists(),
                                reason="pebble is not installed (apt-get install pebble)")


@dataclass
class Pebble:
    directory: str
    management: str
    ca: Path  # the localhost certificate pebble's own HTTPS endpoints use

    def root_file(self, folder: Path) -> Path:
        """pebble's root CA (made anew at each start), from its management API."""
        context = ssl.create_default_context(cafile=str(self.ca))
        with urllib.request.urlopen(f"{self.management}/roots/0", context=context, timeout=10) as resp:
            pem = resp.read()
        assert pem.startswith(b"-----BEGIN CERTIFICATE-----")
        path = folder / "pebble-root.pem"
        path.write_bytes(pem)
        return path


def localhost_cert(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "localhost.pem", folder / "localhost.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{process.args[0]} exited ({process.returncode}):\n{log.read_text()}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"{process.args[0]} did not listen on {port} in {timeout}s:\n{log.read_text()}")


@contextlib.contextmanager
def running_pebble(folder: Path, http_port: int) -> Iterator[Pebble]:
    """pebble and its mock DNS on loopback; HTTP-01 validation goes to 127.0.0.1:`http_port`."""
    folder.mkdir()
    cert, key = localhost_cert(folder)
    dns_port, dns_management = free_port(), free_port()
    dns_log = folder / "challtestsrv.log"
    processes = []
    with dns_log.open("wb") as out:
        dns = subprocess.Popen([str(CHALLTESTSRV), "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "",
                                "-dns01", f"127.0.0.1:{dns_port}", "-http01", "", "-https01", "",
                                "-tlsalpn01", "", "-management", f"127.0.0.1:{dns_management}"],
                               stdout=out, stderr=subprocess.STDOUT)
    processes.append(dns)
    try:
        wait_for_port(dns_management, dns, dns_log)
        acme_port, management_port = free_port(), free_port()
        config = folder / "pebble.json"
        config.write_text(json.dumps({"pebble": {
            "listenAddress": f"127.0.0.1:{acme_port}",
            "managementListenAddress": f"127.0.0.1:{management_port}",
            "certificate": str(cert),
            "privateKey": str(key),
            "httpPort": http_port,
            "tlsPort": free_port(),
            "ocspResponderURL": "",
            "externalAccountBindingRequired": False,
        }}))
        log = folder / "pebble.log"
        with log.open("wb") as out:
            server = subprocess.Popen([str(PEBBLE), "-config", str(config), "-dnsserver", f"127.0.0.1:{dns_port}"],
                                      stdout=out, stderr=subprocess.STDOUT,
                                      env={**os.environ, "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"})
        processes.append(server)
        wait_for_port(acme_port, server, log)
        wait_for_port(management_port, server, log)
        yield Pebble(directory=f"https://127.0.0.1:{acme_port}/dir",
                     management=f"https://127.0.0.1:{management_port}", ca=cert)
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=10)


@pytest.fixture
def pebble(paas: Paas, tmp_path: Path) -> Iterator[Pebble]:
    """A pebble validating against this test's nginx, and minipaas set to use it."""
    with running_pebble(tmp_path / "pebble", paas.port) as server:
        paas.env["MINIPAAS_ACME_DIRECTORY"] = server.directory
        paas.env["MINIPAAS_ACME_CA"] = str(server.ca)
        yield server


def served_cert(paas: Paas, app: str) -> x509.Certificate:
    """The certificate nginx presents for the app (not verified: only to read its serial)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", paas.https_port), timeout=10) as sock, \
            context.wrap_socket(sock, server_hostname=f"{app}.paas.test") as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def stored_cert(paas: Paas, app: str) -> x509.Certificate:
    return x509.load_pem_x509_certificates((paas.home / "certs" / app / "fullchain.pem").read_bytes())[0]


def challenge_files(paas: Paas) -> list[Path]:
    folder = paas.home / "acme" / "webroot" / ".well-known" / "acme-challenge"
    return sorted(folder.iterdir()) if folder.is_dir() else []


def test_enable_gets_a_certificate_for_all_domains_that_a_tls_client_trusts(paas: Paas, pebble: Pebble) -> None:
    enable_https(paas)
    app, _ = paas.deploy(APPS / "dockerfile")
    paas.run("domains:add", app, f"www.{app}.paas.test")

    started = time.monotonic()
    out = paas.run("letsencrypt:enable", app).stdout
    took = time.monotonic() - started
    assert (f"-----> Requesting a certificate for {app}.paas.test, www.{app}.paas.test "
            f"from {pebble.directory}") in out
    assert "registered ACME account" in out
    assert f"names:     {app}.paas.test, www.{app}.paas.test" in out and "Pebble Intermediate" in out
    assert took < 60, f"issuing took {took:.1f}s"

    # A real TLS client, with nothing but pebble's root as trust anchor, accepts the chain nginx serves.
    root = pebble.root_file(paas.work)
    status, _, body = https_get(paas, app, str(root))
    assert status == 200 and body == b"from my own Dockerfile\n"
    # ...and not with some other trust anchor.
    with pytest.raises(ssl.SSLCertVerificationError):
        https_get(paas, app, str(pebble.ca))
    assert paas.get(app).status == 301  # plain HTTP now redirects to HTTPS

    info = json.loads(paas.run("certs", app, "--json").stdout)
    assert sorted(info["sans"]) == [f"{app}.paas.test", f"www.{app}.paas.test"] and not info["self_signed"]
    assert json.loads(paas.run("settings", app, "--json").stdout)["letsencrypt"] == "on"
    account_key = paas.home / "acme" / "account.key"
    assert account_key.stat().st_mode & 0o777 == 0o600
    assert challenge_files(paas) == []  # the challenge answers are gone


def test_renew_skips_fresh_certificates_and_force_issues_new_ones(paas: Paas, pebble: Pebble) -> None:
    enable_https(paas)
    app, _ = paas.deploy(APPS / "dockerfile")
    paas.run("letsencrypt:enable", app)
    first = stored_cert(paas, app)
    account_key = (paas.home / "acme" / "account.key").read_bytes()

    out = paas.run("letsencrypt:renew").stdout
    assert f"-----> {app}: skipped" in out and "0 renewed, 1 skipped, 0 failed" in out
    assert stored_cert(paas, app).serial_number == first.serial_number

    out = paas.run("letsencrypt:renew", "--force").stdout
    assert f"-----> {app}: renewing (forced)" in out and "1 renewed, 0 skipped, 0 failed" in out
    assert "registered ACME account" not in out  # the account of the first run, reused
    assert (paas.home / "acme" / "account.key").read_bytes() == account_key
    second = stored_cert(paas, app)
    assert second.serial_number != first.serial_number
    assert served_cert(paas, app).serial_number == second.serial_number  # nginx serves the new one
    status, _, _ = https_get(paas, app, str(pebble.root_file(paas.work)))
    assert status == 200

    # A renewal that fails (the CA unreachable) is the `cert-expiring` event, for the notifications (issue 25)
    good = paas.env["MINIPAAS_ACME_DIRECTORY"]
    paas.env["MINIPAAS_ACME_DIRECTORY"] = f"https://127.0.0.1:{free_port()}/dir"
    assert paas.run("letsencrypt:renew", "--force", check=False).returncode == 1
    paas.env["MINIPAAS_ACME_DIRECTORY"] = good
    [expiring] = [e for e in json.loads(paas.run("events", app, "--json").stdout)
                  if str(e["command"]).startswith("cert-expiring ")]
    assert expiring["command"] == f"cert-expiring {app}" and expiring["app"] == app
    assert re.fullmatch(r"renewal failed \(\d+ days left\): cannot reach the ACME server at \S+: Connection refused",
                        str(expiring["outcome"])), expiring

    paas.run("letsencrypt:disable", app)
    assert "nothing to renew" in paas.run("letsencrypt:renew", "--force").stdout
    assert served_cert(paas, app).serial_number == second.serial_number  # disable keeps the certificate


def test_the_dashboard_gets_a_certificate_and_is_renewed_as_an_app_is(paas: Paas, pebble: Pebble) -> None:
    """`@dashboard` as certs:* takes it: its name (`dashboard-domain`), its vhost, renewed with the apps."""
    enable_https(paas)
    out = paas.run("letsencrypt:enable", "@dashboard").stdout
    assert f"-----> Requesting a certificate for dashboard.paas.test from {pebble.directory}" in out
    assert "names:     dashboard.paas.test" in out and "Pebble Intermediate" in out
    first = stored_cert(paas, "-dashboard")
    # A TLS client trusting only pebble's root reaches the dashboard's vhost by its name (503: no dashboard
    # process runs here, nginx says so), and plain HTTP redirects there.
    status, _, body = https_get(paas, "dashboard", str(pebble.root_file(paas.work)))
    assert status == 503 and b"the dashboard is not running" in body
    assert paas.get("", host="dashboard.paas.test").status == 301
    assert challenge_files(paas) == []

    out = paas.run("letsencrypt:renew").stdout
    assert "-----> @dashboard: skipped" in out and "0 renewed, 1 skipped, 0 failed" in out
    out = paas.run("letsencrypt:renew", "--force").stdout
    assert "-----> @dashboard: renewing (forced)" in out and "1 renewed, 0 skipped, 0 failed" in out
    assert stored_cert(paas, "-dashboard").serial_number != first.serial_number
    paas.run("letsencrypt:disable", "@dashboard")
    assert "nothing to renew" in paas.run("letsencrypt:renew", "--force").stdout
    assert (paas.home / "certs" / "-dashboard" / "fullchain.pem").exists()  # disable keeps the certificate
    paas.run("certs:remove", "@dashboard")
    assert paas.get("", host="dashboard.paas.test").status == 503  # plain HTTP again


def test_acme_failures_are_one_line_and_change_nothing(paas: Paas, pebble: Pebble) -> None:
    enable_https(paas)
    app, _ = paas.deploy(APPS / "dockerfile")
    paas.run("certs:generate", app)
    before = (paas.home / "certs" / app / "fullchain.pem").read_bytes()
    good_directory = paas.env["MINIPAAS_ACME_DIRECTORY"]

    # Nothing listens there.
    dead = f"https://127.0.0.1:{free_port()}/dir"
    paas.env["MINIPAAS_ACME_DIRECTORY"] = dead
    result = paas.run("letsencrypt:enable", app, check=False)
    assert result.returncode == 1, result
    assert result.stderr.strip().splitlines() == [
        f"error: cannot reach the ACME server at {dead}: Connection refused"], result.stderr

    # pebble, but its TLS certificate is not trusted.
    paas.env["MINIPAAS_ACME_DIRECTORY"] = good_directory
    paas.env["MINIPAAS_ACME_CA"] = str(paas.home / "certs" / app / "fullchain.pem")
    result = paas.run("letsencrypt:enable", app, check=False)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot verify the TLS certificate of the ACME server" in lines[0], result.stderr

    # Not an ACME directory.
    paas.env["MINIPAAS_ACME_CA"] = str(pebble.ca)
    paas.env["MINIPAAS_ACME_DIRECTORY"] = good_directory.replace("/dir", "/nothing-here")
    result = paas.run("letsencrypt:enable", app, check=False)
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1, result.stderr

    # A CA whose validation requests reach no web server (port 80 closed, DNS pointing elsewhere).
    with running_pebble(paas.work / "pebble-elsewhere", free_port()) as elsewhere:
        paas.env["MINIPAAS_ACME_DIRECTORY"] = elsewhere.directory
        paas.env["MINIPAAS_ACME_CA"] = str(elsewhere.ca)
        result = paas.run("letsencrypt:enable", app, check=False)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: the CA could not validate {app}.paas.test: "), lines
    assert "connection refused" in lines[0].lower(), lines

    # The self-signed certificate still serves, nothing was switched on, nothing left behind.
    assert (paas.home / "certs" / app / "fullchain.pem").read_bytes() == before
    status, _, _ = https_get(paas, app, str(paas.home / "certs" / app / "fullchain.pem"))
    assert status == 200
    assert json.loads(paas.run("settings", app, "--json").stdout)["letsencrypt"] == "off"
    assert challenge_files(paas) == []
    assert "nothing to renew" in paas.run("letsencrypt:renew").stdout

