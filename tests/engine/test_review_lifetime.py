"""Review apps that outlive their branch, through real pushes: one whose branch got no push for review-apps-ttl
and one whose branch was deleted behind minipaas' back (`git update-ref -d` on the host) are named by
`gc --dry-run`, then removed by `gc` with nothing left on the engine, on disk, in nginx or in the state."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import time

from tests.helpers.host import APPS, Paas, commit, docker, git


def leftovers(paas: Paas, review: str) -> list[str]:
    """Everything of the review app still on the engine, on disk and in the state."""
    found = [f"container {c}" for c in paas.container_names() if review in c]
    found += [f"image {line}" for line in docker("images", "--format", "{{.Repository}}:{{.Tag}}",
                                                 "--filter", f"label=minipaas.app={review}").split()]
    found += [f"network {n}" for n in docker("network", "ls", "--format", "{{.Name}}").split() if review in n]
    found += [f"file {p}" for p in paas.home.rglob(f"*{review}*") if "pushlog" not in p.parts
              and "logs" not in p.parts]
    with sqlite3.connect(paas.home / "minipaas.db") as db:
        for table, column in (("apps", "name"), ("domains", "app"), ("config", "app"), ("releases", "app"),
                              ("app_settings", "app")):
            if db.execute(f"SELECT 1 FROM {table} WHERE {column} = ?", (review,)).fetchone():
                found.append(f"row in {table}")
    return found


def said(paas: Paas, *args: str) -> str:
    result = paas.run(*args)
    return result.stdout + result.stderr


def test_a_stale_and_an_orphaned_review_app_are_removed_by_gc_with_nothing_left(paas: Paas) -> None:
    app, checkout = paas.deploy(APPS / "dockerfile")
    for branch in ("stale", "orphan", "fresh"):
        git(checkout, "checkout", "-q", "-B", branch, "master")
        commit(checkout, branch)
        paas.push(checkout, branch)
    stale, orphan, fresh = (f"{app}--{b}" for b in ("stale", "orphan", "fresh"))
    assert all(paas.get("", host=f"{b}.{app}.paas.test").status == 200 for b in ("stale", "orphan", "fresh"))
    paas.run("settings:set", app, "review-apps-ttl", "2d")
    with sqlite3.connect(paas.home / "minipaas.db") as db:  # as if its last push was three days ago
        db.execute("UPDATE apps SET pushed_at = ? WHERE name = ?", (time.time() - 3 * 86_400, stale))
    subprocess.run(["git", "--git-dir", str(paas.home / "repos" / f"{app}.git"), "update-ref", "-d",
                    "refs/heads/orphan"], check=True)

    dry = said(paas, "gc", "--dry-run")
    assert f"would remove review app {stale}: its branch stale got no push for 3.0 days (review-apps-ttl)" in dry, dry
    assert f"would remove review app {orphan}: its branch orphan is no longer in the repository" in dry, dry
    assert fresh not in dry
    # A dry run removes nothing.
    assert paas.get("", host=f"stale.{app}.paas.test").status == 200
    before = " ".join(leftovers(paas, orphan))
    assert "container" in before and "image" in before and "row in apps" in before and ".conf" in before, before

    done = said(paas, "gc")
    assert f"Removed review app {stale}" in done and f"Removed review app {orphan}" in done, done
    for review, branch in ((stale, "stale"), (orphan, "orphan")):
        assert leftovers(paas, review) == []
        assert not (paas.home / "nginx" / "sites" / f"{review}.conf").exists()
        assert paas.get("", host=f"{branch}.{app}.paas.test").status == 404
    assert paas.get("", host=f"fresh.{app}.paas.test").status == 200 and paas.get(app).status == 200
    events = json.loads(paas.run("events", app, "--json").stdout)
    outcomes = " ".join(str(e.get("outcome")) for e in events)
    assert f"review app {stale} removed" in outcomes and f"review app {orphan} removed" in outcomes, outcomes
    # The daily timer's command: nothing more to do.
    assert "0 review apps removed" in said(paas, "review-apps:expire")
