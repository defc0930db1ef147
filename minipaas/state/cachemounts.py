"""The BuildKit cache mount ids each app's builds used, by the app's life (apps.life).

BuildKit lists its cache mounts without their ids, so minipaas keeps them: `apps:destroy` empties the ones of the
app's life, `gc` those of lives no app has any more (a destroy that did not get that far, an older version's).
The rows outlive the app on purpose (no foreign key): they are forgotten once emptied.
"""

from __future__ import annotations

from collections.abc import Iterable

from minipaas.state import store
from minipaas.state.host import Host


def record(host: Host, *, life: str, app: str, ids: Iterable[str]) -> None:
    with store.transaction(host.db) as db:
        db.executemany("INSERT OR IGNORE INTO cache_mounts (life, app, id) VALUES (?, ?, ?)",
                       [(life, app, one) for one in ids])


def of_life(host: Host, life: str) -> list[str]:
    return [row["id"] for row in host.db.execute("SELECT id FROM cache_mounts WHERE life = ? ORDER BY id", (life,))]


def forgotten(host: Host) -> dict[str, str]:
    """Lives whose app is gone (life -> the app's name then), with ids still kept."""
    rows = host.db.execute("SELECT DISTINCT life, app FROM cache_mounts WHERE life NOT IN (SELECT life FROM apps) "
                           "ORDER BY app")
    return {row["life"]: row["app"] for row in rows}


def forget(host: Host, life: str) -> None:
    with store.transaction(host.db) as db:
        db.execute("DELETE FROM cache_mounts WHERE life = ?", (life,))
