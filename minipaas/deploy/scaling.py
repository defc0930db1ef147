"""`ps:scale`: start what is missing, switch the route, retire the surplus after its drain delay."""

from __future__ import annotations

from collections.abc import Callable

from minipaas.adapters import engine
from minipaas.deploy import containers, formation, retirement
from minipaas.deploy.bringup import bring_up
from minipaas.errors import InvalidInput
from minipaas.state import apps, releaselog, store
from minipaas.state.host import Host
from minipaas.state.locks import app_lock
from minipaas.state.releaselog import Release

Progress = Callable[[str], None]


def scale(host: Host, app: str, args: list[str], progress: Progress) -> dict[str, int]:
    """`ps:scale APP web=3 worker=1`: start what is missing, switch, then retire the surplus (drained)."""
    changes = formation.parse_changes(args)
    with app_lock(host.settings, app, progress):
        current = releaselog.live(host, app)
        procs = formation.procfile(host, app, current.sha) if current else {}
        declared = formation.declared(host, app, current.sha) if current else {}
        before = formation.counts(host, app, procs, declared)
        unknown = sorted(set(changes) - set(before))
        if current is not None and unknown:
            raise InvalidInput(f"{app} has no process type {', '.join(unknown)} "
                               f"(its types: {', '.join(before)}; others come from the Procfile)")
        formation.store_counts(host, app, changes)
        wanted = formation.counts(host, app, procs, declared)
        if current is None or current.serving == "static":
            progress(f"-----> Stored: {_formation_text(wanted)}; it applies from the next deploy")
            return wanted
        try:
            _apply_scale(host, app, current, procs, wanted, progress)
        except BaseException:
            formation.store_counts(host, app, before)
            raise
        progress(f"=====> {app} runs {_formation_text(wanted)}")
        return wanted


def _formation_text(counts: dict[str, int]) -> str:
    return " ".join(f"{process}={count}" for process, count in counts.items())


def _apply_scale(host: Host, app: str, current: Release, procs: dict[str, str], wanted: dict[str, int],
                 progress: Progress) -> None:
    mine = [c for c in containers.app_containers(host, app) if c.labels.get(engine.RELEASE_LABEL) == str(current.number)
            and c.status == "running" and c.id not in releaselog.retiring(host, app)]
    port = containers.web_port(current.image)
    started: list[engine.Container] = []
    keep: list[engine.Container] = []
    surplus: list[engine.Container] = []
    try:
        for process, count in wanted.items():
            existing = sorted((c for c in mine if c.labels.get(engine.PROCESS_LABEL) == process),
                              key=lambda c: int(c.labels.get(engine.INDEX_LABEL, "1")))
            keep += existing[:count]
            surplus += existing[count:]
            used = {int(c.labels.get(engine.INDEX_LABEL, "1")) for c in existing}
            free = (i for i in range(1, 10 * formation.MAX_SCALE) if i not in used)
            for _ in range(count - len(existing)):
                started.append(formation.start(host, app, release=current.number, image=current.image, port=port,
                                               env=current.config,
                                               process=process, index=next(free), procs=procs, progress=progress))
        kept = {f"{c.ip}:{containers.container_port(c)}": c.id for c in keep
                if c.labels[engine.PROCESS_LABEL] == formation.WEB}
        bring_up(host, app, release=current.number, sha=current.sha, started=started, progress=progress, kept=kept)
    except BaseException:
        for container in started:
            engine.remove(container.id, timeout=0)
        raise
    if surplus:
        drain = int(apps.get_setting(host, app, "drain-seconds"))
        with store.transaction(host.db) as db:
            releaselog.schedule_retirement(db, app, [c.id for c in surplus], drain)
        progress(f"-----> Retiring {', '.join(c.name for c in surplus)} in {drain}s (in the background)")
        retirement.spawn_retirer(host, app)
