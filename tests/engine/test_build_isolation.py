"""What is checked is what is built (issue 19, attacks 1-7), through the real hook with a deployer's key over the
real sshd: each attack that read another app's source or cache through a second reading of a Dockerfile fails,
and the honest variant still deploys. Attacks refused before any build are tried under both builders."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from minipaas.build import buildkit
from minipaas.state import locks
from tests.helpers.host import APPS, Paas, commit, docker
from tests.helpers.pushes import image_exists, pushed_error_lines
from tests.helpers.ssh_client import add_key, checkout_for, push
from tests.helpers.sshd import Sshd

VICTIM_SECRET = "victim-source-a8f3"  # in the victim's server.js: it must never reach the attacker's push


def use_builder(paas: Paas, kind: str) -> None:
    """The host's builder, also for pushes over ssh (whose environment is sshd's): `init` writes it down."""
    paas.env["MINIPAAS_BUILDER"] = kind
    paas.run("init")
    wanted = 'builder = "legacy"' if kind == "legacy" else 'builder = "buildkit:'
    assert wanted in (paas.home / "settings.toml").read_text()


@pytest.fixture(params=["legacy", "buildkit"])
def builder(request: pytest.FixtureRequest, paas: Paas) -> str:
    use_builder(paas, str(request.param))
    return str(request.param)


def victim(paas: Paas) -> tuple[str, str]:
    """An app of another tenant, live, whose source holds VICTIM_SECRET; its image."""
    app = paas.new_app("victim")
    checkout = paas.checkout(app, APPS / "dockerfile")
    (checkout / "server.js").write_text((checkout / "server.js").read_text() + f"// {VICTIM_SECRET}\n")
    commit(checkout, "the victim's secret source")
    paas.push(checkout)
    return app, paas.image(app, 1)


def attacker(paas: Paas, sshd: Sshd, source: Path = APPS / "dockerfile") -> tuple[str, Path]:
    add_key(paas, sshd, "ci", role="deployer")
    app = paas.new_app("attacker")
    paas.run("ssh-keys:grant", "ci", app)
    return app, checkout_for(paas, sshd, app, source=source)


def attack(paas: Paas, sshd: Sshd, checkout: Path, dockerfile: str, app: str) -> list[str]:
    """Push `dockerfile` as the deployer; the push must be refused before any build, with one line."""
    (checkout / "Dockerfile").write_text(dockerfile)
    commit(checkout, "attack")
    result = push(paas, sshd, checkout, "ci", ok=False)
    assert VICTIM_SECRET not in result.stdout + result.stderr
    assert paas.builder_log(app) == "" and not image_exists(paas.image(app, 1))
    return pushed_error_lines(result)


STEAL = "COPY --from={image} /srv /stolen\nRUN cat /stolen/server.js\n"


def test_attack_1_a_line_separator_in_a_comment_writes_no_instruction(paas: Paas, sshd: Sshd) -> None:
    _, image = victim(paas)
    app, checkout = attacker(paas, sshd)
    for separator in ("\f", "\v", "\r", "\x85", "\u2028", "\u2029", "\x1c", "\x1e"):
        text = f"FROM minipaas/node:26\n# tidy up{separator}{STEAL.format(image=image)}CMD [\"node\", \"-e\", \"1\"]\n"
        errors = attack(paas, sshd, checkout, text, app)
        assert errors == [f"!     Dockerfile line 2: the character U+{ord(separator):04X} is not allowed (only tab "
                          "and newline among control characters and line separators)"], (separator, errors)


def test_the_honest_dockerfile_with_comments_deploys_under_both_builders(paas: Paas, sshd: Sshd, builder: str) -> None:
    app, checkout = attacker(paas, sshd)
    text = ("# An app with its own Dockerfile.\r\nFROM minipaas/node:26 AS base\r\n# syntax is just a word here\r\n"
            "WORKDIR /srv\r\nCOPY server.js \\\r\n  ./\r\nUSER node\r\nCMD [\"node\", \"server.js\"]\r\n")
    (checkout / "Dockerfile").write_text(text, newline="")
    commit(checkout, "comments, continuations and CRLF")
    push(paas, sshd, checkout, "ci")
    assert paas.get(app).body == "from my own Dockerfile\n"
    log = paas.builder_log(app)
    # The builder got the base image pinned to the id checked: an id (legacy), or a tag of it made for this build.
    base = docker("image", "inspect", "-f", "{{.Id}}", "minipaas/node:26").strip()
    if builder == "legacy":
        assert f"FROM {base} AS base" in log, log
    else:
        assert f"{paas.instance}/pin." in log and "FROM docker.io/minipaas/node:26" not in log, log
    assert docker("images", "-q", f"{paas.instance}/pin.*") == ""  # the pins went with the build


def test_attack_2_the_test_command_reaches_the_build_as_an_argument_only(paas: Paas, sshd: Sshd) -> None:
    _, image = victim(paas)
    app, checkout = attacker(paas, sshd, APPS / "tested")
    command = "node --test\f" + STEAL.format(image=image).replace("\n", "\f")
    (checkout / "app.json").write_text(json.dumps({"scripts": {"test": command}}))
    commit(checkout, "a test command with form feeds")
    result = push(paas, sshd, checkout, "ci", ok=False)
    output = result.stdout + result.stderr
    assert VICTIM_SECRET not in output and VICTIM_SECRET not in paas.builder_log(app)
    assert "tests failed" in output  # the shell ran the whole text as one command, which failed
    # No step of its own: the text is inside the test step's arguments only.
    assert not re.search(rf"(\] |Step \d+/\d+ : )COPY --from={re.escape(image)}", paas.builder_log(app))
    # The honest variant: app.json's test command runs.
    (checkout / "app.json").write_text(json.dumps({"scripts": {"test": "node --test && echo tested-by-app-json"}}))
    commit(checkout, "an honest test command")
    passed = push(paas, sshd, checkout, "ci")
    assert "-----> Running tests: node --test && echo tested-by-app-json" in passed.stderr
    assert "-----> Tests passed in " in passed.stderr


def cache_dockerfile(mount: str, script: str) -> str:
    return ("FROM minipaas/node:26\nWORKDIR /srv\nCOPY server.js .\n"
            f"RUN {mount} sh -c '{script}'\nUSER node\nCMD [\"node\", \"server.js\"]\n")


def test_attack_3_a_cache_id_in_any_spelling_stays_in_the_apps_namespace(paas: Paas, sshd: Sshd) -> None:
    paas.env["MINIPAAS_BUILDER"] = "buildkit"
    target, planted = "/cache", "planted-by-attacker"
    victim_app = paas.new_app("victim")
    checkout = paas.checkout(victim_app, APPS / "dockerfile")
    (checkout / "Dockerfile").write_text(cache_dockerfile(
        f"--mount=type=cache,id=npm,target={target}",
        f"ls {target}; echo {VICTIM_SECRET} > {target}/secret-tarball"))
    commit(checkout, "a cache")
    paas.push(checkout)
    [victim_id] = victim_cache_ids(paas, victim_app)

    app, attacking = attacker(paas, sshd)
    for spelling in (f'id="{victim_id}"', f"ID={victim_id},type=CACHE", f"id={victim_id},sharing=shared"):
        mount = f"--mount=type=cache,{spelling},target={target}" if "type" not in spelling else f"--mount={spelling}," \
                f"target={target}"
        (attacking / "Dockerfile").write_text(cache_dockerfile(
            mount, f"cat {target}/secret-tarball || echo nothing-there; echo x > {target}/{planted}"))
        commit(attacking, f"read {spelling}")
        result = push(paas, sshd, attacking, "ci")
        assert VICTIM_SECRET not in result.stderr and VICTIM_SECRET not in paas.builder_log(app)
        assert "nothing-there" in result.stderr
    # What the attacker wrote never reaches the victim's cache; the victim's own cache still works (honest variant).
    (checkout / "server.js").write_text((checkout / "server.js").read_text() + "// again\n")
    commit(checkout, "again")
    again = paas.push(checkout)
    assert "secret-tarball" in again.stderr and planted not in again.stderr


def victim_cache_ids(paas: Paas, app: str) -> list[str]:
    import sqlite3

    with sqlite3.connect(paas.home / "minipaas.db") as db:
        return [row[0] for row in db.execute("SELECT id FROM cache_mounts WHERE app = ?", (app,))]


ATTACKS_4_5_6 = [
    ("# a=\u00a0\n# syntax={image}\nFROM minipaas/node:26\n", "Dockerfile line 2: `# syntax=` is not allowed"),
    ("FROM minipaas/node:26\nONBUILD COPY --from={image} /srv /stolen\n", "line 2: ONBUILD is not allowed"),
    ("FROM minipaas/node:26\nRUN <<\"#x\"\necho hi\n" + STEAL + "#x\n",
     "line 2: heredocs (`<<`) are not allowed in RUN"),
]


def test_attacks_4_5_6_directives_onbuild_and_heredocs_are_refused_under_both_builders(paas: Paas, sshd: Sshd) -> None:
    _, image = victim(paas)
    app, checkout = attacker(paas, sshd)
    for kind in ("legacy", "buildkit"):
        use_builder(paas, kind)
        for text, words in ATTACKS_4_5_6:
            errors = attack(paas, sshd, checkout, text.format(image=image), app)
            assert len(errors) == 1 and words in errors[0], (kind, errors)


def direct_build(dockerfile: str) -> str:
    """A BuildKit build run on the engine directly (as root, outside minipaas), in its turn with minipaas' builds
    (they share BuildKit's cgroup): the image id."""
    with locks.host_build_lock(lambda _line: None):
        return subprocess.run(["/usr/bin/docker", "build", "--progress=plain", "-q", "-"], input=dockerfile, text=True,
                              capture_output=True, env={"DOCKER_BUILDKIT": "1"}, check=True).stdout.strip()


def cache_holds(paas: Paas, cache_id: str) -> list[str]:
    """What a BuildKit cache mount of this id holds, read on the engine directly."""
    # Not --no-cache: BuildKit then mounts fresh, empty caches. A step of its own instead (the time).
    dockerfile = (f"FROM minipaas/node:26\nRUN --mount=type=cache,id={cache_id},target=/c "
                  f"ls -A /c > /listing; cat /listing # {time.time()}\n")
    image = direct_build(dockerfile)
    try:
        return docker("run", "--rm", image, "cat", "/listing").split()
    finally:
        subprocess.run(["docker", "rmi", image], capture_output=True)


def test_attack_7_caches_do_not_outlive_their_app(paas: Paas, sshd: Sshd) -> None:
    paas.env["MINIPAAS_BUILDER"] = "buildkit"
    app, checkout = attacker(paas, sshd)  # a deployer's app, with a cache
    (checkout / "Dockerfile").write_text(cache_dockerfile("--mount=type=cache,target=/cache",
                                                          f"ls /cache; echo {VICTIM_SECRET} > /cache/old-life"))
    commit(checkout, "a cache")
    push(paas, sshd, checkout, "ci")
    [old] = victim_cache_ids(paas, app)
    assert cache_holds(paas, old) == ["old-life"]

    paas.run("apps:destroy", app, "--force")
    assert cache_holds(paas, old) == []  # emptied by apps:destroy
    assert victim_cache_ids(paas, app) == []

    # The same name again, granted to the same deployer: its cache starts empty.
    paas.run("apps:create", app)
    paas.run("ssh-keys:grant", "ci", app)
    (checkout / "Dockerfile").write_text(cache_dockerfile("--mount=type=cache,target=/cache",
                                                          "ls /cache; cat /cache/old-life || echo empty-cache"))
    commit(checkout, "the new life reads")
    result = push(paas, sshd, checkout, "ci")
    assert "empty-cache" in result.stderr and VICTIM_SECRET not in result.stderr
    [new] = victim_cache_ids(paas, app)
    assert new != old


def test_gc_empties_the_caches_of_apps_gone_and_removes_leftover_pins(paas: Paas) -> None:
    import sqlite3

    paas.env["MINIPAAS_BUILDER"] = "buildkit"
    gone = f"{paas.instance}/gone-app/0badc0de/npm"
    docker("rmi", direct_build(f"FROM minipaas/node:26\nRUN --mount=type=cache,id={gone},target=/c touch /c/left "
                               f"# {time.time()}\n"))
    with sqlite3.connect(paas.home / "minipaas.db") as db:  # as a destroy that did not get to empty it leaves it
        db.execute("INSERT INTO cache_mounts (life, app, id) VALUES ('0badc0de', 'gone-app', ?)", (gone,))
    stale = f"{paas.instance}/pin.1000-abcd"
    docker("tag", "minipaas/node:26", f"{stale}:0")
    # The image-id folders of two builds: one killed three hours ago, one that runs now.
    killed, running = (Path(tempfile.mkdtemp(prefix=buildkit.TMP_PREFIX)) for _ in range(2))
    os.utime(killed, (time.time() - 3 * 3600,) * 2)
    try:
        dry = paas.run("gc", "--dry-run").stdout
        assert "would remove build caches of gone-app (destroyed)" in dry
        assert f"would remove tag {stale}:0 (a build's pin)" in dry
        assert f"would remove {killed} (a killed build's folder)" in dry and str(running) not in dry
        assert cache_holds(paas, gone) == ["left"] and image_exists(f"{stale}:0") and killed.exists()
        done = paas.run("gc").stdout
        assert "removed build caches of gone-app (destroyed)" in done
        assert cache_holds(paas, gone) == [] and not image_exists(f"{stale}:0")
        assert image_exists("minipaas/node:26")  # the pin was only a tag
        assert not killed.exists() and running.exists()
    finally:
        subprocess.run(["docker", "rmi", f"{stale}:0"], capture_output=True)
        shutil.rmtree(killed, ignore_errors=True)
        shutil.rmtree(running, ignore_errors=True)
