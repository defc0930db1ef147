"""Property-based tests (Hypothesis) of what a command line brings in: the ssh command line (SSH_ORIGINAL_COMMAND,
its git repository paths, what the audit log keeps of it), app names, branch names and the review apps they make,
domains, config keys and values. Whatever a client sends: a refusal is one line (a MinipaasError, see
conftest.assert_one_line_refusal), nothing is parsed by a shell, a name that is accepted stands for a folder of
its own under the home, and accepted values round-trip. Pure functions and a throwaway SQLite home: no engine."""

from __future__ import annotations

import contextlib
import io
import random
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from minipaas.access import access, events
from minipaas.errors import MinipaasError
from minipaas.ssh import sshentry
from minipaas.state import config, names, store
from minipaas.state.host import Host
from minipaas.state.settings import load
from tests.helpers.host import assert_one_line_refusal

SOME = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ODD = ["\x00", "\t", "\n", "\r", "\x0b", "\x1b", "\x7f", "\x85", "\u00a0", "\u2028", "\ufeff", "é", "\u212a",
       "\u0130", "²", "\udcff"]


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Host]:
    """A home with its database and one app, `shop` (no engine, no nginx: what the parsers need)."""
    home = tmp_path_factory.mktemp("fuzz") / "home"
    home.mkdir(mode=0o700)
    one = Host(load({"MINIPAAS_HOME": str(home)}))
    with store.transaction(one.db) as db:
        db.execute("INSERT INTO apps (name, created_at, life) VALUES ('shop', 0, 'x')")
    yield one
    one.db.close()


def files_under(home: Path) -> set[str]:
    return {str(p.relative_to(home)) for p in home.rglob("*") if not p.name.startswith("minipaas.db")}


# -- the ssh command line ------------------------------------------------------------------------------------

SSH_WORDS = ["git-receive-pack", "git-upload-pack", "apps:list", "config:set", "ps", "shop", "'shop'", "'", '"',
             "\\", " ", "  ", "$(id)", "`id`", ";", "|", "&", "#", "~", "*", "=", "K=v", "--", "-a"]
# A curated alphabet, not st.text()'s default: that one needs Hypothesis' Unicode tables, built on a first run.
CHARACTERS = st.sampled_from([*"ab:-='\"\\ \t$`;|&#~*()<>!", *ODD, "\U0001f600", "\u0301"])
SSH_COMMAND = st.one_of(st.lists(st.sampled_from(SSH_WORDS + ODD), max_size=10).map("".join),
                        st.text(CHARACTERS, max_size=30))


@SOME
@given(SSH_COMMAND)
@example("x" * (sshentry.MAX_COMMAND + 1))
def test_an_ssh_command_line_is_one_line_or_words_that_round_trip_and_no_shell_sees(raw: str) -> None:
    try:
        argv = sshentry.parse_command(raw)
    except MinipaasError as refused:
        assert_one_line_refusal(refused)
        return
    assert all("\x00" not in word for word in argv)
    raw.encode("utf-8")  # what was accepted is valid UTF-8
    # The words are shlex's, never a shell's: quoted back, they read the same (no expansion, no command
    # substitution: `$(id)` stays the five characters it is, a word or part of one).
    assert sshentry.parse_command(shlex.join(argv)) == argv


REPO_PARTS = ["~/", "/", "shop", ".git", "..", ".", "a-b", "Shop", "-x", "a" * 63, "a" * 64, "\n", " ", "é",
              "%2e", "shop--topic", "x/y", "'"]  # no NUL: parse_command refuses it before
REPO_PATH = st.lists(st.sampled_from(REPO_PARTS), min_size=1, max_size=5).map("".join)


@SOME
@given(st.sampled_from(["git-upload-pack", "git-receive-pack"]), REPO_PATH, st.integers(0, 2))
@example("git-upload-pack", "a\nerror: forged", 0)
def test_a_git_repository_path_names_an_app_or_is_one_line_and_nothing_is_made(host: Host, command: str,
                                                                                path: str, extra: int) -> None:
    argv = [command, path, *["x"] * extra]
    match = sshentry.REPO_PATH.fullmatch(path) if extra == 0 else None
    app = match.group("app") if match else ""
    if match and names.APP_NAME.fullmatch(app):
        # A valid name: its repository is `repos/<app>.git` (a review app's, its parent's), in the home's folder
        # of repositories.
        repo = host.settings.repo_path(app)
        assert repo.parent == host.settings.repos_dir and repo.name == f"{names.parent_of(app) or app}.git"
        if command == "git-receive-pack" or app == "shop":
            return  # git's own program takes over (a first push creates the app): test_ssh.py pushes for real
    before = files_under(host.settings.home)
    errors = io.StringIO()
    access.act_as(access.Principal("alice", "admin", "SHA256:" + "A" * 43, frozenset()))
    try:
        with contextlib.redirect_stderr(errors):
            code = sshentry._git(host, access.current(), argv)
    finally:
        access.act_as(None)
    assert code == 1 and files_under(host.settings.home) == before
    lines = errors.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), errors.getvalue()


VALUES = st.text(st.sampled_from(["s", "3", "c", "r", "=", " ", "'", "-"]), min_size=1, max_size=6).map(
    lambda text: f"SECRET{text}")
CONFIG_ARGS = st.tuples(
    st.lists(st.tuples(st.sampled_from(["TOKEN", "A", "-K", "--secret", "app"]), VALUES), min_size=1, max_size=3),
    st.lists(st.sampled_from(["--no-restart", "--secret", "--public", "--", "shop", "-x"]), max_size=3))


@SOME
@given(CONFIG_ARGS, st.randoms(use_true_random=False))
def test_no_config_value_reaches_the_audit_log_wherever_it_stands(args: tuple[list[tuple[str, str]], list[str]],
                                                                  shuffle: random.Random) -> None:
    pairs, others = args
    argv = [*(f"{key}={value}" for key, value in pairs), *others, "shop"]
    shuffle.shuffle(argv)
    logged = shlex.join(events.redact(["config:set", *argv]))
    for _key, value in pairs:
        assert value not in logged, logged
    assert logged.startswith("config:set")


# -- app names, branches and review apps ---------------------------------------------------------------------

NAME = st.one_of(st.from_regex(r"[a-z][a-z0-9-]{0,70}", fullmatch=True),
                 st.lists(st.sampled_from(["a", "shop", "-", "--", "9", "A", "node", ".", "/", "..", "_", " ", *ODD]),
                          max_size=6).map("".join))


@SOME
@given(NAME)
def test_an_app_name_is_one_line_or_a_name_that_stands_for_folders_of_its_own(name: str) -> None:
    try:
        names.check_new_app(name)
    except MinipaasError as refused:
        assert_one_line_refusal(refused)
        return
    assert names.APP_NAME.fullmatch(name) and not name.endswith("-") and "--" not in name and name != "node"
    assert names.check_app(name) == name and names.review_parts(name) is None
    settings_ = load({"MINIPAAS_HOME": "/var/lib/minipaas"})
    assert settings_.repo_path(name) == Path("/var/lib/minipaas/repos") / f"{name}.git"
    assert settings_.image_repository(name) == f"minipaas/{name}" and settings_.app_network(name) == f"minipaas-{name}"


BRANCH = st.one_of(
    st.from_regex(r"[A-Za-z0-9._/-]{1,80}", fullmatch=True),
    st.lists(st.sampled_from(["feature", "/", "-", "_", ".", "Login", "x" * 70, "é", "ß", "\u212a", "日本",
                              "\U0001f600", "--", "..", "@{", "#1", "\udcff"]), min_size=1, max_size=6).map("".join))


@SOME
@given(st.from_regex(r"[a-z]([a-z0-9-]{0,61}[a-z0-9])?", fullmatch=True).filter(lambda n: "--" not in n), BRANCH,
       BRANCH)
def test_a_branch_gets_a_review_app_name_that_reads_back_and_differs_from_another_branchs(
        parent: str, branch: str, other: str) -> None:
    slug = names.branch_slug(branch)
    assert names.branch_slug(branch) == slug  # the same branch, the same review app
    for one in (slug, names.branch_slug(branch, distinct=True)):
        name = names.review_name(parent, one)
        assert names.check_app(name) == name and names.review_parts(name) == (parent, one)
        assert names.parent_of(name) == parent
        # One DNS label: `<slug>.<app>.<domain>` is a host name.
        assert names.check_hostname(f"{one}.{parent}.paas.test") == f"{one}.{parent}.paas.test"
    if branch != other:  # what new_name falls back to when the plain slug is taken: never another branch's
        assert names.branch_slug(branch, distinct=True) != names.branch_slug(other, distinct=True)


# -- domains -------------------------------------------------------------------------------------------------

DOMAIN = st.one_of(
    st.from_regex(r"([a-zA-Z0-9-]{1,64}\.){0,3}[a-zA-Z0-9-]{1,64}\.?", fullmatch=True),
    st.lists(st.sampled_from(["www", ".", "example", "test", "-", "a" * 63, "*", "_", " ", ";", "{", "}", "'", "/",
                              "..", "xn--", "1", *ODD]), max_size=8).map("".join))


@SOME
@given(DOMAIN)
@example("\u212a.test")  # KELVIN SIGN: lower() makes it `k`
def test_a_domain_is_one_line_or_a_lowercase_host_name_that_reads_back(domain: str) -> None:
    try:
        checked = names.check_domain(domain)
    except MinipaasError as refused:
        assert_one_line_refusal(refused)
        return
    assert checked == domain.lower().rstrip(".")  # what was asked for, in its one written form
    assert names.check_domain(checked) == checked and len(checked) <= 253
    assert all(label and len(label) <= 63 and not label.startswith("-") and not label.endswith("-")
               and all(c in "abcdefghijklmnopqrstuvwxyz0123456789-" for c in label) for label in checked.split("."))


# -- config keys and values ----------------------------------------------------------------------------------

ASSIGNMENT = st.tuples(
    st.one_of(st.from_regex(names.ENV_KEY, fullmatch=True), st.sampled_from(["", "1A", "A-B", "PORT", "a b", "é",
                                                                             "A" * 257, "K\n"])),
    st.sampled_from(["", "=", "=x", "=a=b", "=\x00", "=\n\n", "=é", "=\udcff", "=\ud800", "= spaced ", "=$(id)"]),
    st.text(CHARACTERS, max_size=10))


@SOME
@given(ASSIGNMENT)
@example(("K", "=\udcff", ""))  # a value that is no UTF-8: an argument the shell gave in another encoding
def test_a_config_assignment_is_one_line_or_a_key_and_value_stored_exactly(host: Host,
                                                                           parts: tuple[str, str, str]) -> None:
    text = "".join(parts)
    try:
        key, value = names.parse_assignment(text)
        config.set_many(host, "shop", {key: value})
    except MinipaasError as refused:
        assert_one_line_refusal(refused)
        return
    assert f"{key}={value}" == text and names.ENV_KEY.fullmatch(key) and key != "PORT"
    assert config.get_all(host, "shop")[key] == value  # stored and read back exactly
    assert "\x00" not in value and len(value.encode("utf-8")) <= names.MAX_CONFIG_VALUE
