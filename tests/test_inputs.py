"""Bad input of every kind: one clear line on stderr, exit 1, no traceback, nothing created."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import Paas

HOSTILE_NAMES = [
    "a;rm -rf /", "$(touch /tmp/pwned)", "`id`", "Hello", "a" * 64, "../etc", "x\ny", "app'", "a b", "", "9lives",
    "ends-",
]


def assert_one_line_error(result: subprocess.CompletedProcess[str], *, contains: str = "") -> None:
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert contains in lines[0]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_app_names_are_refused_and_nothing_is_created(paas: Paas, name: str) -> None:
    assert_one_line_error(paas.run("apps:create", name, check=False), contains="invalid app name")
    assert json.loads(paas.run("apps:list", "--json").stdout) == []
    assert list((paas.home / "repos").iterdir()) == []


def test_commands_on_an_unknown_app_say_so(paas: Paas) -> None:
    for args in (["config", "nope"], ["logs", "nope"], ["releases", "nope"], ["domains:add", "nope", "x.test"],
                 ["apps:destroy", "nope", "--force"], ["ps", "nope"]):
        assert_one_line_error(paas.run(*args, check=False), contains="does not exist")


def test_bad_config_keys_and_values_are_refused(paas: Paas) -> None:
    app = paas.new_app()
    for assignment, words in [("1ABC=x", "invalid config key"), ("A-B=x", "invalid config key"),
                              ("PORT=1", "set by minipaas"), ("NOEQUALS", "expected KEY=VALUE"),
                              ("=x", "invalid config key")]:
        assert_one_line_error(paas.run("config:set", app, assignment, check=False), contains=words)
    assert_one_line_error(paas.run("config:set", app, "BIG=" + "x" * 70_000, check=False), contains="longer than")
    assert json.loads(paas.run("config", app, "--json").stdout) == {}


def test_bad_domains_and_settings_are_refused(paas: Paas) -> None:
    app = paas.new_app()
    for domain in ("bad_domain!", "a-.test", "a" * 64 + ".test", "a..b", "x y"):
        assert_one_line_error(paas.run("domains:add", app, domain, check=False), contains="invalid domain")
    assert json.loads(paas.run("domains", app, "--json").stdout) == [f"{app}.paas.test"]
    assert_one_line_error(paas.run("settings:set", app, "memory", "lots", check=False), contains="invalid value")
    assert_one_line_error(paas.run("settings:set", app, "nope", "1", check=False), contains="unknown setting")
    assert_one_line_error(paas.run("settings:set", app, "deploy-branch", "../x", check=False))


def test_a_domain_belongs_to_one_app(paas: Paas) -> None:
    first, second = paas.new_app(), paas.new_app()
    paas.run("domains:add", first, "www.example.test")
    assert_one_line_error(paas.run("domains:add", second, "WWW.example.test", check=False), contains=first)


def test_non_utf8_and_huge_arguments(paas: Paas) -> None:
    raw = subprocess.run([sys.executable.encode(), b"-m", b"minipaas", b"apps:create", b"\xff\xfeapp"],
                         env=paas.env, capture_output=True)
    assert raw.returncode == 1 and b"Traceback" not in raw.stderr
    huge = paas.run("apps:create", "a" * 100_000, check=False)  # near the kernel limit for one argument
    assert_one_line_error(huge, contains="invalid app name")
    assert len(huge.stderr) < 300


def test_usage_errors_exit_2_without_traceback(paas: Paas) -> None:
    for args, words in [(["config:set"], "Missing argument"), (["no-such-command"], "No such command"),
                        (["apps:create", "-x"], "No such option")]:
        result = paas.run(*args, check=False)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and words in result.stderr, result.stderr
