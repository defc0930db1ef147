"""letsencrypt:* for the dashboard (`@dashboard`), without an ACME server: which targets renew, and how each is
named (tests/engine/test_letsencrypt.py issues the dashboard's certificate from pebble)."""

from __future__ import annotations

import datetime
from types import SimpleNamespace

import pytest

from minipaas.routing import acme, proxy
from minipaas.state import apps
from tests.helpers.dashboard import Home, home  # noqa: F401 (the fixture)


def test_the_dashboard_is_renewed_while_letsencrypt_is_on_for_it(home: Home, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    host = home.host
    assert acme.renewed(host) == []
    apps.set_setting(host, "blog", "letsencrypt", "on")
    acme.disable(host, "shop")  # an app's off: its setting, as before (its review app's too)
    issued: list[str] = []
    expiry = datetime.datetime(2027, 3, 1, tzinfo=datetime.UTC)

    def issue(host: object, app: str, progress: object) -> SimpleNamespace:
        issued.append(app)
        return SimpleNamespace(not_after=expiry)

    monkeypatch.setattr(acme, "issue", issue)
    acme.enable(host, proxy.DASHBOARD_SITE, print)
    flag = acme.dashboard_flag(host.settings)
    assert flag.stat().st_mode & 0o777 == 0o600
    assert acme.renewed(host) == ["blog", proxy.DASHBOARD_SITE]
    assert apps.get_setting(host, "shop", "letsencrypt") == "off"  # no app's setting changed by the dashboard's
    said: list[str] = []
    results = acme.renew(host, said.append)
    assert [(r.app, r.outcome) for r in results] == [("blog", "renewed"), ("@dashboard", "renewed")]
    assert "-----> @dashboard: renewing (no certificate)" in said
    assert issued == [proxy.DASHBOARD_SITE, "blog", proxy.DASHBOARD_SITE]
    acme.disable(host, proxy.DASHBOARD_SITE)
    assert not flag.exists() and acme.renewed(host) == ["blog"]
    assert acme.label(proxy.DASHBOARD_SITE) == "@dashboard" and acme.label("shop") == "shop"


def test_the_cli_takes_at_dashboard_for_letsencrypt(home: Home, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    from click.testing import CliRunner

    from minipaas.cli import domains

    asked: list[str] = []
    monkeypatch.setattr(acme, "disable", lambda host, app: asked.append(app))
    for name, value in home.env.items():
        monkeypatch.setenv(name, value)
    runner = CliRunner()
    assert runner.invoke(domains.letsencrypt_disable, ["@dashboard"]).exit_code == 0
    assert runner.invoke(domains.letsencrypt_disable, ["shop"]).exit_code == 0
    refused = runner.invoke(domains.letsencrypt_disable, ["@other"])
    assert refused.exit_code != 0 and asked == [proxy.DASHBOARD_SITE, "shop"]
