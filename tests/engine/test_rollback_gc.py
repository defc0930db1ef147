"""Rollback to earlier releases, and garbage collection with a retention of 5."""

from __future__ import annotations

import json
import time

from tests.helpers.host import APPS, Paas, commit, docker


def releases(paas: Paas, app: str) -> list[dict]:
    return json.loads(paas.run("releases", app, "--json").stdout)


def change(checkout, version: str) -> None:
    server = checkout / "server.js"
    server.write_text(server.read_text().replace(server.read_text().split('res.end("', 1)[1].split(" ", 1)[0],
                                                 version, 1))


def test_rollback_to_n_minus_2_restores_its_content_and_config(paas: Paas) -> None:
    app, checkout = paas.deploy(APPS / "env-echo")
    paas.run("settings:set", app, "drain-seconds", "0")
    paas.run("config:set", app, "GREETING=first")                  # release 2: v1 + first
    change(checkout, "v2")
    commit(checkout, "v2")
    paas.push(checkout)                                             # release 3: v2 + first
    paas.run("config:set", app, "GREETING=second")                 # release 4: v2 + second
    assert paas.get(app).body == "v2 second\n"
    out = paas.run("releases:rollback", app, "2").stdout
    assert "Rolling" in out and "Building" not in out               # no build
    assert paas.get(app).body == "v1 first\n"
    assert json.loads(paas.run("config", app, "--json").stdout) == {"GREETING": "first"}
    latest = releases(paas, app)[0]
    assert (latest["number"], latest["kind"], latest["status"], latest["message"]) == (5, "rollback", "live",
                                                                                       "rollback to 2")
    paas.run("releases:rollback", app)                              # default: the previous one (4)
    assert paas.get(app).body == "v2 second\n"
    for bad, words in [("99", "no release 99"), ("6", "live one already")]:
        result = paas.run("releases:rollback", app, bad, check=False)
        assert result.returncode == 1 and words in result.stderr


def test_static_site_rollback(paas: Paas) -> None:
    app, checkout = paas.deploy(APPS / "static-site")
    (checkout / "index.html").write_text("<h1>second</h1>")
    commit(checkout, "second")
    paas.push(checkout)
    paas.run("releases:rollback", app)
    assert "Static home" in paas.get(app).body


def test_thirty_deploys_keep_five_images_and_gc_dry_run_changes_nothing(paas: Paas) -> None:
    app, checkout = paas.deploy(APPS / "env-echo")
    paas.run("settings:set", app, "drain-seconds", "0")
    for n in range(29):
        change(checkout, f"v{n}")
        commit(checkout, f"deploy {n}")
        paas.push(checkout)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        images = docker("images", "-q", paas.repository(app)).split()
        if len(images) <= 5 and len(paas.containers()) == 1:
            break
        time.sleep(0.5)
    assert len(docker("images", "-q", paas.repository(app)).split()) <= 5
    assert docker("ps", "-a", "-q", "--filter", f"label=minipaas={paas.home}", "--filter", "status=exited") == ""
    assert paas.get(app).body == "v28 \n"
    before = sorted(docker("images", "-q", paas.repository(app)).split())
    paas.run("settings:set", app, "keep-releases", "2")  # now gc has something to say
    dry = paas.run("gc", "--dry-run").stdout
    assert dry.count("would remove image") == 3 and "would free" in dry
    assert sorted(docker("images", "-q", paas.repository(app)).split()) == before
    paas.run("settings:set", app, "keep-releases", "5")
    report = json.loads(paas.run("report", "--json").stdout)
    assert report[0]["app"] == app and report[0]["images"] <= 5
    # The five kept releases are still rollback-able.
    paas.run("releases:rollback", app, str(releases(paas, app)[4]["number"]))
    assert paas.get(app).body == "v24 \n"
    # `report` keeps the images' sizes with the images they were measured among: once a gc removed three, it says
    # two (measured again), and the same again from what it kept.
    paas.run("settings:set", app, "keep-releases", "2")
    paas.run("gc")
    after = json.loads(paas.run("report", "--json").stdout)
    assert after[0]["images"] == 2 and after[0]["image_bytes"] < report[0]["image_bytes"]
    assert json.loads(paas.run("report", "--json").stdout) == after
    assert (paas.home / "cache" / "image-sizes.json").is_file()
