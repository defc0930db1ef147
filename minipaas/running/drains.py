"""Log drains applied: `logs:drain`, `logs:drains`, `logs:drain:remove`, and the shipper kept running.

A change is stored, the shipper's config rendered (access/drains.py `render`) and the shipper restarted on it
(adapters/rsyslog.py) before anything else. Only a change that switches the app's log driver (its first drain
added: json-file → syslog; its last removed: back) replaces the app's containers, as `ps:restart` does: through
the normal rollout, with no downtime. A second drain, or removing one of two, touches no container. Nothing of
this dials a drain: a drain that is down never fails a command, a start or a deploy.

The watcher keeps the shipper running (`follow`): after a reboot, and if it dies.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

from minipaas.access import drains as rules
from minipaas.adapters import rsyslog
from minipaas.errors import Conflict, EngineError, InvalidInput, MinipaasError, NotFound
from minipaas.state import apps, locks, releaselog
from minipaas.state import drains as records
from minipaas.state.host import Host
from minipaas.state.names import _show
from minipaas.state.settings import Settings

CHECK_SECONDS = 5


def listing(host: Host, app: str) -> list[str]:
    """The app's drains as they may be shown."""
    return [rules.shown(url) for url in records.of(host, app)]


def add(host: Host, app: str, url: str, progress: Callable[[str], None]) -> None:
    drain = rules.parse(url)
    before = records.of(host, app)
    if drain.url in before:
        raise Conflict(f"{app} drains to {_show(rules.shown(url))} already")
    if len(before) >= rules.MAX_DRAINS:
        raise InvalidInput(f"{app} has {rules.MAX_DRAINS} drains, the most it may have; remove one first")
    _change(host, app, before, [*before, drain.url], progress)
    progress(f"-----> {app}'s logs go to {rules.shown(url)} too")


def remove(host: Host, app: str, url: str, progress: Callable[[str], None]) -> None:
    before = records.of(host, app)
    if url not in before:
        raise NotFound(f"{app} has no drain {_show(rules.shown(url))} (see logs:drains {app})")
    _change(host, app, before, [u for u in before if u != url], progress)
    progress(f"-----> {app}'s logs no longer go to {rules.shown(url)}")


def _change(host: Host, app: str, before: list[str], after: list[str], progress: Callable[[str], None]) -> None:
    if not rsyslog.installed():
        raise EngineError(f"log drains need rsyslogd ({rsyslog.PROGRAM}): apt-get install rsyslog")
    records.store_urls(host, app, after)
    try:
        apply(host)
    except EngineError:
        records.store_urls(host, app, before)
        apply(host)
        raise
    if bool(before) != bool(after):
        try:
            _restart(host, app, progress)
        except MinipaasError:  # the live release kept its containers, and their driver: the change is undone
            records.store_urls(host, app, before)
            apply(host)
            raise


def _restart(host: Host, app: str, progress: Callable[[str], None]) -> None:
    """The app's containers again, with the log driver its drains now want."""
    from minipaas.deploy import rollout

    if releaselog.live(host, app) is None:
        progress(f"-----> {app} has no release yet: its first deploy logs this way")
        return
    if apps.is_stopped(host, app):
        # ps:start starts its stopped containers again, with the driver they were made with
        progress(f"-----> {app} is stopped: its next deploy or `ps:restart {app}` makes its containers log this way")
        return
    progress(f"-----> Restarting {app}'s containers with the {'syslog' if records.of(host, app) else 'json-file'} "
             "log driver")
    rollout.restart(host, app, progress)


def _paths(settings: Settings) -> tuple[Path, Path, Path]:
    folder = settings.layout.drains_dir
    return folder / "rsyslog.conf", settings.nginx_dir / "run" / "drains.pid", folder / "work"


def apply(host: Host) -> None:
    """The shipper on every app's drains now: rendered, checked by rsyslogd, restarted; stopped when none. One at
    a time per home (a command's change and the watcher's check would each start one)."""
    with locks.held(locks.instance_lock(host.settings, "drains.shipper")):
        _apply(host)


def _apply(host: Host) -> None:
    settings = host.settings
    config, pid_file, work = _paths(settings)
    wanted = records.every(host)
    rsyslog.stop(pid_file, config)
    if not wanted:
        return
    port = records.ensure_port(settings)
    work.mkdir(mode=0o700, parents=True, exist_ok=True)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    text = rules.render(port=port, work_dir=str(work),
                        drains={app: [rules.parse(url) for url in urls] for app, urls in wanted.items()})
    config.write_text(text)
    rsyslog.check(config)
    settings.logs_dir.mkdir(parents=True, exist_ok=True)
    rsyslog.start(config, pid_file, settings.logs_dir / "drains.log", port)


def ensure(host: Host) -> bool:
    """Started when drains want it and it does not run (after a reboot, or if it died). True when started."""
    config, pid_file, _ = _paths(host.settings)
    if rsyslog.running(pid_file, config) is not None or not records.every(host) or not rsyslog.installed():
        return False
    with locks.held(locks.instance_lock(host.settings, "drains.shipper")):
        if rsyslog.running(pid_file, config) is not None:
            return False
        _apply(host)
    return True


def follow(settings: Settings) -> None:
    """The watcher's thread: the shipper kept running while any app has drains."""
    host = Host(settings)
    while True:
        try:
            if ensure(host):
                print("watch: the log drains' shipper was not running; started", file=sys.stderr, flush=True)
        except Exception as exc:  # the next check tries again
            print(f"watch: log drains: {getattr(exc, 'message', exc)}", file=sys.stderr, flush=True)
        time.sleep(CHECK_SECONDS)
