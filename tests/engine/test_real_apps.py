"""Apps as their authors wrote them, pushed untouched: fixtures of our own making with every trait of
dokku's test apps (nodejs-express, checks-root, nodejs-worker) and of Heroku's getting-started app. Yarn 4, Eleventy
and Vite apps have their own tests (test_package_managers.py, test_static_builds.py)."""

from __future__ import annotations

import json
import time

from tests.helpers.host import APPS, Paas, commit


def test_dokkus_nodejs_express_deploys_untouched_and_answers_as_on_dokku(paas: Paas) -> None:
    app = paas.new_app("express")
    output = paas.push(paas.checkout(app, APPS / "dokku-nodejs-express")).stderr
    assert paas.get(app).body == "nodejs/express"  # dokku's check_deploy
    assert paas.get(app, "/version").body.startswith("v18.")  # engines.node 18.x.x
    assert "passed: check-1 (GET / containing 'nodejs/express')" in output  # app.json's healthcheck
    assert "Running the release command: touch /app/release.test" in output  # it wrote into /app
    processes = json.loads(paas.run("ps", app, "--json").stdout)
    assert [p["process"] for p in processes] == ["web"]  # cron, worker, custom: 0, as on dokku and Heroku
    assert paas.run("ps:scale", app).stdout.split() == ["web=1", "cron=0", "custom=0", "worker=0"]


def test_dokkus_checks_root_is_rejected_as_on_dokku_and_deploys_once_its_root_answers(paas: Paas) -> None:
    app = paas.new_app("checks")
    checkout = paas.checkout(app, APPS / "dokku-checks-root")
    rejected = paas.push(checkout, expect_ok=False).stderr
    # dokku's CI pushes checks-root expecting the push to fail: / answers 404 to app.json's startup check.
    assert "did not pass check-1 (GET /) in 3 attempts (last: HTTP 404)" in rejected, rejected
    assert "push rejected; nothing was deployed" in rejected
    paas.run("config:set", app, "ROOT_STATUS=200", "--no-restart")
    paas.run("deploy", app)  # the rejected push's commit, again
    assert paas.get(app).body == "node v20.17.0\n"  # .node-version


def test_dokkus_nodejs_worker_runs_its_worker_alone_on_node_4_as_app_json_says(paas: Paas) -> None:
    app = paas.new_app("worker")
    checkout = paas.checkout(app, APPS / "dokku-nodejs-worker")
    output = paas.push(checkout).stderr
    # app.json's formation: web 0, worker 1. No web process: no health check, and the app says so.
    assert f"release 1 is live with no web process (worker=1; `ps:scale {app} web=1` would serve it)" in output
    assert [p["process"] for p in json.loads(paas.run("ps", app, "--json").stdout)] == ["worker"]
    assert paas.run("ps:scale", app).stdout.split() == ["web=0", "worker=1"]
    # Node 4.2 with an npm that runs on it (npm 5 refuses Node 4 before 4.7).
    assert "worker on node v4.2." in paas.run("logs", app, "-n", "20").stdout
    assert paas.get(app).status == 503
    # ps:scale wins over app.json from then on, also across deploys.
    paas.run("settings:set", app, "drain-seconds", "0")
    paas.run("ps:scale", app, "worker=0")
    (checkout / "worker.js").write_text((checkout / "worker.js").read_text().replace("tick", "tock"))
    commit(checkout, "a new release")
    assert "release 2 is live with no web process (nothing runs;" in paas.push(checkout).stderr
    deadline = time.monotonic() + 30
    while json.loads(paas.run("ps", app, "--json").stdout) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert json.loads(paas.run("ps", app, "--json").stdout) == []
    package = json.loads((checkout / "app.json").read_text())
    package["formation"]["worker"]["quantity"] = "many"
    (checkout / "app.json").write_text(json.dumps(package))
    commit(checkout, "a formation that is no number")
    rejected = paas.push(checkout, expect_ok=False).stderr
    assert "app.json formation.worker.quantity must be a number from 0 to 20" in rejected, rejected


def test_herokus_getting_started_deploys_untouched(paas: Paas) -> None:
    app = paas.new_app("gs")
    checkout = paas.checkout(app, APPS / "getting-started")
    paas.push(checkout)
    page = paas.get(app)
    assert page.status == 200 and "<h1>Getting started with Node.js on minipaas</h1>" in page.body
    assert "Running on Node v26." in page.body
    css = paas.get(app, "/stylesheets/main.css")
    assert css.status == 200 and "#430098" in css.body
    paas.run("config:set", app, "TIMES=3")
    assert paas.get(app, "/times").body == "0 1 2"
    # A change of one view goes live on the next push.
    view = checkout / "views" / "pages" / "index.ejs"
    view.write_text(view.read_text().replace("Getting started with", "Still getting started with"))
    commit(checkout, "a new heading")
    paas.push(checkout)
    assert "<h1>Still getting started with Node.js on minipaas</h1>" in paas.get(app).body
