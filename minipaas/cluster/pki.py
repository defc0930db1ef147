"""The cluster's own certificate authority, and the registry's server certificate it signs.

The nodes trust the registry through `/etc/docker/certs.d/<address>:<port>/ca.crt`: the CA made here, once per
cluster (`MINIPAAS_HOME/cluster/ca.crt`, its key 0600 beside it, never leaving the manager). The registry's
certificate names its address (an IP SAN for an address, a DNS SAN for a name) and is made again when the address
changes. `cryptography` is imported inside the functions (~50 ms), as in routing/certs.py.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from minipaas.errors import InvalidInput
from minipaas.state import perms

CA_DAYS = 10 * 365
SERVER_DAYS = 2 * 365
PUBLIC_FILE = 0o644


@dataclass(frozen=True)
class Files:
    """A cluster folder's certificate files."""

    folder: Path

    @property
    def ca_cert(self) -> Path:
        return self.folder / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.folder / "ca.key"

    @property
    def server_cert(self) -> Path:
        return self.folder / "registry.crt"

    @property
    def server_key(self) -> Path:
        return self.folder / "registry.key"


def ensure_ca(files: Files, name: str) -> bytes:
    """The CA's certificate (PEM), made first if the folder has none."""
    if files.ca_cert.is_file() and files.ca_key.is_file():
        return files.ca_cert.read_bytes()
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    files.folder.mkdir(mode=perms.PRIVATE_DIR, parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"minipaas cluster CA ({name})"[:64])])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False),
                           critical=True)
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    perms.write_file(files.ca_key, key_pem, perms.PRIVATE_FILE)
    pem = cert.public_bytes(serialization.Encoding.PEM)
    perms.write_file(files.ca_cert, pem, PUBLIC_FILE)
    return pem


def server_names(files: Files) -> list[str]:
    """The names and addresses the registry's certificate is for (empty: none made yet)."""
    if not files.server_cert.is_file():
        return []
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(files.server_cert.read_bytes())
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [*sans.get_values_for_type(x509.DNSName), *(str(a) for a in sans.get_values_for_type(x509.IPAddress))]


def ensure_server(files: Files, address: str) -> None:
    """The registry's certificate and key for `address` (an IP or a host name), signed by the CA; made
    again if the one there names another address."""
    if server_names(files) == [address] and files.server_key.is_file():
        return
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    san: x509.GeneralName
    try:
        san = x509.IPAddress(ipaddress.ip_address(address))
    except ValueError:
        if not address or len(address) > 253 or any(c.isspace() or c in "/:@" for c in address):
            raise InvalidInput(f"not an address or host name for the registry: {address[:60]!r}") from None
        san = x509.DNSName(address)
    ca_key = serialization.load_pem_private_key(files.ca_key.read_bytes(), password=None)
    ca_cert = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, address[:64])]))
            .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=SERVER_DAYS))
            .add_extension(x509.SubjectAlternativeName([san]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))  # type: ignore[arg-type]
    perms.write_file(files.server_key, key.private_bytes(serialization.Encoding.PEM,
                                                         serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()), perms.PRIVATE_FILE)
    perms.write_file(files.server_cert, cert.public_bytes(serialization.Encoding.PEM), PUBLIC_FILE)
