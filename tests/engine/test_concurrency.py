"""Issue 20, concurrency: pushes to several apps at once and to one app at once, with `gc` and `ps:restore` beside
them. Every push deploys, or is told to wait and then deploys or is refused in one line; the final state is the
last push that deployed (its commit is the branch, the live release and what answers); nothing is left over on
the engine, on disk, in nginx's routing table or in the database (`leftovers`). And gc: `gc --dry-run` names what
the gcs then remove, also while the pushes' retirements run; a rejected push's image goes after the next deploy,
also a first success; `deploy APP` rolls out a config stored with `--no-restart`; `apps:destroy` leaves nothing
of the app's files in BuildKit's cache.

Real things only: pushes through the real hook, the real engine, nginx and its routing table, the SQLite store.
The 20-app version is bench/concurrent_pushes.py (docs/benchmarks.md)."""

from __future__ import annotations

import json
import re
import shutil
import uuid
from pathlib import Path

import pytest

from tests.helpers.concurrency import (
    MOVED,
    leftovers,
    minipaas_errors,
    retirements_done,
    retirers_done,
    settled,
    start_cli,
    start_push,
    wait_for,
    write_server,
)
from tests.helpers.host import APPS, Paas, commit, docker

pytestmark = pytest.mark.engine


def test_pushes_at_once_each_deploy_or_wait_and_nothing_is_left_over(paas: Paas) -> None:
    apps = [paas.new_app("c") for _ in range(5)]
    checkouts = []
    for app in apps:
        paas.run("settings:set", app, "drain-seconds", "1")
        checkout = paas.checkout(app, APPS / "env-echo")
        write_server(checkout, f"{app}-first")
        checkouts.append(checkout)

    # Five first pushes to five apps at once, a gc and a ps:restore beside them.
    started = [start_push(paas, c) for c in checkouts] + [start_cli(paas, "gc"), start_cli(paas, "ps:restore")]
    done = {run.name: run.finish() for run in started}
    for checkout, app in zip(checkouts, apps, strict=True):
        code, out = done[checkout.name]
        assert code == 0 and f"{app} release 1 is live" in out, out
    assert done["gc"][0] == 0, done["gc"][1]
    assert done["ps:restore"][0] == 0, done["ps:restore"][1]
    for app in apps:
        assert paas.get(app).body == f"{app}-first \n"

    # Three pushes to one app at once, each from its own clone of the same commit: one deploys; the others wait
    # for it, then are refused in one line (git would refuse their ref update after their deploy: the live
    # release would be a commit that the branch never names). A gc and a ps:restore beside them again.
    app, base = apps[0], checkouts[0]
    clones = []
    for n in range(3):
        clone = paas.work / f"{app}-clone{n}"
        shutil.copytree(base, clone)
        clones.append((clone, write_server(clone, f"take-{n}")))
    started = [start_push(paas, c) for c, _ in clones] + [start_cli(paas, "gc"), start_cli(paas, "ps:restore")]
    done = {run.name: run.finish() for run in started}
    deployed = [(clone, sha) for clone, sha in clones if done[clone.name][0] == 0]
    assert len(deployed) == 1, {c.name: done[c.name] for c, _ in clones}
    for clone, _sha in clones:
        code, out = done[clone.name]
        if code == 0:
            assert "release 2 is live" in out and minipaas_errors(out) == [], out
        else:
            assert "Waiting for another push to" in out, out
            errors = minipaas_errors(out)
            assert len(errors) == 1 and MOVED.fullmatch(errors[0]), out
            assert "Building" not in out and "is live" not in out, out
    assert done["gc"][0] == 0 and done["ps:restore"][0] == 0, (done["gc"], done["ps:restore"])

    # The final state is the push that deployed: the branch, the live release and what answers.
    _winner, sha = deployed[0]
    assert paas.repo_ref(app) == sha
    live = [r for r in json.loads(paas.run("releases", app, "--json").stdout) if r["status"] == "live"]
    assert [(r["number"], r["sha"]) for r in live] == [(2, sha)]
    assert paas.get(app).body == f"take-{clones.index(deployed[0])} \n"

    settled(paas)
    assert leftovers(paas) == []
    for other in apps[1:]:
        assert paas.get(other).body == f"{other}-first \n"


def release_images(paas: Paas, app: str) -> set[str]:
    return set(docker("images", "--format", "{{.Repository}}:{{.Tag}}", paas.repository(app)).split())


def gc_items(output: str) -> set[str]:
    """What a gc's lines name (`would remove X`, `removed X`, `will remove X when ...`), whichever verb."""
    items = set()
    for line in output.splitlines():
        match = re.match(r"\s+(?:would remove|removed|will remove) (.+?)(?: \(when its container retires\)| when "
                         r"its container retires)?$", line)
        if match:
            items.add(match.group(1))
    return items


def context_copies(name: str) -> list[Path]:
    """The copies of a file at the root of a build context that BuildKit keeps in the engine's storage (its
    `local source` snapshots hold the folder as it synced it; an image layer holds it where a COPY put it)."""
    root, driver = docker("info", "--format", "{{.DockerRootDir}} {{.Driver}}").split()
    assert driver == "overlay2", driver
    return list(Path(root, driver).glob(f"*/diff/{name}"))


def test_gc_dry_run_names_what_the_gcs_remove_while_retirements_run(paas: Paas) -> None:
    app = paas.new_app("g")
    paas.run("settings:set", app, "drain-seconds", "30")  # the three pushes and the gcs within it, under load too
    checkout = paas.checkout(app, APPS / "env-echo")
    # The whole commit goes into the image (BuildKit syncs only what a COPY takes): a file of it with a name of its
    # own shows where the engine keeps the app's files.
    (checkout / "Dockerfile").write_text('FROM minipaas/node:26\nCOPY . /srv/\nUSER node\n'
                                         'CMD ["node", "/srv/server.js"]\n')
    marker = f"source-{uuid.uuid4().hex[:8]}.txt"
    (checkout / marker).write_text("the app's source\n")

    # A rejected push leaves its image; the next deploy, the app's first success, has nothing to retire, and its
    # background gc collects that image all the same.
    (checkout / "server.js").write_text('console.error("boom"); process.exit(3);\n')
    commit(checkout, "crashes")
    paas.push(checkout, expect_ok=False)
    assert release_images(paas, app) == {paas.image(app, 1)}
    write_server(checkout, "v2")
    paas.push(checkout)
    wait_for(lambda: release_images(paas, app) == {paas.image(app, 2)}, "the rejected push's image collected", 30)

    # Three more pushes with keep-releases 2: releases 2 and 3 are dropped while their containers drain.
    paas.run("settings:set", app, "keep-releases", "2")
    for text in ("v3", "v4", "v5"):
        write_server(checkout, text)
        paas.push(checkout)
    dry = paas.run("gc", "--dry-run").stdout
    dry_app = paas.run("gc", app, "--dry-run").stdout
    real = paas.run("gc").stdout
    images = release_images(paas, app)
    # Read after the images: retirements still running now were running when the images were listed (in the other
    # order, a retirement that ended between the two reads removed its image: seen on a loaded machine).
    assert not retirements_done(paas), "the retirements ran before the gcs: raise drain-seconds"
    dropped = {f"image {paas.image(app, n)}" for n in (2, 3)}
    assert gc_items(dry) == gc_items(dry_app) == gc_items(real) == dropped, (dry, dry_app, real)
    assert images == {paas.image(app, n) for n in (2, 3, 4, 5)}  # draining: not yet
    # The background gc after the retirements removes exactly those.
    wait_for(lambda: retirements_done(paas) and retirers_done(paas), "the retirements and their gcs", 75)
    assert release_images(paas, app) == {paas.image(app, n) for n in (4, 5)}
    assert gc_items(paas.run("gc", "--dry-run").stdout) == set()
    assert paas.get(app).body == "v5 \n"

    # `deploy APP` rolls out the config stored with --no-restart (what `run` already sees).
    paas.run("config:set", app, "--no-restart", "GREETING=stored")
    assert paas.get(app).body == "v5 \n"
    assert paas.run("run", app, "--", "printenv", "GREETING").stdout.strip() == "stored"
    out = paas.run("deploy", app).stdout
    assert "with an older config; releasing it with the stored config" in out and "Building" not in out, out
    assert paas.get(app).body == "v5 stored\n"
    latest = json.loads(paas.run("releases", app, "--json").stdout)[0]
    assert (latest["kind"], latest["status"]) == ("config", "live")
    assert "already live as release" in paas.run("deploy", app).stdout  # now it is: nothing to do

    # apps:destroy leaves no copy of the app's context in BuildKit's cache (its layer cache is keyed by content,
    # shared by apps with the same steps: BuildKit's own gc drops it, see build/cacheclear.py).
    assert len(context_copies(marker)) == 1, "BuildKit keeps the context it synced last"
    out = paas.run("apps:destroy", app, "--force").stdout
    assert "emptied BuildKit's copy of" in out, out
    assert context_copies(marker) == []
    assert docker("images", "-q", paas.repository(app)) == ""
