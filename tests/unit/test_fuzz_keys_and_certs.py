"""Property-based tests (Hypothesis) of ssh key names and public keys (`ssh-keys:add`, access/keys.py) and of the
certificates `certs:add` takes (routing/certs.py). Whatever is pasted: a refusal is one line; an accepted key
becomes exactly one authorized_keys line of checked parts whose fingerprint is the key's own; an accepted
certificate file and key are a chain with its matching key, of which only the certificate blocks are kept and
what `certs:add` prints is one line per fact. Keys and certificates are made once with `cryptography`, then
cut, spliced, relabelled and wrapped by Hypothesis. No engine."""

from __future__ import annotations

import base64
import contextlib
import datetime
import hashlib
import io
import re
from collections.abc import Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa, x25519
from cryptography.x509.oid import ExtensionOID, NameOID
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from minipaas.access import keys
from minipaas.cli import domains as domains_cli
from minipaas.errors import MinipaasError
from minipaas.routing import certs
from minipaas.state import store
from minipaas.state.host import Host
from minipaas.state.settings import load
from tests.helpers.host import assert_one_line_refusal

SOME = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ODD = ["\x00", "\t", "\n", "\r", "\r\n", "\x0b", "\x1b", "\x7f", "\x85", "\u00a0", "\u2028", "\ufeff", "é", "²"]

# -- key names and public keys -------------------------------------------------------------------------------

NAME = st.one_of(st.from_regex(r"[a-z][a-z0-9._-]{0,33}", fullmatch=True),
                 st.lists(st.sampled_from(["alice", "-", ".", "_", "A", "9", " ", "--user", "=", '"', *ODD]),
                          max_size=5).map("".join))


@SOME
@given(NAME)
def test_a_key_name_is_one_line_or_a_name_its_key_line_carries_as_it_is(name: str) -> None:
    try:
        keys.check_name(name)
    except MinipaasError as refused:
        assert_one_line_refusal(refused)
        return
    command = keys.forced_command("sudo -n /usr/local/bin/minipaas", "/var/lib/minipaas", name, "SHA256:" + "A" * 43)
    assert command.split() == ["sudo", "-n", "/usr/local/bin/minipaas", "ssh-command", "--home", "/var/lib/minipaas",
                               "--user", name, "--fingerprint", "SHA256:" + "A" * 43]


def openssh(public: object) -> str:
    return public.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()  # type: ignore[attr-defined]


REAL_KEYS = [openssh(ed25519.Ed25519PrivateKey.generate().public_key()),
             openssh(ec.generate_private_key(ec.SECP256R1()).public_key()),
             openssh(ec.generate_private_key(ec.SECP521R1()).public_key()),
             openssh(rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key())]


@st.composite
def key_lines(draw: st.DrawFn) -> tuple[str, str | None]:
    """A key line as pasted, and the real key it holds unchanged (None: it was damaged)."""
    key_type, data = draw(st.sampled_from(REAL_KEYS)).split()
    honest: str | None = f"{key_type} {data}"
    blob = bytearray(base64.b64decode(data))
    if draw(st.booleans()):  # the key's own bytes changed: cut, spliced or flipped
        at = draw(st.integers(0, len(blob)))
        how = draw(st.sampled_from(["cut", "flip", "insert", "length"]))
        if how == "cut":
            blob = blob[:at]
        elif how == "flip" and at < len(blob):
            blob[at] ^= draw(st.integers(1, 255))
        elif how == "insert":
            blob[at:at] = draw(st.binary(min_size=1, max_size=8))
        else:
            blob[0:4] = draw(st.binary(min_size=4, max_size=4))
        data, honest = base64.b64encode(bytes(blob)).decode(), None
    if draw(st.booleans()):  # the text around it
        key_type = draw(st.sampled_from([key_type, key_type.upper(), "ssh-dss", "command=\"id\"", "restrict",
                                         'from="*"', "x" * 50]))
        data = draw(st.sampled_from([data, data[:-2], data + "=", data + "!", data.replace("A", "é", 1), ""]))
        if honest is not None and (key_type, data) != tuple(honest.split()):
            honest = None
    comment = draw(st.lists(st.sampled_from(["me@laptop", " ", "minipaas:bob", '"', *ODD]), max_size=4).map("".join))
    before = draw(st.sampled_from(["", " ", "\n", "\ufeff", 'command="/bin/sh" ', "\n\nssh-ed25519 AAAA\n"]))
    after = draw(st.sampled_from(["", "\n", "\r\n", "\n\n", "\nssh-ed25519 AAAAC3Nza x\n"]))
    line = f"{before}{key_type} {data} {comment}{after}"
    return line, honest if not before.strip(" \n") and not after.strip() and "\n" not in comment else None


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Host]:
    home = tmp_path_factory.mktemp("fuzz-keys") / "home"
    home.mkdir(mode=0o700)
    one = Host(load({"MINIPAAS_HOME": str(home)}))
    one.db.execute("SELECT 1")
    yield one
    one.db.close()


@SOME
@given(key_lines())
@example(("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA", None))
def test_a_public_key_is_one_line_or_one_authorized_keys_line_of_checked_parts(host: Host,
                                                                               pasted: tuple[str, str | None]) -> None:
    text, honest = pasted
    try:
        key = keys.parse_public_key(text)
    except MinipaasError as refused:
        assert_one_line_refusal(refused)
        assert honest is None or not re.fullmatch(r"\s*\S+ \S+ [^\n\r\x0b\x0c\x1c-\x1e\x85\u2028\u2029]*\s*",
                                                  text), f"an honest key refused: {refused.message}"
        return
    blob = base64.b64decode(key.data, validate=True)
    assert key.key_type in keys.KEY_TYPES and blob[4:4 + int.from_bytes(blob[:4], "big")] == key.key_type.encode()
    assert key.fingerprint == "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    if honest is not None:
        assert f"{key.key_type} {key.data}" == honest
    with store.transaction(host.db) as db:
        db.execute("INSERT INTO ssh_keys (name, role, fingerprint, key_type, key_data, created_at) "
                   "VALUES ('bob', 'deployer', ?, ?, ?, 0)", (key.fingerprint, key.key_type, key.data))
    try:
        [line] = keys.authorized_keys_lines(host)
    finally:
        with store.transaction(host.db) as db:
            db.execute("DELETE FROM ssh_keys")
    assert "\n" not in line and "\r" not in line
    assert line == (f'command="sudo -n /usr/local/bin/minipaas ssh-command --home {host.settings.home} --user bob '
                    f'--fingerprint {key.fingerprint}",restrict,pty {key.key_type} {key.data} minipaas:bob')


# -- certificates --------------------------------------------------------------------------------------------

PRIVATE = {"ec": ec.generate_private_key(ec.SECP256R1()), "ec384": ec.generate_private_key(ec.SECP384R1()),
           "ed25519": ed25519.Ed25519PrivateKey.generate(), "ed448": ed448.Ed448PrivateKey.generate(),
           "rsa": rsa.generate_private_key(public_exponent=65537, key_size=1024)}
SIGNING = {name: key for name, key in PRIVATE.items()}
X25519 = x25519.X25519PrivateKey.generate()  # a key no certificate can be signed with, but can hold
TEXT = st.text(st.sampled_from([*"abc.-* ,+=\"\\<>;#", *(c for c in ODD if len(c) == 1)]), min_size=1, max_size=12)
WHEN = st.datetimes(min_value=datetime.datetime(1950, 1, 1), max_value=datetime.datetime(9999, 1, 1))


@st.composite
def certificate(draw: st.DrawFn) -> tuple[bytes, object]:
    """A certificate's PEM and the private key of the public key it holds."""
    holder = draw(st.sampled_from([*PRIVATE, "x25519"]))
    private = X25519 if holder == "x25519" else PRIVATE[holder]
    signer = draw(st.sampled_from([holder] if holder != "x25519" else ["ec"]) | st.sampled_from(sorted(SIGNING)))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, draw(TEXT)[:64])])
    start = draw(WHEN)
    builder = (x509.CertificateBuilder().subject_name(subject)
               .issuer_name(subject if draw(st.booleans()) else x509.Name([
                   x509.NameAttribute(NameOID.ORGANIZATION_NAME, draw(TEXT))]))
               .public_key(private.public_key()).serial_number(draw(st.integers(1, 2**159 - 1)))
               .not_valid_before(start).not_valid_after(start + datetime.timedelta(days=draw(st.integers(0, 5000)))))
    san = draw(st.sampled_from(["none", "dns", "raw", "empty"]))
    if san == "dns":
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName(draw(st.from_regex(r"[a-z0-9.*-]{1,20}", fullmatch=True))) for _ in range(2)]), False)
    elif san == "raw":  # what no library would write, as DER bytes: a DNS name with a newline, or garbage
        value = draw(st.sampled_from([b"0\x0f\x82\x0da\nerror: x.t", b"\x00\x01", b"0\x03\x82\x01\xff", b""]))
        builder = builder.add_extension(x509.UnrecognizedExtension(ExtensionOID.SUBJECT_ALTERNATIVE_NAME, value),
                                        False)
    sign_with = SIGNING[signer]
    algorithm = None if isinstance(sign_with, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey) else hashes.SHA256()
    cert = builder.sign(sign_with, algorithm)
    return cert.public_bytes(serialization.Encoding.PEM), private


def key_pem(private: object, form: str) -> bytes:
    if form == "encrypted":
        return private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,  # type: ignore
                                     serialization.BestAvailableEncryption(b"secret"))
    fmt = {"pkcs8": serialization.PrivateFormat.PKCS8, "openssh": serialization.PrivateFormat.OpenSSH,
           "traditional": serialization.PrivateFormat.TraditionalOpenSSL}[form]
    try:
        return private.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())  # type: ignore
    except ValueError:  # a form this kind of key has not (OpenSSH's for X25519, OpenSSL's old one for Ed25519)
        return key_pem(private, "pkcs8")


@st.composite
def pem_pair(draw: st.DrawFn) -> tuple[bytes, bytes]:
    chain = [draw(certificate()) for _ in range(draw(st.integers(1, 2)))]
    leaf_pem, leaf_key = chain[0]
    chain_pem = b"".join(pem for pem, _ in chain)
    wrap = draw(st.sampled_from(["", "noise", "crlf", "key-in-chain", "lower", "cut", "trusted", "bytes", "nul",
                                 "alien"]))
    if wrap == "alien":  # a key algorithm or curve no library knows, spliced into the DER (the signature breaks)
        der = x509.load_pem_x509_certificate(leaf_pem).public_bytes(serialization.Encoding.DER)
        for known, unknown in (("2A8648CE3D0201", "2A8648CE3D0209"), ("2A8648CE3D030107", "2A8648CE3D030109"),
                               ("2B6570", "2B657F")):
            der = der.replace(bytes.fromhex(known), bytes.fromhex(unknown))
        chain_pem = b"-----BEGIN CERTIFICATE-----\n" + base64.encodebytes(der) + b"-----END CERTIFICATE-----\n"
    elif wrap == "noise":
        chain_pem = b"subject=CN = x\n" + chain_pem + b"\ntrailing words\n"
    elif wrap == "crlf":
        chain_pem = chain_pem.replace(b"\n", b"\r\n")
    elif wrap == "key-in-chain":
        label = draw(st.sampled_from([b"PRIVATE KEY", b"EC PRIVATE KEY", b"private key", b"ENCRYPTED PRIVATE KEY"]))
        chain_pem += b"-----BEGIN " + label + b"-----\nAAAA\n-----END " + label + b"-----\n"
    elif wrap == "lower":
        chain_pem = chain_pem.replace(b"CERTIFICATE", b"certificate")
    elif wrap == "cut":
        # A share of the length, not a length: an ECDSA signature's length changes from one signing to the next,
        # and a strategy must draw the same way when Hypothesis replays a case.
        chain_pem = chain_pem[:len(chain_pem) * draw(st.integers(0, 1000)) // 1000]
    elif wrap == "trusted":
        chain_pem = chain_pem.replace(b"CERTIFICATE", b"TRUSTED CERTIFICATE")
    elif wrap == "bytes":
        chain_pem = draw(st.binary(max_size=200))
    elif wrap == "nul":
        chain_pem = chain_pem.replace(b"\n", b"\n\x00", 1)
    holder = draw(st.sampled_from(["own", "own", "other", "garbage"]))
    if holder == "own":
        key = key_pem(leaf_key, draw(st.sampled_from(["pkcs8", "openssh", "traditional", "encrypted"])))
    elif holder == "other":
        key = key_pem(draw(st.sampled_from(list(PRIVATE.values()))), "pkcs8")
    else:
        key = draw(st.sampled_from([b"", leaf_pem, b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"]))
    return chain_pem, key


def shown(info: certs.CertInfo) -> list[str]:
    """What `certs:add` prints of a certificate."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        domains_cli._show_cert("shop", info)
    return out.getvalue().splitlines()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pem_pair())
def test_a_certificate_is_one_line_or_a_chain_with_its_key_of_which_only_certificates_are_kept(
        pair: tuple[bytes, bytes]) -> None:
    chain_pem, key_file = pair
    try:
        info, blocks = certs._checked(chain_pem, key_file)
    except MinipaasError as refused:
        assert_one_line_refusal(refused)
        return
    labels = re.findall(rb"-----(BEGIN|END) ([^-]*)-----", blocks)
    assert labels and {label for _, label in labels} == {b"CERTIFICATE"}  # what fullchain.pem holds: no key
    kept = x509.load_pem_x509_certificates(blocks)
    assert kept == x509.load_pem_x509_certificates(chain_pem)
    private = serialization.load_pem_private_key(key_file, password=None)
    der = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    assert private.public_key().public_bytes(*der) == kept[0].public_key().public_bytes(*der)
    lines = shown(info)
    assert len(lines) == 5 and not [c for line in lines for c in line if c in "\x00\r\x0b\x1b\x85\u2028"], lines

