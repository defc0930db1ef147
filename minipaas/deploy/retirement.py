"""Retirement: old containers stopped and removed after their drain delay (in a background
`minipaas retire`), and the repair of what a crashed deploy left (`reconcile`)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable

from minipaas.deploy import placement
from minipaas.errors import EngineError
from minipaas.state import releaselog, store
from minipaas.state.host import Host

Progress = Callable[[str], None]


def spawn_retirer(host: Host, app: str) -> None:
    """Retire old containers after their drain delay without holding up the push."""
    host.settings.logs_dir.mkdir(parents=True, exist_ok=True)
    with open(host.settings.logs_dir / "retire.log", "ab") as log:
        subprocess.Popen(
            [sys.executable, "-m", "minipaas", "retire", app],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
            env={**os.environ, "MINIPAAS_HOME": str(host.settings.home)},
        )


# A retirement this late was left by a retirer that died (a reboot, a kill): the next deploy does it.
ORPHANED_AFTER = 60.0


# How long a waiting retirer waits for an engine that went away (a restart) before leaving it to the next deploy.
ENGINE_WAIT = 30 * 60


def retire(host: Host, app: str, *, wait: bool, overdue_by: float = 0.0) -> list[str]:
    """Stop and remove the app's containers whose drain delay is over (waiting for it, and for an engine that
    restarts meanwhile, if `wait`)."""
    done = []
    give_up = time.monotonic() + ENGINE_WAIT
    while True:
        rows = host.db.execute("SELECT container, not_before FROM retirements WHERE app = ? ORDER BY not_before",
                               (app,)).fetchall()
        if not rows:
            return done
        due = [row["container"] for row in rows if row["not_before"] + overdue_by <= store.now()]
        if not due:
            if not wait:
                return done
            time.sleep(max(0.05, rows[0]["not_before"] - store.now()))
            continue
        for container in due:
            try:
                placement.remove_retired(container)
            except EngineError:
                if not wait or time.monotonic() > give_up:
                    raise
                time.sleep(1)  # the engine restarts (it stopped the container): removed once it answers
                break
            with store.transaction(host.db) as db:
                db.execute("DELETE FROM retirements WHERE container = ?", (container,))
            done.append(container)


def reconcile(host: Host, app: str) -> None:
    """Repair what a crashed deploy may have left: overdue retirements, stray containers.

    Runs under the app's lock, so no other deploy of this app is creating containers now.
    """
    # Only what no background retirer is handling any more: a deploy never waits on a slow SIGTERM.
    retire(host, app, wait=False, overdue_by=ORPHANED_AFTER)
    current = releaselog.live(host, app)
    # Containers here, or a cluster's services (of a pending release, or of one whose retirer died).
    placement.for_host(host, app).remove_strays(current.number if current else None,
                                                set(releaselog.retiring(host, app)))
    with store.transaction(host.db) as db:
        db.execute("UPDATE releases SET status = 'failed', message = 'interrupted' "
                   "WHERE app = ? AND status = 'pending'", (app,))
