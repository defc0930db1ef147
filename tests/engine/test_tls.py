"""HTTPS: certificates added or generated, checked by a real TLS client."""

from __future__ import annotations

import json
import ssl
import subprocess

from tests.helpers.host import APPS, Paas
from tests.helpers.tls import enable_https, https_get


def test_generated_certificate_serves_https_and_redirects_http(paas: Paas) -> None:
    enable_https(paas)
    app, _ = paas.deploy(APPS / "dockerfile")
    shown = paas.run("certs:generate", app).stdout
    assert f"names:     {app}.paas.test" in shown and "self-signed" in shown
    cert_file = str(paas.home / "certs" / app / "fullchain.pem")
    status, headers, body = https_get(paas, app, cert_file)
    assert status == 200 and body == b"from my own Dockerfile\n"
    assert "strict-transport-security" not in headers
    # HTTP/2 where the client offers it (ALPN); HTTP/1.1 clients keep their connection for the next request.
    url = f"https://{app}.paas.test:{paas.https_port}/"
    resolve = ["--resolve", f"{app}.paas.test:{paas.https_port}:127.0.0.1", "--cacert", cert_file]
    h2 = subprocess.run(["curl", "-sS", "--http2", *resolve, "-o", "/dev/null", "-w", "%{http_version}", url],
                        capture_output=True, text=True, timeout=30)
    assert h2.stdout == "2", h2
    h1 = subprocess.run(["curl", "-sS", "--http1.1", *resolve, "-o", "/dev/null", "-o", "/dev/null", "-w",
                         "%{http_version} %{num_connects}\n", url, url], capture_output=True, text=True, timeout=30)
    assert h1.stdout.split("\n")[:2] == ["1.1 1", "1.1 0"], h1  # the second request: no new connection
    plain = paas.get(app, "/some/path?q=1")
    assert plain.status == 301 and plain.headers["location"] == f"https://{app}.paas.test:{paas.https_port}/some/path?q=1"
    # Modern protocols only.
    try:
        https_get(paas, app, cert_file, version=ssl.TLSVersion.TLSv1_1)
        raise AssertionError("TLS 1.1 was accepted")
    except (ssl.SSLError, OSError):
        pass
    paas.run("settings:set", app, "hsts", "on")
    paas.run("certs:generate", app)
    assert "max-age=31536000" in https_get(paas, app, cert_file)[1]["strict-transport-security"]
    info = json.loads(paas.run("certs", app, "--json").stdout)
    assert info["days_left"] >= 364 and info["sans"] == [f"{app}.paas.test"]
    paas.run("certs:remove", app)
    assert paas.get(app).status == 200


def test_certs_add_checks_the_pair_and_openssl_verifies_it(paas: Paas) -> None:
    enable_https(paas)
    app, _ = paas.deploy(APPS / "static-site")
    work = paas.work
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30", "-subj",
                    f"/CN={app}.paas.test", "-addext", f"subjectAltName=DNS:{app}.paas.test",
                    "-keyout", str(work / "key.pem"), "-out", str(work / "cert.pem")], check=True, capture_output=True)
    subprocess.run(["openssl", "genrsa", "-out", str(work / "other.pem"), "2048"], check=True, capture_output=True)
    mismatch = paas.run("certs:add", app, str(work / "cert.pem"), str(work / "other.pem"), check=False)
    assert mismatch.returncode == 1 and "does not match" in mismatch.stderr
    swapped = paas.run("certs:add", app, str(work / "key.pem"), str(work / "key.pem"), check=False)
    assert swapped.returncode == 1 and "holds a private key" in swapped.stderr
    (work / "junk.pem").write_text("not a certificate\n")
    junk = paas.run("certs:add", app, str(work / "junk.pem"), str(work / "key.pem"), check=False)
    assert junk.returncode == 1 and "no PEM certificate" in junk.stderr
    assert paas.get(app).status == 200  # still plain HTTP, nothing half-done

    shown = paas.run("certs:add", app, str(work / "cert.pem"), str(work / "key.pem")).stdout
    assert ("expires:" in shown and "(29 days left)" in shown) or "(30 days left)" in shown
    status, _, body = https_get(paas, app, str(work / "cert.pem"))
    assert status == 200 and b"Static home" in body
    verify = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{paas.https_port}", "-servername",
                             f"{app}.paas.test", "-CAfile", str(work / "cert.pem"), "-verify_return_error",
                             "-verify_hostname", f"{app}.paas.test"],
                            input="", capture_output=True, text=True, timeout=30)
    assert "Verify return code: 0 (ok)" in verify.stdout
