"""Log drains without an engine: which URLs are taken, how they are shown, the engine's log settings for an app
with drains, and the shipper's rsyslog.conf as text (rsyslogd itself checks the rendered text when installed)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from minipaas.access import drains
from minipaas.errors import InvalidInput, MinipaasError


def test_syslog_urls_are_taken() -> None:
    assert drains.parse("syslog+tcp://logs.example.com:6514") == drains.Drain(
        url="syslog+tcp://logs.example.com:6514", protocol="tcp", host="logs.example.com", port=6514)
    assert drains.parse("syslog+udp://10.0.0.5:514").protocol == "udp"
    assert drains.parse("syslog+tcp://[2001:db8::1]:514").host == "2001:db8::1"


@pytest.mark.parametrize(("url", "says"), [
    ("ftp://logs.example.com:21", "unknown drain URL scheme"),
    ("syslog://logs.example.com:514", "unknown drain URL scheme"),
    ("logs.example.com:514", "unknown drain URL scheme"),
    ("syslog+tcp://logs.example.com", "has no port"),
    ("syslog+tcp://logs.example.com:99999", "invalid drain URL"),
    ("syslog+tcp://logs.example.com:port", "invalid drain URL"),
    ("syslog+tcp://:514", "no host"),
    ("syslog+tcp://bad_host!:514", "no host"),
    ("syslog+tcp://logs.example.com:514/token", "HOST:PORT only"),
    ("syslog+tcp://user:pw@logs.example.com:514", "HOST:PORT only"),
    ("syslog+tcp://logs.example.com:514\nx", "one line"),
    ("https://logs.example.com/ingest?token=s3cret", "https drains are not supported yet"),
])
def test_bad_urls_are_one_line_without_their_secret(url: str, says: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        drains.parse(url)
    message = refused.value.message
    assert says in message and "\n" not in message
    assert "s3cret" not in message and "pw" not in message and "token" not in message


def test_a_url_is_shown_without_what_may_be_a_secret() -> None:
    assert drains.shown("syslog+tcp://logs.example.com:514") == "syslog+tcp://logs.example.com:514"
    assert drains.shown("https://user:pw@logs.example.com/ingest?token=s3cret") == "https://…@logs.example.com/…"


def test_an_app_with_drains_logs_to_the_local_shipper_over_udp() -> None:
    assert drains.log_config("shop", "worker", 12, 40123) == {"Type": "syslog", "Config": {
        "syslog-address": "udp://127.0.0.1:40123", "syslog-format": "rfc5424micro",
        "tag": "shop/worker/12/{{.ID}}"}}


def render() -> str:
    return drains.render(port=40123, work_dir="/home/mp/drains/work", drains={
        "shop": [drains.parse("syslog+tcp://logs.example.com:6514"), drains.parse("syslog+udp://10.0.0.5:514")],
        "blog": [drains.parse("syslog+tcp://10.0.0.6:514")]})


def test_the_shipper_config() -> None:
    text = render()
    assert 'input(type="imudp" address="127.0.0.1" port="40123" ruleset="minipaas_drains" rcvbufSize="16m")' in text
    assert 'global(workDirectory="/home/mp/drains/work"' in text
    # each app's records to its own drains only; `shop/` never matches a review app `shop--x/`
    blog, shop = text.index('if $app-name startswith "blog/"'), text.index('if $app-name startswith "shop/"')
    assert blog < text.index('target="10.0.0.6"') < shop < text.index('target="logs.example.com"')
    assert text.index('target="logs.example.com"') < text.index('target="10.0.0.5"')
    assert 'port="6514" protocol="tcp"' in text and 'port="514" protocol="udp"' in text
    # a queue per drain that drops rather than waits when full, and retries a drain that is down forever
    assert text.count('queue.type="LinkedList"') == 3 and text.count('queue.timeoutEnqueue="0"') == 3
    assert text.count('action.resumeRetryCount="-1"') == 3
    # the record: RFC 5424, APP-NAME the app, PROCID the process type, all four in structured data
    assert ('%HOSTNAME% %app-name:F,47:1% %app-name:F,47:2% - [minipaas@32473 app=\\"%app-name:F,47:1%\\" '
            'process=\\"%app-name:F,47:2%\\" release=\\"%app-name:F,47:3%\\" container=\\"%app-name:F,47:4%\\"] '
            '%msg%') in text


def test_no_drains_is_an_input_and_no_action() -> None:
    text = drains.render(port=40123, work_dir="/w", drains={})
    assert "omfwd" not in text and text.rstrip().endswith("}")


@pytest.mark.skipif(shutil.which("rsyslogd") is None and not Path("/usr/sbin/rsyslogd").exists(),
                    reason="rsyslog is not installed")
def test_rsyslogd_takes_the_rendered_config(tmp_path: Path) -> None:
    config = tmp_path / "rsyslog.conf"
    config.write_text(render().replace("/home/mp/drains/work", str(tmp_path)))
    checked = subprocess.run(["/usr/sbin/rsyslogd", "-N1", "-f", str(config)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr


def test_the_records_and_the_log_driver_they_choose(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from minipaas.deploy import formation
    from minipaas.running import drains as applied
    from minipaas.state import drains as records
    from tests.helpers.stores import store_host

    host = store_host(tmp_path, monkeypatch, "shop")
    assert records.of(host, "shop") == [] and records.every(host) == {}
    assert formation.log_config(host, "shop", "web", 1) is None  # no drains: the engine's default, json-file
    records.store_urls(host, "shop", ["syslog+tcp://10.0.0.6:514"])
    port = records.ensure_port(host.settings)
    assert records.ensure_port(host.settings) == port  # chosen once per home
    assert formation.log_config(host, "shop", "web", 3) == drains.log_config("shop", "web", 3, port)
    assert records.every(host) == {"shop": ["syslog+tcp://10.0.0.6:514"]}
    # refused before anything changes: a bad URL, the same drain twice, a drain that is not there
    for refused in (lambda: applied.add(host, "shop", "syslog+tcp://10.0.0.6", print),
                    lambda: applied.add(host, "shop", "syslog+tcp://10.0.0.6:514", print),
                    lambda: applied.remove(host, "shop", "syslog+tcp://10.0.0.7:514", print)):
        with pytest.raises(MinipaasError):
            refused()
    assert records.of(host, "shop") == ["syslog+tcp://10.0.0.6:514"]
    records.store_urls(host, "shop", [])
    assert records.every(host) == {} and formation.log_config(host, "shop", "web", 4) is None
