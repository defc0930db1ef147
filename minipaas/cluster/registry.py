"""The cluster's private registry: Debian's docker-registry 2.8 in a container on the manager, TLS with the
cluster's CA, storage under MINIPAAS_HOME/cluster/registry, trusted by the manager's engine through certs.d.

Every path it mounts is the home's: a backup of the home holds the images. Every request needs the cluster's
one account (credentials.py: htpasswd with bcrypt), which only the manager holds; the nodes get it from the Swarm
with each service. Its port is meant to be open only to the cluster's nodes (docs/cluster-design.md), and no tenant's
container on a node reaches it (firewall.py).
"""

from __future__ import annotations

import base64
import os
import shutil
import time
from pathlib import Path

from minipaas.adapters import engine
from minipaas.build import hostimages
from minipaas.cluster import credentials, pki
from minipaas.errors import EngineError, MinipaasError
from minipaas.progress import Progress
from minipaas.state import perms
from minipaas.state.settings import Settings

PORT = 5000
START_DEADLINE = 30.0
ROLE_LABEL = "minipaas.role"

CONFIG = """\
# made by minipaas cluster:init; the paths are the container's
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: /var/lib/docker-registry
  delete:
    enabled: true
http:
  addr: :5000
  tls:
    certificate: /etc/docker/registry/registry.crt
    key: /etc/docker/registry/registry.key
auth:
  htpasswd:
    realm: minipaas
    path: /etc/docker/registry/htpasswd
"""
# Pulls go on, pushes and deletes are refused (405): the registry's garbage collection must not race a push
# (a blob it marks unreferenced may be the one a push is about to link). registrygc.py runs it like this.
READONLY = CONFIG.replace("  delete:\n    enabled: true\n",
                          "  delete:\n    enabled: true\n  maintenance:\n    readonly:\n      enabled: true\n")


def folder(settings: Settings) -> Path:
    return settings.layout.cluster_dir


def files(settings: Settings) -> pki.Files:
    return pki.Files(folder(settings))


def container_name(settings: Settings) -> str:
    return settings.container_name("registry")


def address(advertise: str) -> str:
    """The registry as image names and certs.d spell it: `10.0.0.5:5000`, `[fd00::5]:5000`."""
    return f"[{advertise}]:{PORT}" if ":" in advertise else f"{advertise}:{PORT}"


def start(settings: Settings, advertise: str, progress: Progress) -> str:
    """Make the CA and the registry's certificate, start the registry, trust it here; returns its address
    once it answers over TLS."""
    names = files(settings)
    ca = pki.ensure_ca(names, settings.instance)
    pki.ensure_server(names, advertise)
    storage(settings).mkdir(mode=0o700, exist_ok=True)
    for path in (storage(settings), names.server_key):  # the registry runs as its own user, not root
        os.chown(path, hostimages.REGISTRY_UID, hostimages.REGISTRY_UID)
    where = address(advertise)
    progress(f"-----> Starting the registry at {where}")
    run(settings, advertise, readonly=False, progress=progress)
    trust(settings, where, ca)
    wait_answering(settings, where)
    return where


def storage(settings: Settings) -> Path:
    return folder(settings) / "registry"


def run(settings: Settings, advertise: str, *, readonly: bool, progress: Progress) -> None:
    """(Re)start the registry's container, read-only or not (the config is read at start only), with the cluster's
    account (made first if the cluster has none yet: a cluster made before registries took credentials)."""
    names = files(settings)
    credentials.ensure(settings)
    config = folder(settings) / ("registry-readonly.yml" if readonly else "registry.yml")
    perms.write_file(config, (READONLY if readonly else CONFIG).encode(), pki.PUBLIC_FILE)
    image = hostimages.ensure(settings, "registry", progress)
    engine.swarm.run_registry(
        name=container_name(settings), image=image, address=advertise, port=PORT,
        binds={str(storage(settings)): "/var/lib/docker-registry",
               str(config): "/etc/docker/registry/config.yml:ro",
               str(names.server_cert): "/etc/docker/registry/registry.crt:ro",
               str(names.server_key): "/etc/docker/registry/registry.key:ro",
               str(credentials.htpasswd_file(settings)): "/etc/docker/registry/htpasswd:ro"},
        labels={engine.LABEL: str(settings.home), ROLE_LABEL: "registry"})


def wait_answering(settings: Settings, where: str, *, deadline: float = START_DEADLINE) -> None:
    """Wait until the registry answers (`deadline`: seconds from now), else an EngineError with its last lines."""
    end = time.monotonic() + deadline
    while not answers(where, files(settings).ca_cert, credentials.load(settings)):
        if time.monotonic() > end:
            raise EngineError(f"the registry does not answer at https://{where}/v2/ within {deadline:.0f}s",
                              detail=_log_tail(settings))
        time.sleep(0.2)


def _log_tail(settings: Settings) -> str:
    try:
        return b"".join(engine.logs(container_name(settings), tail=20)).decode(errors="replace")
    except MinipaasError:
        return ""


def trust(settings: Settings, where: str, ca: bytes) -> None:
    """The manager's engine trusts the registry: certs.d/<address>/ca.crt (read per connection, no restart)."""
    target = settings.docker_certs / where
    target.mkdir(mode=0o755, parents=True, exist_ok=True)
    perms.write_file(target / "ca.crt", ca, pki.PUBLIC_FILE)


def untrust(settings: Settings, where: str) -> None:
    shutil.rmtree(settings.docker_certs / where, ignore_errors=True)


def answers(where: str, ca_file: Path, account: credentials.Credentials | None) -> bool:
    """Whether the registry answers its API's base (GET /v2/ → 200) with a certificate the CA signed, to the
    account's credentials."""
    import http.client  # here: every command reaches this module, few of them ask a registry anything
    import ssl

    host, _, port = where.rpartition(":")
    context = ssl.create_default_context(cafile=str(ca_file))
    conn = http.client.HTTPSConnection(host.strip("[]"), int(port), timeout=3, context=context)
    headers = {}
    if account is not None:
        token = base64.b64encode(f"{account.username}:{account.password}".encode()).decode("ascii")
        headers["Authorization"] = f"Basic {token}"
    try:
        conn.request("GET", "/v2/", headers=headers)
        return conn.getresponse().status == 200
    except (OSError, ssl.SSLError):
        return False
    finally:
        conn.close()


def stop(settings: Settings, where: str | None) -> None:
    """The registry's container goes and the engine stops trusting it; its storage stays until `remove_files`."""
    engine.swarm.remove_container(container_name(settings))
    if where:
        untrust(settings, where)


def remove_files(settings: Settings) -> None:
    shutil.rmtree(folder(settings), ignore_errors=True)
