"""The cluster registry's one account (issue 19, item 13): made by `cluster:init`, held by the manager only.

The registry (docker-registry 2.8) refuses every request without it (htpasswd with bcrypt, the one scheme that
registry takes). Its user name and password are kept in `MINIPAAS_HOME/cluster/registry-auth.json` (root, 0600);
the registry reads only the bcrypt hash (`cluster/htpasswd`, owned by the registry's user, 0600). The manager
logs in before it pushes and before it creates a service (`login`): the engine checks the password against the
registry, and docker-py then sends it with the push and with every service created or updated for that registry
(the `X-Registry-Auth` header, what `docker service create --with-registry-auth` sends). The Swarm keeps it with
the service and hands it to the node that pulls a task's image; it is never in a task's environment or mounts.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from minipaas.adapters import engine
from minipaas.build import hostimages
from minipaas.state import perms
from minipaas.state.settings import Settings

USER = "minipaas"
# bcrypt's cost guards a guessable password against a stolen hash; this one is 256 random bits, and the registry
# checks it on every request of every push and pull (docker-registry caches nothing): a low cost keeps a push of
# many layers fast. Go's bcrypt (the registry's) takes 4 to 31.
COST = 5


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str


def _file(settings: Settings) -> Path:
    return settings.layout.cluster_dir / "registry-auth.json"


def htpasswd_file(settings: Settings) -> Path:
    return settings.layout.cluster_dir / "htpasswd"


def load(settings: Settings) -> Credentials | None:
    """The registry's account, or None (no cluster, or one made before registries took credentials)."""
    try:
        data = json.loads(_file(settings).read_text(encoding="utf-8"))
        return Credentials(username=str(data["username"]), password=str(data["password"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def htpasswd_line(credentials: Credentials, salt: bytes | None = None) -> str:
    """The registry's htpasswd line: `user:$2b$05$...` (bcrypt)."""
    import bcrypt

    hashed = bcrypt.hashpw(credentials.password.encode(), salt or bcrypt.gensalt(rounds=COST))
    return f"{credentials.username}:{hashed.decode('ascii')}\n"


def ensure(settings: Settings) -> Credentials:
    """The account, made with its htpasswd file if there is none yet."""
    found = load(settings)
    if found is not None and htpasswd_file(settings).is_file():
        return found
    made = found or Credentials(username=USER, password=secrets.token_urlsafe(32))
    perms.write_file(_file(settings), json.dumps({"username": made.username, "password": made.password}).encode(),
                     perms.PRIVATE_FILE)
    perms.write_file(htpasswd_file(settings), htpasswd_line(made).encode(), perms.PRIVATE_FILE)
    # The registry runs as its own user: it must read the hash, nothing else of the folder.
    os.chown(htpasswd_file(settings), hostimages.REGISTRY_UID, hostimages.REGISTRY_UID)
    return made


def login(settings: Settings, registry: str) -> bool:
    """The manager's engine client logs in to the registry (for this process: nothing is written to
    ~/.docker); False when the cluster has no account yet (made before registries took credentials)."""
    found = load(settings)
    if found is None:
        return False
    engine.login(registry, found.username, found.password)
    return True
