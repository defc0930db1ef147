"""The images minipaas makes for itself on this host: the addons' `minipaas/postgres:15` and `minipaas/redis:7`,
the cluster registry's, and the plain `minipaas/debian:bookworm` the cluster's jobs run in.

No image registry is reachable, so they are built the way the Node base images are (stackbuild.py):
from the host's cached Debian root filesystem (rootfs.py), imported once as `minipaas/debian:bookworm`,
then a Dockerfile that installs Debian's own `postgresql-15` / `redis-server` with apt and adds a small
entrypoint. Made on first use (`postgres:create`), once per host: one build per image at a time, under a
host-wide lock (state/locks.py) (a second creator waits, then uses the image). The servers run as the
packages' own users (postgres, redis), never root; what they need at run time (the password, the
database's name) comes from the container's environment.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

from minipaas.adapters import engine, proc
from minipaas.build import rootfs
from minipaas.errors import BuildFailed
from minipaas.progress import Progress
from minipaas.state import locks
from minipaas.state.settings import Settings

DEBIAN_IMAGE = "minipaas/debian"
DEBIAN_TAG = rootfs.DEBIAN_SUITE
KIND_LABEL = "minipaas.service-image"  # which image (postgres, redis, registry): for `docker images -f`; kept as built
RECIPE_LABEL = "minipaas.service-recipe"  # recipe(): how the image was made
LOCK_WAIT = 30 * 60
BUILD_TIMEOUT = 30 * 60
DETAIL = rootfs.DETAIL

# Runs as the postgres user. The first start makes the cluster (scram-sha-256 over TCP; the local socket,
# which only `docker exec` reaches, trusts its users) and the database; the password then leaves the
# environment before the server starts, so /proc/<pid>/environ of the server does not hold it.
POSTGRES_ENTRYPOINT = """\
#!/bin/sh
set -eu
BIN=/usr/lib/postgresql/15/bin
PGDATA=/var/lib/postgresql/data
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    mkdir -p "$PGDATA"
    chmod 700 "$PGDATA"
    pwfile=$(mktemp)
    printf '%s\\n' "$POSTGRES_PASSWORD" > "$pwfile"
    "$BIN/initdb" -D "$PGDATA" -U postgres --pwfile="$pwfile" -E UTF8 --locale=C.UTF-8 \\
        --auth-local=trust --auth-host=scram-sha-256 >/dev/null
    rm -f "$pwfile"
    echo "host all all 0.0.0.0/0 scram-sha-256" >> "$PGDATA/pg_hba.conf"
    echo "listen_addresses = '*'" >> "$PGDATA/postgresql.conf"
    "$BIN/pg_ctl" -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
    "$BIN/createdb" -U postgres "$POSTGRES_DB"
    "$BIN/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null
    echo "minipaas: database $POSTGRES_DB created"
fi
unset POSTGRES_PASSWORD
exec "$BIN/postgres" -D "$PGDATA"
"""

# Runs as the redis user: the password goes into a config file of its own (0600) rather than on the
# command line, where `ps` would show it; append-only persistence keeps every write across restarts.
REDIS_ENTRYPOINT = """\
#!/bin/sh
set -eu
umask 077
conf=/var/lib/redis/minipaas.conf
{
    echo "bind 0.0.0.0"
    echo "protected-mode no"
    echo "port 6379"
    echo "dir /var/lib/redis"
    echo "appendonly yes"
    echo "save 60 1"
    echo "requirepass $REDIS_PASSWORD"
} > "$conf"
unset REDIS_PASSWORD
exec redis-server "$conf"
"""

# redis-cli with the service's password from the container's environment (docker exec inherits it):
# never on a command line.
REDIS_CLI = """\
#!/bin/sh
REDISCLI_AUTH="$REDIS_PASSWORD" exec redis-cli --no-auth-warning "$@"
"""


@dataclass(frozen=True)
class ImageSpec:
    """How one service's image is made."""

    kind: str
    version: str
    packages: tuple[str, ...]
    user: str
    data: str  # the folder the data volume is mounted on (owned by `user` in the image)
    files: dict[str, str]  # path in the image -> contents (executables)
    prepare: str  # shell run before apt (policy files)
    after: str  # shell run after apt (folders)
    entrypoint: str

    @property
    def tag(self) -> str:
        return f"minipaas/{self.kind}:{self.version}"


POSTGRES = ImageSpec(
    kind="postgres", version="15",
    packages=("postgresql-15", "postgresql-client-15"),
    user="postgres", data="/var/lib/postgresql",
    files={"/usr/local/bin/minipaas-postgres": POSTGRES_ENTRYPOINT},
    # No cluster made at install time: the entrypoint makes one in the volume. The user first, with a uid
    # of its own (the package's postinst keeps an existing one): Debian's would be the next free system
    # uid, which some host account (messagebus...) may hold, and could then trace the server.
    prepare="groupadd --system -g 64320 postgres "
            "&& useradd --system -u 64320 -g postgres -d /var/lib/postgresql -s /bin/bash postgres "
            "&& mkdir -p /etc/postgresql-common && echo 'create_main_cluster = false' "
            "> /etc/postgresql-common/createcluster.conf",
    after="install -d -o postgres -g postgres -m 2775 /run/postgresql "
          "&& install -d -o postgres -g postgres -m 0700 /var/lib/postgresql",
    entrypoint="/usr/local/bin/minipaas-postgres",
)
REDIS = ImageSpec(
    kind="redis", version="7",
    packages=("redis-server", "redis-tools"),
    user="redis", data="/var/lib/redis",
    files={"/usr/local/bin/minipaas-redis": REDIS_ENTRYPOINT, "/usr/local/bin/minipaas-redis-cli": REDIS_CLI},
    prepare="groupadd --system -g 63790 redis "
            "&& useradd --system -u 63790 -g redis -d /var/lib/redis -s /usr/sbin/nologin redis",
    after="install -d -o redis -g redis -m 0700 /var/lib/redis",
    entrypoint="/usr/local/bin/minipaas-redis",
)
# The cluster's registry (issue 15, docs/cluster-design.md): Debian's docker-registry, as its own user, with the config,
# certificate and storage minipaas bind-mounts from MINIPAAS_HOME/cluster/. Debian's iptables too: the same image
# sets the manager's firewall, run as root in the host's network namespace (cluster/firewall.py).
REGISTRY_UID = 64500
REGISTRY = ImageSpec(
    kind="registry", version="2.8",
    packages=("docker-registry", "iptables"),
    user="docker-registry", data="/var/lib/docker-registry",
    files={"/usr/local/bin/minipaas-registry":
           "#!/bin/sh\nexec /usr/bin/docker-registry serve /etc/docker/registry/config.yml\n"},
    prepare=f"groupadd --system -g {REGISTRY_UID} docker-registry "
            f"&& useradd --system -u {REGISTRY_UID} -g docker-registry -d /var/lib/docker-registry "
            "-s /usr/sbin/nologin docker-registry",
    after="install -d -o docker-registry -g docker-registry -m 0700 /var/lib/docker-registry",
    entrypoint="/usr/local/bin/minipaas-registry",
)
SPECS = {spec.kind: spec for spec in (POSTGRES, REDIS, REGISTRY)}


def dockerfile(spec: ImageSpec) -> str:
    """The Dockerfile of a service image, on the imported Debian root."""
    copies = "\n".join(f"COPY {Path(path).name} {path}" for path in spec.files)
    return f"""FROM {DEBIAN_IMAGE}:{DEBIAN_TAG}
# policy-rc.d: the packages' scripts must not try to start their servers while the image is built
RUN printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d \\
 && {spec.prepare} \\
 && apt-get update -q \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends {' '.join(spec.packages)} \\
 && {spec.after} \\
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/apt/archives/*.deb /var/log/apt/* /var/log/*.log
{copies}
ENV LANG=C.UTF-8
LABEL minipaas=service-image {KIND_LABEL}={spec.kind} minipaas.service-version={spec.version}
USER {spec.user}
WORKDIR {spec.data}
ENTRYPOINT ["{spec.entrypoint}"]
"""


def context(spec: ImageSpec) -> io.BytesIO:
    """The build context: the Dockerfile and the scripts (0755), as a tar stream."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        members = {"Dockerfile": (f"{dockerfile(spec)}LABEL {RECIPE_LABEL}={recipe(spec)}\n", 0o644)}
        members.update({Path(path).name: (text, 0o755) for path, text in spec.files.items()})
        for name, (text, mode) in members.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    return buffer


def recipe(spec: ImageSpec) -> str:
    """A digest of how the image is made (its Dockerfile and scripts), as a label on it: an image made
    by an older recipe is made again (a minipaas upgrade that changed it), one of this recipe is kept."""
    text = dockerfile(spec) + "".join(f"{path}\n{body}" for path, body in sorted(spec.files.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _current(spec: ImageSpec) -> bool:
    return (engine.image_labels(spec.tag) or {}).get(RECIPE_LABEL) == recipe(spec)


def ensure(settings: Settings, kind: str, progress: Progress) -> str:
    """The image of a service kind, built first when missing or of an older recipe (once per host);
    returns its tag."""
    spec = SPECS[kind]
    if _current(spec):
        return spec.tag
    with locks.waited(locks.host_lock(f"{spec.kind}-{spec.version}.lock"), progress,
                      waiting=f"-----> Waiting for another build of {spec.tag}...",
                      resumed=None, limit=LOCK_WAIT, poll=0.2,
                      stuck=f"another build of {spec.tag} has run for {LOCK_WAIT // 60} minutes"):
        if _current(spec):  # made by the build we waited for
            return spec.tag
        progress(f"-----> Building {spec.tag} from Debian's {' and '.join(spec.packages)} (once per host)")
        _debian_image(settings, progress)
        outcome = engine.build(context(spec), tag=spec.tag, progress=_steps(progress), timeout=BUILD_TIMEOUT)
        if outcome.error:
            raise BuildFailed(f"building {spec.tag} failed: {outcome.error}", detail="\n".join(outcome.log[-40:]))
    size = engine.image_size(spec.tag) or 0
    progress(f"{DETAIL}Built {spec.tag} ({size / 1e6:.0f} MB)")
    return spec.tag


def _steps(progress: Progress) -> Progress:
    """Only the builder's step lines (`Step 2/9 : RUN ...`), shortened: apt's own output is long."""
    def show(line: str) -> None:
        if line.startswith("Step "):
            progress(f"{DETAIL}{line[:110]}")
    return show


def _debian_image(settings: Settings, progress: Progress) -> None:
    """`minipaas/debian:bookworm`: the cached root filesystem imported as it is (the base of every service image)."""
    tag = f"{DEBIAN_IMAGE}:{DEBIAN_TAG}"
    if engine.image_id(tag) is not None:
        return
    if os.geteuid() != 0:
        raise BuildFailed(f"building {tag} needs root (debootstrap, file owners)")
    with proc.public_umask():
        base = rootfs.base(settings.host_cache, progress, legacy=settings.cache_dir / rootfs.CACHE_NAME)
    progress(f"{DETAIL}Importing {base.name} as {tag}")
    engine.import_rootfs(str(base), repository=DEBIAN_IMAGE, tag=DEBIAN_TAG, changes=[
        "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "LABEL minipaas=service-image",
        'CMD ["bash"]',
    ])
