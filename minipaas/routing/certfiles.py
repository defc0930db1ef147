"""Where an app's certificate lives: `MINIPAAS_HOME/certs/<app>/{fullchain,privkey}.pem`.

Both the vhost renderer (proxy.py: does the app serve HTTPS?) and the certificate store (certs.py) read
this; neither imports the other for it.
"""

from __future__ import annotations

from pathlib import Path

from minipaas.state.settings import Settings


def cert_dir(settings: Settings, app: str) -> Path:
    return settings.layout.certs_dir / app


def paths(settings: Settings, app: str) -> tuple[Path, Path] | None:
    """(fullchain, private key) when the app has a certificate."""
    folder = cert_dir(settings, app)
    chain, key = folder / "fullchain.pem", folder / "privkey.pem"
    return (chain, key) if chain.is_file() and key.is_file() else None
