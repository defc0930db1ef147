"""The home's layout: where each thing an instance keeps lives under its MINIPAAS_HOME, spelled once.

Every path under the home is a property of `Layout` (`settings.layout`); a module that owns a folder's contents
(sites.py the release folders under static/, certfiles.py the certificates under certs/) builds the paths inside
that folder itself. The file modes of these paths are perms.POLICY's (tests/test_channels.py checks that every
folder here has a rule there).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SETTINGS_FILE = "settings.toml"
DB_FILE = "minipaas.db"


@dataclass(frozen=True)
class Layout:
    home: Path

    @property
    def settings_file(self) -> Path:
        """The settings `init` writes (settings.py reads them under the environment's)."""
        return self.home / SETTINGS_FILE

    @property
    def db_path(self) -> Path:
        """The SQLite state (store.py)."""
        return self.home / DB_FILE

    @property
    def repos_dir(self) -> Path:
        """The apps' bare repositories, `<app>.git`."""
        return self.home / "repos"

    @property
    def nginx_dir(self) -> Path:
        """nginx's configuration, sockets and pid files (proxy.py)."""
        return self.home / "nginx"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def drains_dir(self) -> Path:
        """The log drains' shipper: its rsyslog.conf, its local port and its queues' work folder (drains.py)."""
        return self.home / "drains"

    @property
    def locks_dir(self) -> Path:
        return self.home / "locks"

    @property
    def cache_dir(self) -> Path:
        """The instance's caches (templates' bytecode, the disk sizes)."""
        return self.home / "cache"

    @property
    def build_dir(self) -> Path:
        """Build contexts, one folder per app while it builds (buildcontext.py)."""
        return self.home / "build"

    @property
    def static_dir(self) -> Path:
        """Static sites' release folders, `<app>/<release>` and `<app>/current` (sites.py)."""
        return self.home / "static"

    @property
    def certs_dir(self) -> Path:
        """Certificates, `<app>/{fullchain,privkey}.pem` (certfiles.py)."""
        return self.home / "certs"

    @property
    def services_dir(self) -> Path:
        """Postgres and Redis services' files (backups), `<kind>/<name>`."""
        return self.home / "services"

    @property
    def cluster_dir(self) -> Path:
        """A cluster manager's files: its CA, the registry's storage and account, the nodes' host keys."""
        return self.home / "cluster"

    @property
    def acme_dir(self) -> Path:
        """The ACME account's key and the webroot nginx answers challenges from."""
        return self.home / "acme"

    @property
    def acme_root(self) -> Path:
        """The webroot nginx answers ACME HTTP-01 challenges from."""
        return self.acme_dir / "webroot"

    def is_instance(self) -> bool:
        """Whether a minipaas instance lives here (`init` wrote its settings and made its database)."""
        return self.settings_file.is_file() and self.db_path.is_file()
