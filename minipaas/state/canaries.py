"""Canary releases in the store: which release of an app takes a share of its traffic beside the live one, how big
that share is now, and where it stands in its steps (`canary-steps`). Records only; starting, promoting and
aborting a canary is deploy/canary.py's.

The canary release itself is in the release log with status `canary` (not `live`: the live release is still the
stable one, the one rollbacks, `ps:restore` and gc count from) until it is promoted (`live`) or aborted (`failed`).
"""

from __future__ import annotations

from dataclasses import dataclass

from minipaas.state import store
from minipaas.state.host import Host
from minipaas.state.releaselog import make_live, schedule_retirement


@dataclass(frozen=True)
class Canary:
    app: str
    release: int  # the canary
    stable: int  # the live release beside it
    weight: int  # the canary's share of new clients now, in percent
    steps: tuple[int, ...]  # the shares it goes through; the last is 100 when it promotes itself, else manual
    step: int  # the index in `steps` of the share it has now
    started_at: float
    step_started_at: float
    started_by: str

    @property
    def automatic(self) -> bool:
        """Whether it moves on by itself (`canary-steps` ending at 100), or waits for `releases:promote`."""
        return len(self.steps) > 1 or self.steps[-1] == 100

    def as_dict(self) -> dict[str, object]:
        return {**self.__dict__, "steps": list(self.steps), "automatic": self.automatic}


def _canary(row: object) -> Canary:
    r = dict(row)  # type: ignore[call-overload]
    return Canary(app=r["app"], release=r["release"], stable=r["stable"], weight=r["weight"],
                  steps=tuple(int(s) for s in r["steps"].split(",")), step=r["step"], started_at=r["started_at"],
                  step_started_at=r["step_started_at"], started_by=r["started_by"])


def of(host: Host, app: str) -> Canary | None:
    row = host.db.execute("SELECT * FROM canaries WHERE app = ?", (app,)).fetchone()
    return _canary(row) if row else None


def every(host: Host) -> list[Canary]:
    return [_canary(row) for row in host.db.execute("SELECT * FROM canaries ORDER BY app")]


def record(host: Host, app: str, *, release: int, stable: int, steps: tuple[int, ...], by: str) -> Canary:
    """The release becomes the app's canary at its first step (in one transaction with its status)."""
    now = store.now()
    with store.transaction(host.db) as db:
        db.execute("UPDATE releases SET status = 'canary', finished_at = ? WHERE app = ? AND number = ?",
                   (now, app, release))
        db.execute("INSERT OR REPLACE INTO canaries (app, release, stable, weight, steps, step, started_at, "
                   "step_started_at, started_by) VALUES (?, ?, ?, ?, ?, 0, ?, ?, ?)",
                   (app, release, stable, steps[0], ",".join(map(str, steps)), now, now, by))
    found = of(host, app)
    assert found is not None
    return found


def advance(host: Host, app: str, *, step: int, weight: int) -> None:
    """The canary's next share, from now."""
    with store.transaction(host.db) as db:
        db.execute("UPDATE canaries SET step = ?, weight = ?, step_started_at = ? WHERE app = ?",
                   (step, weight, store.now(), app))


def promoted(host: Host, app: str, release: int, *, retiring: list[str], drain: int) -> None:
    """The canary is the live release; the stable one's containers drain and retire (one transaction)."""
    with store.transaction(host.db) as db:
        make_live(db, app, release)
        db.execute("DELETE FROM canaries WHERE app = ?", (app,))
        schedule_retirement(db, app, retiring, drain)


def aborted(host: Host, app: str, release: int, *, message: str, retiring: list[str], drain: int) -> None:
    """The canary failed (`message` says why); its containers drain and retire (one transaction)."""
    with store.transaction(host.db) as db:
        db.execute("UPDATE releases SET status = 'failed', message = ?, finished_at = ? WHERE app = ? AND number = ?",
                   (message, store.now(), app, release))
        db.execute("DELETE FROM canaries WHERE app = ?", (app,))
        schedule_retirement(db, app, retiring, drain)

