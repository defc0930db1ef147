"""An instance's systemd units (or cron job) on the host: one set per instance, never another's.

Outside its home an instance has jobs the host runs for it: `ps:restore` after boot and after every start
of the Docker engine, and every day the services' scheduled backups, the removal of review apps that outlived
their branch (`review-apps:expire`) and the certificates' renewal. Each
names the instance's MINIPAAS_HOME, and each instance has its own, named after it
(Settings.host_files_name: `minipaas-restore.service` for the default instance,
`minipaas-<instance>-restore.service` for another): a second instance's install neither replaces nor
reuses the first's. A file of this name that names another home (two homes given one MINIPAAS_INSTANCE)
is refused with one line naming that home (`check`, which `init` runs before it writes anything).

`render` is pure (tested as text); `install` writes them and enables them (install.sh runs it as
`minipaas host-units`), on a host without systemd as a cron job.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from minipaas.adapters import proc
from minipaas.errors import Conflict
from minipaas.state import perms
from minipaas.state.names import check_plain_path
from minipaas.state.settings import Settings

PROGRAM = "/usr/local/bin/minipaas"
UNIT_DIR = Path("/etc/systemd/system")
CRON_DIR = Path("/etc/cron.d")
SYSTEMD_RUNNING = Path("/run/systemd/system")
_HOME_LINE = re.compile(r"^(?:Environment=)?MINIPAAS_HOME=(\S+)$", re.M)


@dataclass(frozen=True)
class HostFile:
    path: Path
    text: str


def _home(settings: Settings) -> str:
    return check_plain_path(str(settings.home), what="MINIPAAS_HOME (named in the host's units)")


def units(settings: Settings, folder: Path | None = None, program: str = PROGRAM) -> list[HostFile]:
    """The systemd units of this instance: restore (wanted at boot and by docker.service), renew (+ its timer)."""
    home, name, folder = _home(settings), settings.host_files_name, folder or UNIT_DIR
    restore = f"""[Unit]
Description=minipaas ({home}): bring apps back after boot or a Docker engine restart
After=docker.service nginx.service
Requires=docker.service

[Service]
Type=oneshot
Environment=MINIPAAS_HOME={home}
ExecStart={program} ps:restore

[Install]
# Also wanted by docker.service: every (re)start of the engine, when container addresses may
# change, is followed by a restore that points the router at the new ones.
WantedBy=multi-user.target docker.service
"""
    # The services' scheduled backups first: a failed one (`-`) does not hold the renewal back.
    renew = f"""[Unit]
Description=minipaas ({home}): scheduled service backups, expired review apps, then renew Let's Encrypt certificates
After=network-online.target nginx.service
Wants=network-online.target

[Service]
Type=oneshot
Environment=MINIPAAS_HOME={home}
ExecStart=-{program} services:backup-due
ExecStart=-{program} review-apps:expire
ExecStart={program} letsencrypt:renew
"""
    timer = f"""[Unit]
Description=minipaas ({home}): renew Let's Encrypt certificates daily

[Timer]
OnCalendar=daily
Persistent=true
RandomizedDelaySec=1h

[Install]
WantedBy=timers.target
"""
    return [HostFile(folder / f"{name}-restore.service", restore), HostFile(folder / f"{name}-renew.service", renew),
            HostFile(folder / f"{name}-renew.timer", timer)]


def cron(settings: Settings, folder: Path | None = None, program: str = PROGRAM) -> HostFile:
    """On a host without systemd: the daily job as a cron file, at a time of its own (from the home)."""
    home, name, folder = _home(settings), settings.host_files_name, folder or CRON_DIR
    spread = int(hashlib.sha256(home.encode()).hexdigest(), 16)
    log = f"/var/log/{name}-renew.log"
    text = (f"# minipaas ({home}): scheduled service backups, expired review apps, then renew Let's Encrypt "
            "certificates daily\n"
            f"MINIPAAS_HOME={home}\n"
            f"{spread % 60} {spread // 60 % 24} * * * root {program} services:backup-due >>{log} 2>&1; "
            f"{program} review-apps:expire >>{log} 2>&1; {program} letsencrypt:renew >>{log} 2>&1\n")
    return HostFile(folder / f"{name}-renew", text)


def home_named(text: str) -> str | None:
    """The MINIPAAS_HOME a unit or cron file names (None: none, not one of ours)."""
    found = _HOME_LINE.search(text)
    return found.group(1) if found else None


def check(settings: Settings, *, unit_dir: Path | None = None, cron_dir: Path | None = None) -> None:
    """One line when a unit or cron file of this instance's name serves another home."""
    for wanted in [*units(settings, unit_dir), cron(settings, cron_dir)]:
        try:
            text = wanted.path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        other = home_named(text)
        if other is not None and other != str(settings.home):
            raise Conflict(f"{wanted.path} serves the minipaas instance at {other}: give this instance "
                           f"(MINIPAAS_HOME {settings.home}) another MINIPAAS_INSTANCE")


Run = Callable[[list[str]], object]


def install(settings: Settings, progress: Callable[[str], None], *, unit_dir: Path | None = None,
            cron_dir: Path | None = None, systemd: bool | None = None, run: Run | None = None) -> list[Path]:
    """Write this instance's units and enable them (or its cron job without systemd); the paths written."""
    check(settings, unit_dir=unit_dir, cron_dir=cron_dir)
    cron_dir = cron_dir or CRON_DIR
    if systemd is None:
        systemd = SYSTEMD_RUNNING.is_dir()
    runner: Run = run or (lambda argv: proc.run(argv, timeout=120))
    if systemd:
        files = units(settings, unit_dir)
        for file in files:
            perms.write_file(file.path, file.text.encode(), 0o644)
        restore, _renew, timer = (file.path.name for file in files)
        runner(["systemctl", "daemon-reload"])
        runner(["systemctl", "enable", restore])
        runner(["systemctl", "enable", "--now", timer])
        progress(f"-----> systemd: {restore} (boot, engine restarts) and {timer} (daily)")
        return [file.path for file in files]
    if cron_dir.is_dir():
        job = cron(settings, cron_dir)
        perms.write_file(job.path, job.text.encode(), 0o644)
        progress(f"-----> cron: {job.path} (daily); without systemd, run `minipaas ps:restore` after a boot")
        return [job.path]
    progress("       warning: neither systemd nor cron here: run `minipaas ps:restore` after a boot and "
             "`minipaas letsencrypt:renew` daily yourself")
    return []
