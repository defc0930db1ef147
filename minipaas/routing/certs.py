"""TLS certificates of apps: adding, generating, inspecting and removing them.

A certificate lives in `MINIPAAS_HOME/certs/<app>/` (fullchain.pem, privkey.pem). With one, the
app's vhost serves HTTPS on MINIPAAS_HTTPS_PORT and redirects HTTP there (ACME challenges excepted).
Certificates are parsed and made with the `cryptography` library, imported inside the functions that use
it: every command over ssh imports this module (through deploy/lifecycle.py), and cryptography takes
~50 ms to load.
"""

from __future__ import annotations

import datetime
import os
import re
import shutil
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from minipaas.errors import InvalidInput, NotFound
from minipaas.routing import domains, proxy
from minipaas.routing.certfiles import cert_dir, paths
from minipaas.state import perms
from minipaas.state.host import Host
from minipaas.state.names import _show
from minipaas.state.settings import Settings

if TYPE_CHECKING:
    from cryptography import x509

MAX_PEM = 1024 * 1024
_PEM_LABEL = re.compile(rb"-----BEGIN ([^\r\n]{0,80}?)-----")


@dataclass(frozen=True)
class CertInfo:
    subject: str
    issuer: str
    sans: tuple[str, ...]
    not_before: datetime.datetime
    not_after: datetime.datetime
    self_signed: bool

    @property
    def days_left(self) -> int:
        return (self.not_after - datetime.datetime.now(datetime.UTC)).days

    def as_dict(self) -> dict[str, object]:
        return {"subject": self.subject, "issuer": self.issuer, "sans": list(self.sans),
                "not_before": self.not_before.isoformat(), "not_after": self.not_after.isoformat(),
                "days_left": self.days_left, "self_signed": self.self_signed}


def read_pem(path: str, what: str) -> bytes:
    """The bytes of a PEM file given on the command line, at most MAX_PEM of them.

    Never more is read, and only a regular file is read at all: /dev/zero, a FIFO or a huge file
    gets one line at once instead of a hang or a full memory. O_NONBLOCK: opening a FIFO does not
    wait for a writer.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as exc:
        raise InvalidInput(f"cannot read the {what} file {_show(path)}: {exc.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # before fdopen, which refuses a folder with IsADirectoryError
        os.close(fd)
        raise InvalidInput(f"the {what} file {_show(path)} is not a regular file")
    with os.fdopen(fd, "rb") as handle:
        data = handle.read(MAX_PEM + 1)
    if len(data) > MAX_PEM:
        raise InvalidInput(f"the {what} file {_show(path)} is larger than {MAX_PEM // 1024} KiB")
    return data


def parse(chain_pem: bytes, key_pem: bytes) -> CertInfo:
    """Check that the PEMs hold a certificate chain and its matching private key."""
    return _checked(chain_pem, key_pem)[0]


def _checked(chain_pem: bytes, key_pem: bytes) -> tuple[CertInfo, bytes]:
    """The leaf's facts, and the chain as certificate blocks only (what fullchain.pem may hold)."""
    from cryptography import x509
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    if len(chain_pem) > MAX_PEM or len(key_pem) > MAX_PEM:
        raise InvalidInput("certificate or key file too large")
    # fullchain.pem is world-readable: a key pasted into the certificate file must never land there.
    if any(b"PRIVATE KEY" in label.upper() for label in _PEM_LABEL.findall(chain_pem)):
        raise InvalidInput("the certificate file holds a private key; give the key as the second file only")
    try:
        chain = x509.load_pem_x509_certificates(chain_pem)
    except ValueError:
        raise InvalidInput("the certificate file holds no PEM certificate") from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise InvalidInput("the key file holds no unencrypted PEM private key") from None
    leaf = chain[0]
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    try:  # read only now, by cryptography: a key of no type it knows raises UnsupportedAlgorithm
        leaf_public = leaf.public_key().public_bytes(serialization.Encoding.DER, public)
    except (ValueError, UnsupportedAlgorithm):
        raise InvalidInput("the certificate's public key cannot be read (a kind of key cryptography has not)") from None
    if key.public_key().public_bytes(serialization.Encoding.DER, public) != leaf_public:
        raise InvalidInput("the private key does not match the certificate")
    blocks = b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in chain)
    return info_of(leaf), blocks


def info_of(cert: x509.Certificate) -> CertInfo:
    """A certificate's facts; one line when its names are not what they must be (cryptography reads them only
    when asked, and raises ValueError on malformed DER: a file's certificate is whatever its maker wrote)."""
    from cryptography import x509
    try:
        try:
            sans = tuple(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
                         .get_values_for_type(x509.DNSName))
        except x509.ExtensionNotFound:
            sans = ()
        return CertInfo(subject=cert.subject.rfc4514_string(), issuer=cert.issuer.rfc4514_string(), sans=sans,
                        not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc,
                        self_signed=cert.subject == cert.issuer)
    except ValueError:
        raise InvalidInput("the certificate's names or extensions cannot be read (malformed DER)") from None


def valid_for(info: CertInfo, name: str) -> bool:
    """Whether the certificate is valid for the host name: one of its names is it, or a wildcard one label
    above it (`*.shop.example.com` names `v12.shop.example.com`, not `a.v12.shop.example.com`), as TLS clients
    match them (RFC 6125)."""
    name = name.lower().rstrip(".")
    parent = name.partition(".")[2]
    return any(san.lower() == name or (san.startswith("*.") and parent and san[2:].lower() == parent)
               for san in info.sans)


def info(host: Host, app: str) -> CertInfo:
    from cryptography import x509

    found = paths(host.settings, app)
    if found is None:
        raise NotFound(f"{app} has no certificate (add one with certs:add, certs:generate or letsencrypt:enable)")
    return info_of(x509.load_pem_x509_certificates(found[0].read_bytes())[0])


def install(host: Host, app: str, chain_pem: bytes, key_pem: bytes) -> CertInfo:
    """Store a certificate and switch the vhost to HTTPS; the old files come back if nginx refuses."""
    cert, blocks = _checked(chain_pem, key_pem)
    folder = cert_dir(host.settings, app)
    with _replacing(folder):
        folder.mkdir(parents=True, mode=0o700)
        # nginx's master reads both as root, before it starts its workers: nobody else needs them.
        perms.write_file(folder / "privkey.pem", key_pem, perms.PRIVATE_FILE)
        # The certificates, nothing else of the file.
        perms.write_file(folder / "fullchain.pem", blocks, perms.PRIVATE_FILE)
        # reload: a certificate replacing another has the same paths, so the vhost text may not change
        _apply(host, app, reload=True)
    return cert


def names(host: Host, app: str) -> list[str]:
    """The names a certificate of this app (or of the dashboard, `proxy.DASHBOARD_SITE`) is for."""
    return [host.settings.dashboard_host] if app == proxy.DASHBOARD_SITE else domains.of(host, app)


def _apply(host: Host, app: str, *, reload: bool = False) -> None:
    """The vhost written again with the certificate there is now (the app's, or the dashboard's)."""
    if app == proxy.DASHBOARD_SITE:
        proxy.write_dashboard_site(host.settings, reload=reload)
    else:
        proxy.write_site(host, app, domains.of(host, app), reload=reload)


def generate(host: Host, app: str, *, days: int = 365) -> CertInfo:
    """A self-signed certificate for all of the app's domains (tests, intranets)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    sans = names(host, app)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, sans[0])])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in sans]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return install(host, app, cert.public_bytes(serialization.Encoding.PEM), key_pem)


def remove(host: Host, app: str) -> None:
    if paths(host.settings, app) is None:
        raise NotFound(f"{app} has no certificate")
    with _replacing(cert_dir(host.settings, app)):
        _apply(host, app)


@contextmanager
def _replacing(folder: Path) -> Iterator[None]:
    """Move the certificate folder aside for the body; if the body fails (nginx refused the vhost),
    whatever it wrote goes and the old folder comes back, so the previous state keeps serving."""
    backup = folder.with_name(f".{folder.name}.previous")
    shutil.rmtree(backup, ignore_errors=True)
    if folder.exists():
        folder.rename(backup)
    try:
        yield
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        if backup.exists():
            backup.rename(folder)
        raise
    shutil.rmtree(backup, ignore_errors=True)


def remove_app(settings: Settings, app: str) -> None:
    shutil.rmtree(cert_dir(settings, app), ignore_errors=True)
