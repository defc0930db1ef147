"""The "Low" holes of issue 9: each test performs the attack and shows it refused, with one line where
there is a message, and nothing changed."""

from __future__ import annotations

import datetime
import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.helpers.host import free_port

# -- 1. HTTPS has a default server -----------------------------------------------------------------


FP = "SHA256:" + "A1+/" * 10 + "xyz"  # the form of a fingerprint: 43 characters of base64


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


# -- 2. `run` hands the app's config to the container only ------------------------------------------


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


# -- 5. and 6. certs:add writes certificates only, and reads only what it may ---------------------


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
    from minipaas.errors import BuildFailed
    from minipaas.source import packagejson

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
    from minipaas.errors import BuildFailed
    from minipaas.source import packagejson

    with pytest.raises(BuildFailed, match=re.escape(words)):
        packagejson.parse(raw)


def test_package_json_facts_reach_the_dockerfile_checked() -> None:
    from minipaas.build import buildpacks
    from minipaas.source import nodeinstall, packagejson
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
    from minipaas.errors import BuildFailed
    from minipaas.source import procfile

    with pytest.raises(BuildFailed) as refused:
        procfile.parse(text)
    assert words in refused.value.message and "\n" not in refused.value.message


def test_a_procfile_of_the_documented_form_is_read() -> None:
    from minipaas.source import procfile

    text = b"# processes\r\nweb: node web.js --port $PORT\r\n\r\nworker:node\tworker.js\nrelease: node migrate.js\n"
    assert procfile.parse(text) == {"web": "node web.js --port $PORT", "worker": "node\tworker.js",
                                    "release": "node migrate.js"}


# -- 7. a newline in an ssh command forges no row of `events` -----------------------------------------


# -- 10. every response of a Markdown docs site carries its CSP -------------------------------------


