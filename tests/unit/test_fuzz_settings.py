"""Property-based tests (Hypothesis) of settings values: every app setting (`settings:set`, state/apps.py
SETTINGS), a service's limits (state/services.py) and the host's settings (MINIPAAS_* and settings.toml,
state/settings.py). Whatever an admin types: a refusal is one line, and a value that is accepted means what it
says where it is used (a number of seconds is ASCII digits, a CPU limit a positive finite number the engine and
the kernel can take, a branch a ref git can have, a review URL a template that renders). Pure functions and a
throwaway SQLite home: no engine."""

from __future__ import annotations

import ipaddress
import math
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import tomli_w
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from minipaas.adapters import buildcgroups
from minipaas.errors import MinipaasError
from minipaas.state import apps, names, services, store
from minipaas.state.host import Host
from minipaas.state.settings import _FIELDS, INSTANCE_NAME, SETTINGS_FILE, load
from tests.helpers.host import assert_one_line_refusal

SOME = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

TOKENS = ["0", "1", "5", "16", "60", "512", "3600", "100000", "²", "١", "٣٦٠٠", "007", ".", "0.5", "0.01", "0.001",
          "0.0000000001", "1" * 400, "k", "m", "g", "K", "G", "512m", "1g", "32m", "on", "off", "review-only",
          "sanitize", "escape", "/", "/health", "?x=1", "%20", "é", "a b", "..", "main", "feature/x", ".x", "a.lock",
          "{slug}", "{app}", "{domain}", "{slug.x}", "{app[x]}", "{app.__class__}", "{slug!r}", "{slug:.4}",
          "{0}", "{", "}", "node:*-slim", "*", "skip-tests", "no-cache", ",", " ", "\n", "\x00", "-", "\x1b"]
VALUE = st.one_of(st.sampled_from(TOKENS), st.lists(st.sampled_from(TOKENS), max_size=4).map("".join))
ON_OFF = ["on", "off"]
CHOICES = {"read-only": ON_OFF, "hsts": ON_OFF, "letsencrypt": ON_OFF, "review-apps": ON_OFF,
           "markdown-html": ["sanitize", "escape", "on", "off"], "tests": ["on", "off", "review-only"]}
TEMPLATE = st.lists(st.sampled_from(["{slug}", "{slug}", "{app}", "{domain}", "review", "x-{slug}", "{app}-{slug}",
                                     "{slug:.4}", "{app.x}", "{{x}}", "{slug!s}", "{0}", "a/b", ""]),
                    min_size=1, max_size=4).map(".".join)
LIKELY = {
    "memory": st.one_of(st.from_regex(r"[1-9][0-9]{0,4}[kmg]", fullmatch=True),
                        st.from_regex(r"[0-9]{1,6}[kmgKM]?", fullmatch=True)),
    "cpus": st.one_of(st.decimals(0, 2000, places=2).map(str), st.decimals(0, 2, places=12).map(str),
                      st.from_regex(r"[0-9]{1,5}(\.[0-9]{1,11})?", fullmatch=True)),
    "healthcheck-path": st.from_regex(r"/[ -~]{0,10}", fullmatch=True),
    "deploy-branch": st.from_regex(r"[A-Za-z0-9._/-]{1,12}", fullmatch=True),
    "review-url": TEMPLATE,
    "build-images": st.from_regex(r"[a-z0-9.*:/@?\[\]-]{1,12}([ ,][a-z:*-]{1,6})?", fullmatch=True),
    "deployer-push-options": st.lists(st.sampled_from(["skip-tests", "no-cache", "verbose", " ", ","]),
                                      max_size=4).map("".join),
}


def likely_value(key: str) -> st.SearchStrategy[str]:
    """Values of the setting's own shape (numbers, sizes, paths, templates), near misses included."""
    if key in CHOICES:
        return st.sampled_from([*CHOICES[key], "On", "", "yes"])
    if apps.SETTINGS[key].default.isdigit():
        return st.one_of(st.integers(0, 40).map(str), st.integers(0, 200_000).map(str),
                         st.from_regex(r"0[0-9]{1,4}", fullmatch=True))
    for kind in ("memory", "cpus"):
        if key.endswith(kind):
            return LIKELY[kind]
    return LIKELY.get(key, st.from_regex(r"[A-Za-z0-9._/-]{1,12}", fullmatch=True))


# Made once: a strategy made in a flatmap is made again for every example.
SHAPED = {key: st.one_of(likely_value(key), likely_value(key), VALUE) for key in apps.SETTINGS}
SETTING = st.sampled_from(sorted(apps.SETTINGS)).flatmap(lambda key: st.tuples(st.just(key), SHAPED[key]))


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Host]:
    home = tmp_path_factory.mktemp("fuzz-settings") / "home"
    home.mkdir(mode=0o700)
    one = Host(load({"MINIPAAS_HOME": str(home)}))
    with store.transaction(one.db) as db:
        db.execute("INSERT INTO apps (name, created_at, life) VALUES ('shop', 0, 'x')")
        db.execute("INSERT INTO services (kind, name, version, password, created_at) "
                   "VALUES ('redis', 'cache', '7', 'p', 0)")
    yield one
    one.db.close()


def git_ref_is_valid(ref: str) -> bool:
    return subprocess.run(["git", "check-ref-format", ref], capture_output=True).returncode == 0


def assert_means_what_it_says(key: str, value: str) -> None:
    """Where an accepted value is used, it is used as what it says."""
    if apps.SETTINGS[key].default.isdigit():  # seconds, counts: int() of ASCII digits, as rendered and compared
        assert value.isascii() and value.isdigit() and str(int(value)) == value.lstrip("0").rjust(1, "0")
    elif key in ("memory", "build-memory"):  # the engine's minimum is 6 MiB
        assert buildcgroups.parse_size(value) >= 6 * 1024 * 1024
    elif key in ("cpus", "build-cpus") and value:
        cpus = float(value)  # the engine's NanoCpus and the kernel's cpu.max quota (at least 1 ms of 100 ms)
        assert math.isfinite(cpus) and int(cpus * 1e9) > 0 and int(cpus * buildcgroups.CPU_PERIOD) >= 1000
    elif key == "healthcheck-path":
        assert names.REQUEST_PATH.fullmatch(value)
    elif key == "deploy-branch" and value:
        assert git_ref_is_valid(f"refs/heads/{value}"), value
    elif key == "static-dir" and value:
        assert not value.startswith("/") and not {"", ".", ".."} & set(value.split("/"))
    elif key == "review-url":
        for slug, app, domain in (("a-b", "app", "example.com"), ("x" * 63, "shop", "paas.test")):
            assert apps.render_review_url(value, slug=slug, app=app, domain=domain)
    elif key == "deployer-push-options":
        assert apps.push_options_allowed(value) <= set(apps.PRIVILEGED_PUSH_OPTIONS)


@SOME
@given(SETTING)
@example(("pids", "²"))  # str.isdigit() takes it, int() does not
@example(("review-url", "{slug}.{app.x}"))
@example(("review-url", "{slug}.{app[x]}"))
@example(("cpus", "1" * 400))
@example(("cpus", "0.0000000001"))
@example(("memory", "1k"))
@example(("deploy-branch", "a.lock"))
@example(("static-dir", "."))  # the folder itself: the whole repository
@example(("static-dir", "public/./x"))
def test_an_app_setting_is_one_line_or_a_value_that_means_what_it_says(host: Host, setting: tuple[str, str]) -> None:
    key, value = setting
    try:
        apps.set_setting(host, "shop", key, value)
    except MinipaasError as refused:
        assert_one_line_refusal(refused)
        return
    stored = apps.get_setting(host, "shop", key)
    assert stored == apps.MARKDOWN_HTML_ALIASES.get(value, value) if key == "markdown-html" else stored == value
    assert_means_what_it_says(key, value)


@SOME
@given(st.sampled_from(sorted(services.SETTINGS)).flatmap(
    lambda key: st.tuples(st.just(key), SHAPED.get(key, SHAPED["build-pids"] if key == "backup-retention" else VALUE))))
@example(("pids", "²"))
def test_a_service_setting_is_one_line_or_a_value_that_means_what_it_says(host: Host,
                                                                         setting: tuple[str, str]) -> None:
    key, value = setting
    try:
        services.set_setting(host, "redis", "cache", key, value)
    except MinipaasError as refused:
        assert_one_line_refusal(refused)
        return
    assert services.get_setting(host, "redis", "cache", key) == value
    if key in ("pids", "backup-retention"):
        assert value.isascii() and value.isdigit()
    elif key == "memory":
        assert buildcgroups.parse_size(value) >= 6 * 1024 * 1024
    elif key == "cpus" and value:
        assert math.isfinite(float(value)) and int(float(value) * 1e9) > 0


HOST_VALUE = st.one_of(st.sampled_from(["", "80", "0", "65536", "²", "8080", "١", "private", "system", "buildkit",
                                        "buildkit:/usr/bin/docker", "buildx:docker", "10.0.0.0/8", "10.0.0.0/27",
                                        "::1/64", "paas.example.com", "Paas.Example.COM.", "a..b", "-a.b", "root",
                                        "no-such-account", "/etc/hostname", "relative/path", "mp-1", "Mp", "26"]),
                       st.text(st.sampled_from([*"ab1./:-_ ", "é", "\n", "\x1b", "\x7f", "\u2028"]), max_size=12))


@SOME
@given(st.sampled_from(sorted(_FIELDS)), HOST_VALUE, st.booleans())
@example("http_port", "²", True)
@example("node_major", "\u0661", False)
def test_a_host_setting_is_one_line_or_a_value_that_means_what_it_says(tmp_path_factory: pytest.TempPathFactory,
                                                                       field: str, value: str, in_file: bool) -> None:
    home = tmp_path_factory.mktemp("host-settings")
    variable = _FIELDS[field][0]
    if in_file:  # settings.toml, as `init` writes it (TOML's escapes: any character may be in a value)
        (home / SETTINGS_FILE).write_text(tomli_w.dumps({field: value}), encoding="utf-8")
        env = {"MINIPAAS_HOME": str(home)}
    else:  # the environment cannot hold a NUL
        env = {"MINIPAAS_HOME": str(home), variable: value.replace("\x00", "")}
    try:
        loaded = load(env)
    except MinipaasError as refused:
        assert_one_line_refusal(refused)
        return
    assert 0 < loaded.http_port < 65536 and 0 < loaded.https_port < 65536 and 0 < loaded.node_major < 65536
    assert names.check_hostname(loaded.domain) == loaded.domain
    assert INSTANCE_NAME.fullmatch(loaded.instance)
    assert ipaddress.IPv4Network(loaded.subnets).prefixlen <= 26
    assert loaded.nginx in ("system", "private") and loaded.home == Path(home)
    assert loaded.host_cache.is_absolute() and loaded.docker_certs.is_absolute()
