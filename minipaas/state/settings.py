"""Host settings: where state lives, which domain and port apps are served on, which nginx.

Each setting comes from the environment (`MINIPAAS_*`) first, then from `settings.toml` in
`MINIPAAS_HOME` (written by `minipaas init` / install.sh), then from the defaults below.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pwd
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import tomli_w

from minipaas.errors import InvalidInput
from minipaas.state.names import check_hostname, is_count, parent_of, review_parts, valid_image_patterns

DEFAULT_HOME = "/var/lib/minipaas"
SETTINGS_FILE = "settings.toml"
# Data folders shipped with minipaas: inside the package when installed from a wheel,
# at the top of the checkout when run from source or an editable install.
_PACKAGE_DIR = Path(__file__).resolve().parent.parent  # minipaas/, above state/
SHARE_DIR = _PACKAGE_DIR / "share" if (_PACKAGE_DIR / "share").is_dir() else _PACKAGE_DIR.parent
# The pre-receive hook every app repository gets (gitrepo.install_hook fills it in).
HOOK_TEMPLATE = SHARE_DIR / "hooks" / "pre-receive"

# setting name -> (environment variable, default)
_FIELDS: dict[str, tuple[str, str]] = {
    "domain": ("MINIPAAS_DOMAIN", "localhost"),
    "http_port": ("MINIPAAS_HTTP_PORT", "80"),
    "https_port": ("MINIPAAS_HTTPS_PORT", "443"),
    "nginx": ("MINIPAAS_NGINX", "system"),
    # the account nginx's worker processes run as, in both tiers (empty: see _default_nginx_user);
    # in system mode it must be the `user` of the host's nginx.conf (Debian: www-data)
    "nginx_user": ("MINIPAAS_NGINX_USER", ""),
    "build_ca": ("MINIPAAS_BUILD_CA", ""),
    # which builder runs builds: auto (found by `init`), legacy, buildkit, or what `init` found
    # (`buildkit:/usr/bin/docker`: a CLI with BuildKit built in; `buildx:/path/docker`: the plugin)
    "builder": ("MINIPAAS_BUILDER", "auto"),
    "network": ("MINIPAAS_NETWORK", "minipaas"),
    # each app's own Docker network gets a /26 of this pool (see networks.py)
    "subnets": ("MINIPAAS_SUBNETS", "10.213.0.0/16"),
    "node_major": ("MINIPAAS_NODE_MAJOR", "26"),
    # What every home and instance on the host shares: the Debian root filesystem base images are made
    # of (a debootstrap spared) and the list of Node.js releases (root's alone, like the homes)
    "host_cache": ("MINIPAAS_HOST_CACHE", "/var/cache/minipaas"),
    "buildpacks_dir": ("MINIPAAS_BUILDPACKS", str(SHARE_DIR / "buildpacks")),
    "nginx_templates": ("MINIPAAS_NGINX_TEMPLATES", str(SHARE_DIR / "nginx")),
    "system_nginx_conf": ("MINIPAAS_SYSTEM_NGINX_CONF", "/etc/nginx/conf.d/minipaas.conf"),
    # ssh access: the authorized_keys file minipaas manages, and the command each key is forced to run
    "authorized_keys": ("MINIPAAS_AUTHORIZED_KEYS", "/home/paas/.ssh/authorized_keys"),
    "ssh_entry": ("MINIPAAS_SSH_ENTRY", "sudo -n /usr/local/bin/minipaas"),
    # letsencrypt:*: the ACME server, the account's contact, and a CA bundle to trust when talking to it
    "acme_directory": ("MINIPAAS_ACME_DIRECTORY", "https://acme-v02.api.letsencrypt.org/directory"),
    "acme_email": ("MINIPAAS_ACME_EMAIL", ""),
    "acme_ca": ("MINIPAAS_ACME_CA", ""),
    # Names of this instance's containers and images; several instances can share one Docker engine.
    "instance": ("MINIPAAS_INSTANCE", ""),
    # Images every app's own Dockerfile may use besides minipaas' base images (glob patterns, `node:*-slim`)
    "build_images": ("MINIPAAS_BUILD_IMAGES", ""),
    # In a cluster: where the manager's engine reads the registries' CA certificates (certs.d/<host:port>/ca.crt)
    "docker_certs": ("MINIPAAS_DOCKER_CERTS", "/etc/docker/certs.d"),
    # Seconds a write to the state database waits for another process' transaction before it gives up in one line
    "db_wait": ("MINIPAAS_DB_WAIT", "30"),
    # Where the dashboard is served (empty: dashboard.<domain>)
    "dashboard_domain": ("MINIPAAS_DASHBOARD_DOMAIN", ""),
    # The loopback port where nginx serves every release's metrics to Prometheus (0: not served)
    "metrics_port": ("MINIPAAS_METRICS_PORT", "9145"),
}
DEFAULT_INSTANCE = "minipaas"
INSTANCE_NAME = re.compile(r"[a-z][a-z0-9-]{0,30}")


@dataclass(frozen=True)
class Settings:
    home: Path
    domain: str
    http_port: int
    https_port: int
    nginx: str
    nginx_user: str
    build_ca: Path | None
    builder: str
    network: str
    subnets: str
    node_major: int
    host_cache: Path
    buildpacks_dir: Path
    nginx_templates: Path
    system_nginx_conf: Path
    authorized_keys: Path
    ssh_entry: str
    acme_directory: str
    acme_email: str
    acme_ca: Path | None
    instance: str
    build_images: str
    docker_certs: Path
    db_wait: int
    dashboard_domain: str = ""
    metrics_port: int = 9145

    @property
    def dashboard_host(self) -> str:
        """The dashboard's name: the `dashboard-domain` setting, else `dashboard.<domain>`."""
        return self.dashboard_domain or f"dashboard.{self.domain}"

    @property
    def db_path(self) -> Path:
        return self.home / "minipaas.db"

    @property
    def repos_dir(self) -> Path:
        return self.home / "repos"

    @property
    def nginx_dir(self) -> Path:
        return self.home / "nginx"

    @property
    def dashboard_socket(self) -> Path:
        """Where the dashboard listens: in a folder of its own, which nginx's workers pass."""
        return self.nginx_dir / "dashboard" / "dashboard.sock"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def locks_dir(self) -> Path:
        return self.home / "locks"

    @property
    def acme_root(self) -> Path:
        """The webroot nginx answers ACME HTTP-01 challenges from."""
        return self.home / "acme" / "webroot"

    @property
    def cache_dir(self) -> Path:
        return self.home / "cache"

    def repo_path(self, app: str) -> Path:
        """The app's bare repository; a review app's commits are in its parent's."""
        own = self.repos_dir / f"{app}.git"
        parent = parent_of(app)
        if parent is not None and not own.exists():
            return self.repos_dir / f"{parent}.git"
        return own

    def image_repository(self, app: str) -> str:
        """Where the app's images are tagged: `minipaas/hello` on the default instance."""
        return f"{self.instance}/{app}"

    def image_tag(self, app: str, release: int, sha: str) -> str:
        """A release's image: `minipaas/hello:7`; a review app's, in its parent's repository, tagged with
        its slug and the commit's short sha: `minipaas/hello:feature-login-1a2b3c4`."""
        review = review_parts(app)
        if review is not None:
            return f"{self.image_repository(review[0])}:{review[1]}-{sha[:7]}"
        return f"{self.image_repository(app)}:{release}"

    def build_cache_tag(self, app: str, stage: int) -> str:
        """Where the legacy builder's stage `stage` of the app's newest build is kept as the next one's cache:
        `minipaas/hello:build-stage0`; a review app's `minipaas/hello:feature-login-build-stage0`."""
        review = review_parts(app)
        if review is not None:
            return f"{self.image_repository(review[0])}:{review[1]}-build-stage{stage}"
        return f"{self.image_repository(app)}:build-stage{stage}"

    def app_network(self, app: str) -> str:
        """The app's own Docker network (networks.py): `minipaas-hello` on the default instance."""
        return f"{self.instance}-{app}"

    @property
    def host_files_name(self) -> str:
        """How this instance's files outside its home are named (its sudoers rule, systemd units, cron job):
        `minipaas` for the default instance, `minipaas-<instance>` for another."""
        return DEFAULT_INSTANCE if self.instance == DEFAULT_INSTANCE else f"{DEFAULT_INSTANCE}-{self.instance}"

    def container_name(self, base: str) -> str:
        """A container's name on the engine: other instances' names start with their instance."""
        return base if self.instance == DEFAULT_INSTANCE else f"{self.instance}.{base}"

    def to_toml(self) -> str:
        """The settings file `init` writes, so that hooks and later commands see the same values
        (tomli-w writes it: every string escaped as TOML wants, control characters included)."""
        values = {"home": str(self.home)}
        for name in _FIELDS:
            value = getattr(self, name)
            values[name] = "" if value is None else str(value)
        return tomli_w.dumps(values)


def load(env: dict[str, str] | None = None) -> Settings:
    """Settings for this process: environment over settings file over defaults."""
    env = dict(os.environ if env is None else env)
    home = Path(env.get("MINIPAAS_HOME") or DEFAULT_HOME)
    if not home.is_absolute():
        home = Path.cwd() / home
    stored: dict[str, object] = {}
    settings_file = home / SETTINGS_FILE
    if settings_file.is_file():
        try:
            stored = tomllib.loads(settings_file.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"{settings_file} is not valid TOML: {exc}") from None
    raw = {
        name: env.get(var) or str(stored.get(name) or "") or default
        for name, (var, default) in _FIELDS.items()
    }
    return Settings(
        home=home,
        domain=_domain(raw["domain"]),
        http_port=_port(raw["http_port"], "MINIPAAS_HTTP_PORT"),
        https_port=_port(raw["https_port"], "MINIPAAS_HTTPS_PORT"),
        nginx=_choice(raw["nginx"], ("system", "private"), "MINIPAAS_NGINX"),
        nginx_user=_account(raw["nginx_user"] or _default_nginx_user(), "MINIPAAS_NGINX_USER"),
        build_ca=_optional_file(raw["build_ca"], "MINIPAAS_BUILD_CA"),
        builder=_builder(raw["builder"]),
        network=raw["network"],
        subnets=_pool(raw["subnets"]),
        node_major=_port(raw["node_major"], "MINIPAAS_NODE_MAJOR"),
        host_cache=_absolute(raw["host_cache"], "MINIPAAS_HOST_CACHE"),
        buildpacks_dir=Path(raw["buildpacks_dir"]),
        nginx_templates=Path(raw["nginx_templates"]),
        system_nginx_conf=Path(raw["system_nginx_conf"]),
        authorized_keys=Path(raw["authorized_keys"]),
        ssh_entry=raw["ssh_entry"],
        acme_directory=raw["acme_directory"],
        acme_email=raw["acme_email"],
        acme_ca=_optional_file(raw["acme_ca"], "MINIPAAS_ACME_CA"),
        instance=_instance(raw["instance"], home),
        build_images=_build_images(raw["build_images"]),
        docker_certs=_absolute(raw["docker_certs"], "MINIPAAS_DOCKER_CERTS"),
        db_wait=_seconds(raw["db_wait"], "MINIPAAS_DB_WAIT"),
        dashboard_domain=check_hostname(raw["dashboard_domain"].lower().rstrip("."), what="MINIPAAS_DASHBOARD_DOMAIN")
        if raw["dashboard_domain"] else "",
        metrics_port=0 if raw["metrics_port"] == "0" else _port(raw["metrics_port"], "MINIPAAS_METRICS_PORT"),
    )


def _instance(value: str, home: Path) -> str:
    """The instance's name: given, or `minipaas` for the default home and `mp-<hash of the home>` otherwise."""
    if not value:
        if home == Path(DEFAULT_HOME):
            return DEFAULT_INSTANCE
        return "mp-" + hashlib.sha256(str(home).encode()).hexdigest()[:8]
    if not INSTANCE_NAME.fullmatch(value):
        raise InvalidInput(f"MINIPAAS_INSTANCE must be 1 to 31 lowercase letters, digits and dashes, not {value!r}")
    return value


def _pool(value: str) -> str:
    import ipaddress

    try:
        network = ipaddress.IPv4Network(value)
    except ValueError:
        raise InvalidInput(f"MINIPAAS_SUBNETS must be an IPv4 network such as 10.213.0.0/16, not {value!r}") from None
    if network.prefixlen > 26:
        raise InvalidInput(f"MINIPAAS_SUBNETS {value} is too small: each app takes a /26 of it")
    return str(network)


def _build_images(value: str) -> str:
    if not valid_image_patterns(value):
        raise InvalidInput(f"MINIPAAS_BUILD_IMAGES must be image patterns such as `node:*-slim`, not {value!r}")
    return value


def _domain(value: str) -> str:
    return check_hostname(value.lower().rstrip("."), what="MINIPAAS_DOMAIN")


def _default_nginx_user() -> str:
    """www-data (Debian's nginx user), else nobody, when root; without root nginx's workers can only
    be whoever runs minipaas, which the empty name means."""
    if os.geteuid() != 0:
        return ""
    for name in ("www-data", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name).pw_name
    return ""


def _account(value: str, what: str) -> str:
    if value:
        try:
            pwd.getpwnam(value)
        except KeyError:
            raise InvalidInput(f"{what} names no account on this host: {value[:40]!r}") from None
    return value


def _port(value: str, what: str) -> int:
    if not is_count(value, 1, 65535):
        raise InvalidInput(f"{what} must be a number from 1 to 65535, not {value[:20]!r}")
    return int(value)


def _seconds(value: str, what: str) -> int:
    if not (value.isascii() and value.isdigit()) or not 0 < int(value) <= 3600:
        raise InvalidInput(f"{what} must be a number of seconds from 1 to 3600, not {value!r}")
    return int(value)


def _choice(value: str, choices: tuple[str, ...], what: str) -> str:
    if value not in choices:
        raise InvalidInput(f"{what} must be one of {', '.join(choices)}, not {value!r}")
    return value


def _builder(value: str) -> str:
    kind, _, path = value.partition(":")
    if value in ("auto", "legacy", "buildkit") or (kind in ("buildkit", "buildx") and path.startswith("/")):
        return value
    raise InvalidInput(f"MINIPAAS_BUILDER must be auto, legacy or buildkit (or buildkit:/path/to/docker, "
                       f"buildx:/path/to/docker), not {value!r}")


def _absolute(value: str, what: str) -> Path:
    if not value.startswith("/"):
        raise InvalidInput(f"{what} must be an absolute path, not {value[:60]!r}")
    return Path(value)


def _optional_file(value: str, what: str) -> Path | None:
    if not value:
        return None
    path = Path(value)
    if not path.is_file():
        raise InvalidInput(f"{what} names {value!r}, which is not a readable file")
    return path
