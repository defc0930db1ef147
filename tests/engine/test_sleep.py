"""Apps that sleep when idle and wake at their first request, through real pushes, nginx and the watcher: a review
app whose parent says `review-apps-idle 3s` sleeps (no container, its route `sleep`, `ps` and `apps:list` say so;
the parent, `idle 0`, does not), ps:restore leaves it asleep,
20 requests at once wake it once and all get 200, `ps:start` wakes it by hand, and a wake whose image is gone
answers 503 saying why, as `ps` does."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from minipaas.state.settings import Settings, load
from tests.helpers.host import Paas, Response, commit, docker, git


def wait_until(condition: Callable[[], bool], what: str, deadline: float = 60) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"not within {deadline}s: {what}")


def sleeping(paas: Paas, app: str) -> bool:
    return any(row["name"] == app and row["sleeping"] for row in json.loads(paas.run("apps:list", "--json").stdout))


def app_containers(paas: Paas, app: str) -> list[str]:
    return docker("ps", "-a", "--filter", f"label=minipaas={paas.home}", "--filter", f"label=minipaas.app={app}",
                  "--format", "{{.Names}}").split()


def settings_of(paas: Paas) -> Settings:
    return load(paas.env)


def route_line(paas: Paas, app: str) -> str:
    routes = Path(settings_of(paas).nginx_dir) / "routes"
    return next((line for line in routes.read_text().splitlines() if line.split()[0] == app), "")


def watcher_log(paas: Paas) -> str:
    path = Path(settings_of(paas).logs_dir) / "watch.log"
    return path.read_text() if path.exists() else ""


def test_an_idle_review_app_sleeps_wakes_once_for_20_requests_and_says_why_a_wake_failed(paas: Paas) -> None:
    parent, checkout = paas.deploy()
    git(checkout, "checkout", "-q", "-b", "preview")
    commit(checkout, "a branch")
    paas.push(checkout, "preview")
    app, host = f"{parent}--preview", f"preview.{parent}.paas.test"

    def idle(value: str) -> None:  # the parent's setting is its review apps'
        paas.run("settings:set", parent, "review-apps-idle", value)

    def get() -> Response:
        return paas.get("", host=host)

    first = get()
    assert first.status == 200
    idle("3s")

    # Idle for 3 s: asleep, with no container left, its route `sleep`, and ps and apps:list say so; its parent, as
    # idle (`idle` 0, the default), is not.
    wait_until(lambda: sleeping(paas, app), f"{app} sleeps")
    wait_until(lambda: not app_containers(paas, app), f"{app}'s containers are removed")
    assert not sleeping(paas, parent) and app_containers(paas, parent)
    assert route_line(paas, app) == f"{app} sleep"
    assert "is sleeping (idle)" in paas.run("ps", app).stdout
    listed = paas.run("apps:list").stdout
    assert [line.split()[-1] for line in listed.splitlines() if line.split()[:1] == [app]] == ["sleeping"], listed
    # ps:restore does not wake it, nor take it for down.
    restored = paas.run("ps:restore")
    assert f"{app}: release 1 serving at no container: sleeping" in restored.stdout + restored.stderr
    assert not app_containers(paas, app) and route_line(paas, app) == f"{app} sleep"

    # 20 requests at once: all held, one wake, all answered by the app (which then stays awake a while: `idle 0`, so
    # that the checks below, each a CLI command, cannot race its next sleep).
    idle("0")
    woken_before = watcher_log(paas).count(f"{app}: awake")
    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(lambda _: get(), range(20)))
    assert [a.status for a in answers] == [200] * 20, [(a.status, a.body[:100]) for a in answers]
    assert all(a.body == first.body for a in answers)
    assert watcher_log(paas).count(f"{app}: awake") == woken_before + 1, watcher_log(paas)
    assert app_containers(paas, app) == [paas.container(f"{app}.web.1")]
    assert "is sleeping" not in paas.run("ps", app).stdout

    # Asleep again once idle; ps:start wakes it by hand.
    idle("3s")
    wait_until(lambda: sleeping(paas, app) and not app_containers(paas, app), f"{app} sleeps again")
    idle("0")
    started = paas.run("ps:start", app)
    assert not sleeping(paas, app), started.stdout
    assert get().status == 200

    # A wake whose image is gone: a 503 saying why, and ps says it too; the app stays asleep.
    idle("3s")
    wait_until(lambda: sleeping(paas, app) and not app_containers(paas, app), f"{app} sleeps a third time")
    docker("rmi", "-f", json.loads(paas.run("releases", app, "--json").stdout)[0]["image"])
    failed = get()
    assert failed.status == 503, failed
    assert "could not be woken" in failed.body and "image of release 1 is gone" in failed.body, failed.body
    shown = paas.run("ps", app).stdout
    assert "its last wake failed: the image of release 1 is gone" in shown, shown
    assert sleeping(paas, app) and not app_containers(paas, app)
