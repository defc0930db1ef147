"""Hostile inputs through the command itself (`python -m minipaas`, and `minipaas ssh-command` as sshd runs it for
a key), where a parser is reached only through a command: each refusal is one line on stderr, exit 1, no
traceback, and nothing changed (the home's files, the app's config and settings, the audit log holds no secret).
Engine-free: every refusal here happens before any engine or nginx call, on a home made for the module (its
database written directly, as `init` would leave it)."""

from __future__ import annotations

import datetime
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from minipaas.state import store
from minipaas.state.host import Host
from minipaas.state.settings import SETTINGS_FILE, load

ADMIN_FP = "SHA256:" + "A" * 43
DEPLOYER_FP = "SHA256:" + "B" * 43


@dataclass
class Home:
    path: Path

    def env(self, **extra: str) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith("MINIPAAS_") and k != "SSH_ORIGINAL_COMMAND"}
        return {**base, "MINIPAAS_HOME": str(self.path), **extra}

    def run(self, *args: str, stdin: bytes = b"", **extra: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([sys.executable, "-m", "minipaas", *args], env=self.env(**extra), input=stdin,
                                capture_output=True, timeout=120)
        return subprocess.CompletedProcess(result.args, result.returncode, result.stdout.decode(errors="replace"),
                                           result.stderr.decode(errors="replace"))

    def ssh(self, user: str, command: str) -> subprocess.CompletedProcess[str]:
        """What sshd runs for a key's line: no MINIPAAS_HOME (sudo passes none), the client's command."""
        env = {k: v for k, v in self.env(SSH_ORIGINAL_COMMAND=command).items() if k != "MINIPAAS_HOME"}
        fingerprint = ADMIN_FP if user == "alice" else DEPLOYER_FP
        result = subprocess.run([sys.executable, "-m", "minipaas", "ssh-command", "--home", str(self.path),
                                 "--user", user, "--fingerprint", fingerprint], env=env, capture_output=True,
                                timeout=120, stdin=subprocess.DEVNULL)
        return subprocess.CompletedProcess(result.args, result.returncode, result.stdout.decode(errors="replace"),
                                           result.stderr.decode(errors="replace"))

    def query(self, sql: str, *args: object) -> list[tuple[object, ...]]:
        with sqlite3.connect(self.path / "minipaas.db") as db:
            return db.execute(sql, args).fetchall()

    def state(self) -> tuple[set[str], list[tuple[object, ...]], list[tuple[object, ...]], list[tuple[object, ...]]]:
        """The home's files (but the database's) and what the app has: its config, settings and domains."""
        files = {str(p.relative_to(self.path)) for p in self.path.rglob("*") if not p.name.startswith("minipaas.db")}
        return (files, self.query("SELECT * FROM config ORDER BY key"),
                self.query("SELECT * FROM app_settings ORDER BY key"), self.query("SELECT * FROM domains"))


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Home]:
    """A home with the app `shop`, a Redis service `cache`, an admin key `alice` and a deployer key `ci` granted
    `shop`."""
    path = tmp_path_factory.mktemp("hostile") / "home"
    path.mkdir(mode=0o700)
    (path / SETTINGS_FILE).write_text("", encoding="utf-8")
    host = Host(load({"MINIPAAS_HOME": str(path)}))
    with store.transaction(host.db) as db:
        db.execute("INSERT INTO apps (name, created_at, life) VALUES ('shop', 0, 'x')")
        db.execute("INSERT INTO domains (domain, app) VALUES ('shop.localhost', 'shop')")
        for name, role, fingerprint in (("alice", "admin", ADMIN_FP), ("ci", "deployer", DEPLOYER_FP)):
            db.execute("INSERT INTO ssh_keys (name, role, fingerprint, key_type, key_data, created_at) "
                       "VALUES (?, ?, ?, 'ssh-ed25519', 'AAAA', 0)", (name, role, fingerprint))
        db.execute("INSERT INTO key_grants (name, app) VALUES ('ci', 'shop')")
        db.execute("INSERT INTO services (kind, name, version, password, created_at) VALUES ('redis', 'cache', '7', "
                   "'p', 0)")
    host.db.close()
    yield Home(path)


def at_once(*calls: Callable[[], subprocess.CompletedProcess[str]]) -> list[subprocess.CompletedProcess[str]]:
    """Independent commands side by side (each is a Python start-up, most of its time): their results in order."""
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return [future.result() for future in [pool.submit(call) for call in calls]]


def assert_refused(result: subprocess.CompletedProcess[str], words: str = "") -> None:
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert words in lines[0], lines[0]


def test_a_git_repository_path_with_a_newline_is_refused_on_one_line(home: Home) -> None:
    before = home.state()
    # The path was shown through shlex.join, which keeps a newline in its quotes: a second, forged line.
    forged, traversal = at_once(lambda: home.ssh("alice", "git-upload-pack 'a\nerror: forged'"),
                                lambda: home.ssh("alice", "git-receive-pack 'shop/../../x'"))
    assert_refused(forged, "invalid repository 'a\\nerror")
    assert_refused(traversal, "invalid repository")
    assert home.state() == before


def test_a_deployers_command_on_an_odd_app_name_is_refused_on_one_line(home: Home) -> None:
    # The app argument, found by click's parser, was named raw in the deployer's refusal.
    odd, other = at_once(lambda: home.ssh("ci", "ps 'a\nerror: forged'"), lambda: home.ssh("ci", "ps other"))
    assert_refused(odd, "has no access to app 'a\\nerror: forged'")
    assert_refused(other, "ci has no access to app other")


def test_no_config_value_reaches_the_audit_log_wherever_it_stands(home: Home) -> None:
    # The app's place (right after the command) was kept as it came: an assignment typed there stayed whole.
    home.ssh("alice", "config:set TOKEN=s3cret-1 shop --no-restart")
    logged = [command for (command,) in home.query("SELECT command FROM events ORDER BY id DESC LIMIT 1")]
    assert logged == ["config:set 'TOKEN=<redacted>' shop --no-restart"], logged
    assert not [row for row in home.query("SELECT * FROM events") if "s3cret" in json.dumps(row)]


def test_a_config_value_that_is_no_utf8_is_one_line_and_stores_nothing(home: Home) -> None:
    # A byte the shell passed in another encoding: SQLite's insert raised UnicodeEncodeError ("internal error").
    before = home.state()
    assert_refused(home.run("config:set", "shop", "GOOD=1", "K=caf\udce9", "--no-restart"), "not valid UTF-8")
    assert home.state() == before
    assert home.run("config:set", "shop", "K=caf\u00e9", "--no-restart").returncode == 0  # the honest value
    assert home.query("SELECT key, value FROM config") == [("K", "caf\u00e9")]


def test_resource_limit_with_one_odd_value_changes_none(home: Home) -> None:
    # Each value was stored as it was checked: --memory 1g stayed when --cpus was refused after it.
    before = home.state()
    app, service = at_once(lambda: home.run("resource:limit", "shop", "--memory", "1g", "--cpus", "lots"),
                           lambda: home.run("resource:limit", "redis:cache", "--memory", "1g", "--pids", "lots"))
    assert_refused(app, "invalid value 'lots'")
    assert_refused(service, "'lots'")
    assert home.state() == before and home.query("SELECT * FROM service_settings") == []


def test_a_public_key_that_is_no_text_is_one_line(home: Home) -> None:
    # Under a strict UTF-8 locale (en_US.UTF-8; C.UTF-8 is lenient) reading stdin raised UnicodeDecodeError.
    before, keys = home.state(), home.query("SELECT name FROM ssh_keys ORDER BY name")
    assert_refused(home.run("ssh-keys:add", "bob", stdin=b"ssh-ed25519 AAAA\xff\xfe\n",
                            PYTHONIOENCODING="utf-8:strict"), "bob")
    assert home.state() == before and home.query("SELECT name FROM ssh_keys ORDER BY name") == keys


def test_what_a_certificate_says_of_itself_is_shown_escaped_one_line_a_fact(home: Home) -> None:
    # A certificate's names are any text its maker chose: ESC drove the admin's terminal, a newline forged lines.
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "\x1b[2Jx\nexpires:   never")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(datetime.datetime(2020, 1, 1))
            .not_valid_after(datetime.datetime(2040, 1, 1)).sign(key, hashes.SHA256()))
    folder = home.path / "certs" / "shop"
    folder.mkdir(parents=True)
    (folder / "fullchain.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "privkey.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    try:
        shown = home.run("certs", "shop")
    finally:
        shutil.rmtree(home.path / "certs")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert len(lines) == 5 and "\x1b" not in shown.stdout, lines
    assert lines[1] == "subject:   CN=\\x1b[2Jx\\nexpires:   never"


def test_odd_settings_domains_and_certificate_files_are_one_line_and_change_nothing(home: Home, tmp_path: Path) -> None:
    before = home.state()
    garbage = tmp_path / "cert.pem"
    garbage.write_bytes(b"-----BEGIN CERTIFICATE-----\n\xff\x00\n-----END CERTIFICATE-----\n")
    digits, template, domain, cert = at_once(
        lambda: home.run("settings:set", "shop", "pids", "\u00b2"),  # was a ValueError
        lambda: home.run("settings:set", "shop", "review-url", "{slug}.{app.x}"),  # was an AttributeError
        lambda: home.run("domains:add", "shop", "a\nerror: forged.test"),
        lambda: home.run("certs:add", "shop", str(garbage), str(garbage)))
    assert_refused(digits, "invalid value")
    assert_refused(template, "invalid value")
    assert_refused(domain, "invalid domain 'a\\nerror")
    assert_refused(cert, "holds no PEM certificate")
    assert home.state() == before and not (home.path / "certs").exists()


def test_an_ssh_command_that_is_no_utf8_is_one_line_and_recorded_as_refused(home: Home) -> None:
    count = len(home.query("SELECT id FROM events"))
    assert_refused(home.ssh("alice", "apps:list \udcff"), "not valid UTF-8")
    assert home.query("SELECT command, outcome FROM events ORDER BY id DESC LIMIT 1") == [
        ("<unparsable command>", "refused")]
    assert len(home.query("SELECT id FROM events")) == count + 1
