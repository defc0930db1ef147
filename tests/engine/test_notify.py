"""Notifications end to end (issue 25): a real host, real pushes, the real watcher sending to a receiver the test
runs on 127.0.0.1 (tests/helpers/receiver.py). One app serves every assertion: bad input is one line and adds
nothing; `notify:test` is delivered at once; its deploy reaches the notification of its app and events, through a
500 and the retry; a failing push is a `deploy-failed`; a web container killed behind minipaas' back is a `crash`,
in Slack's format; a notification of another app, or of other events, gets nothing; a receiver that is down changes
nothing for the push and shows in `notify:list`, whose URLs never show their secrets. (Parsing, matching, bodies:
tests/unit/test_notify_units.py.)"""

from __future__ import annotations

import json

from tests.helpers.faults import wait_for
from tests.helpers.host import EXAMPLE, Paas, commit, docker, free_port
from tests.helpers.receiver import receiver

SECRET = "s3cret-token"


def listing(paas: Paas) -> dict[str, dict]:
    return {n["name"]: n for n in json.loads(paas.run("notify:list", "--json").stdout)}


def test_notifications_from_a_real_host(paas: Paas) -> None:
    with receiver() as hooks:
        app = paas.new_app("n")
        other = paas.new_app("o")
        down = f"http://127.0.0.1:{free_port()}/down?token={SECRET}"
        paas.run("notify:add", "team", "webhook", hooks.url(f"/team?token={SECRET}"), "--app", app,
                 "--events", "deploy,deploy-failed")
        paas.run("notify:add", "chat", "slack", hooks.url(f"/services/T0/B0/{SECRET}"), "--events", "crash")
        paas.run("notify:add", "elsewhere", "webhook", hooks.url("/elsewhere"), "--app", other)
        paas.run("notify:add", "gone", "webhook", down, "--events", "deploy")

        # bad input: one line each, nothing added
        for bad in (["pager", "email", hooks.url("/x")], ["pager", "webhook", f"ftp://example.com/{SECRET}"],
                    ["pager", "webhook", hooks.url("/x"), "--events", "deploy,oops"],
                    ["pager", "webhook", f"http://192.0.2.1/{SECRET}"], ["Pager", "webhook", hooks.url("/x")]):
            refused = paas.run("notify:add", *bad, check=False)
            assert refused.returncode == 1 and len(refused.stderr.strip().splitlines()) == 1, refused
            assert refused.stderr.startswith("error: ") and SECRET not in refused.stderr
        assert sorted(listing(paas)) == ["chat", "elsewhere", "gone", "team"]

        # notify:test: sent before the command returns; a receiver that is down is one line
        paas.run("notify:test", "team")
        [test] = hooks.at(f"/team?token={SECRET}")
        assert (test["event"], test["app"]) == ("test", app)
        refused = paas.run("notify:test", "gone", check=False)
        assert refused.returncode == 1 and refused.stderr.startswith("error: gone: not delivered")
        assert len(refused.stderr.strip().splitlines()) == 1 and SECRET not in refused.stderr
        tested = listing(paas)["gone"]
        assert tested["failure"] == "Connection refused" and tested["waiting"] == 0

        # a deploy: the receiver answers 500 first, then takes the retry; the receiver that is down fails alone
        hooks.answers[f"/team?token={SECRET}"] = [500]
        checkout = paas.checkout(app, EXAMPLE)
        paas.push(checkout)
        deployed = hooks.wait(f"/team?token={SECRET}", lambda b: b["event"] == "deploy")
        assert (deployed["app"], deployed["release"]) == (app, 1) and "is live" in str(deployed["message"])
        assert [r.status for r in hooks.received if r.body.get("event") == "deploy"] == [500, 200]
        # the deploy's own failure to the receiver that is down (three tries, the first within a second or so)
        assert wait_for(lambda: listing(paas)["gone"]["failed_at"] > tested["failed_at"], 30)
        assert listing(paas)["gone"]["failure"] == "Connection refused"
        shown = paas.run("notify:list").stdout
        assert SECRET not in shown and "hooks" not in shown
        assert "http://127.0.0.1:" in shown and "HTTP 500" in shown  # team's last failure, before the retry

        # a push that fails: deploy-failed, with why
        (checkout / "package.json").write_text("{ not json")
        commit(checkout, "broken package.json")
        paas.push(checkout, expect_ok=False)
        failed = hooks.wait(f"/team?token={SECRET}", lambda b: b["event"] == "deploy-failed")
        assert failed["app"] == app and "push rejected" in str(failed["message"])

        # a web container killed behind minipaas' back: crash, in Slack's format, to the notification of crashes
        docker("kill", paas.container(f"{app}.web.1"))
        crashed = hooks.wait(f"/services/T0/B0/{SECRET}")
        assert set(crashed) == {"text"} and f"crash: {app} release 1" in str(crashed["text"])

        # the filters: no deploy reached the crash notification, nothing reached another app's
        assert [b for b in hooks.at(f"/services/T0/B0/{SECRET}") if "crash" not in str(b["text"])] == []
        assert hooks.at("/elsewhere", ok=False) == []
        assert [b["event"] for b in hooks.at(f"/team?token={SECRET}")] == ["test", "deploy", "deploy-failed"]
