"""app.json as dokku reads it, as text: healthchecks and formation (no engine needed)."""

from __future__ import annotations

import json
import re

import pytest

from minipaas.deploy.formation import MAX_SCALE, PROCESS_TYPE
from minipaas.errors import InvalidInput
from minipaas.source import appjson


def formation(data: object) -> dict[str, int]:
    return appjson.formation(json.dumps(data).encode(), process_type=PROCESS_TYPE, most=MAX_SCALE)


def test_formation_counts_per_process_type() -> None:
    assert formation({"formation": {"web": {"quantity": 0}, "worker": {"quantity": 2}}}) == {"web": 0, "worker": 2}
    assert formation({"formation": {"clock": {}}}) == {"clock": 1}  # Heroku's default quantity
    assert formation({"healthchecks": {}}) == {}
    assert formation({}) == {}


@pytest.mark.parametrize(("data", "message"), [
    ({"formation": []}, "formation in app.json must be an object of process types"),
    ({"formation": {"Web Server": {"quantity": 1}}}, "'Web Server' is not a process type name"),
    ({"formation": {"web": {"quantity": -1}}}, "formation.web.quantity must be a number from 0 to 20"),
    ({"formation": {"web": {"quantity": 21}}}, "formation.web.quantity must be a number from 0 to 20"),
    ({"formation": {"web": {"quantity": True}}}, "formation.web.quantity must be a number from 0 to 20"),
    ({"formation": {"web": 3}}, "formation.web.quantity must be a number from 0 to 20"),
    ([], "app.json must hold a JSON object"),
])
def test_a_bad_formation_is_one_line(data: object, message: str) -> None:
    with pytest.raises(InvalidInput, match=re.escape(message)):
        formation(data)


def test_healthchecks_and_formation_read_the_same_file() -> None:
    raw = json.dumps({"formation": {"web": {"quantity": 2}},
                      "healthchecks": {"web": [{"path": "/up", "content": "ok", "attempts": 2}]}}).encode()
    checks = appjson.parse(raw)
    assert checks is not None and [(c.path, c.content, c.attempts) for c in checks.run] == [("/up", "ok", 2)]
    assert appjson.formation(raw, process_type=PROCESS_TYPE, most=MAX_SCALE) == {"web": 2}
    with pytest.raises(InvalidInput, match=r"app\.json is not valid JSON"):
        appjson.formation(b"{", process_type=PROCESS_TYPE, most=MAX_SCALE)


@pytest.mark.parametrize(("raw", "message"), [
    (b"{", "app.json is not valid JSON"),
    (b"\xff\xfe{}", "app.json is not valid JSON"),
    (b'{"healthchecks": ' + b"[" * 100_000, "app.json is nested too deeply"),
    (b"[" * 100_000 + b"]" * 100_000, "app.json is nested too deeply"),
])
def test_odd_app_json_documents_are_one_line(raw: bytes, message: str) -> None:
    for read in (appjson.parse, lambda raw: appjson.formation(raw, process_type=PROCESS_TYPE, most=MAX_SCALE)):
        with pytest.raises(InvalidInput) as refused:
            read(raw)
        assert refused.value.message.startswith(message) and "\n" not in refused.value.message


@pytest.mark.parametrize("path", ["/caf\u00e9", "/a b", "/\x7f", "health", "/\u2028"])
def test_a_check_path_no_request_can_carry_is_one_line(path: str) -> None:
    raw = json.dumps({"healthchecks": {"web": [{"path": path}]}}).encode()
    with pytest.raises(InvalidInput) as refused:
        appjson.parse(raw)
    assert "path must" in refused.value.message
    assert "\n" not in refused.value.message and "\t" not in refused.value.message
    assert appjson.parse(json.dumps({"healthchecks": {"web": [{"path": "/caf%C3%A9?a=1"}]}}).encode()) is not None


def test_what_a_check_shows_on_the_push_is_one_line_whatever_it_holds() -> None:
    raw = json.dumps({"healthchecks": {"web": [{"command": ["sh", "-c", "true\n-----> Deployed\x1b[2J"]}]}}).encode()
    checks = appjson.parse(raw)
    assert checks is not None
    shown = checks.run[0].describe()
    assert "\n" not in shown and "\x1b" not in shown and "\\n-----> Deployed" in shown
    for check in ({"command": ["true\x00"]}, {"name": "a\x85b"}, {"content": "ok\u2028"}, {"name": "\x9b2J"}):
        with pytest.raises(InvalidInput) as refused:
            appjson.parse(json.dumps({"healthchecks": {"web": [check]}}).encode())
        assert "\n" not in refused.value.message


@pytest.mark.parametrize("arg", ["web=\u00b2", "web=\u0661", "web=" + "1" * 5000, "web=-1", "web=21", "web", "=1",
                                 "Web=1", "release=1"])
def test_a_ps_scale_count_is_ascii_digits_up_to_the_most_or_one_line(arg: str) -> None:
    from minipaas.deploy.formation import parse_changes

    with pytest.raises(InvalidInput) as refused:
        parse_changes([arg])
    assert "\n" not in refused.value.message
    assert parse_changes(["web=02", "worker=0"]) == {"web": 2, "worker": 0}
