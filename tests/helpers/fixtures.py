"""The fixtures most tests ask for: `paas` (a host of its own), `sshd` (a real sshd serving its keys) and
`local_account` (another local user)."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.host import Paas, paas_host
from tests.helpers.sshd import Sshd, serve_ssh, sshd_server


@pytest.fixture
def paas(tmp_path: Path, engine_ready: None) -> Iterator[Paas]:
    with paas_host(tmp_path / "work") as instance:
        yield instance


@pytest.fixture
def local_account() -> Iterator[str]:
    """A real local account (no home, no shell) with no business on this host's minipaas: what another user of
    the machine, or a compromised service, can do."""
    name = f"mpacc-{uuid.uuid4().hex[:8]}"
    subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["userdel", name], check=False, capture_output=True)


@pytest.fixture
def sshd(paas: Paas, tmp_path: Path) -> Iterator[Sshd]:
    with sshd_server(tmp_path / "sshd") as server:
        serve_ssh(paas, server)
        yield server
