"""Instances on one host stay apart (issue 19, item 11), over the real sshd: keys of one name in two instances
each reach their own instance with their own role (the rest: tests/unit/test_instances.py)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from minipaas.access import keys
from tests.helpers.host import Paas, commit, paas_host
from tests.helpers.ssh_client import assert_refused, checkout_for, push
from tests.helpers.sshd import Sshd, serve_ssh, ssh_entry, sshd_server


def fingerprint(public: str) -> str:
    return keys.parse_public_key(public).fingerprint


def _names(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert result.returncode == 0, result.stderr
    return sorted(app["name"] for app in json.loads(result.stdout))



def _apps(paas: Paas) -> list[str]:
    return _names(paas.run("apps:list", "--json"))



@pytest.fixture
def two_instances(tmp_path: Path, engine_ready: None) -> Iterator[tuple[Paas, Paas, Sshd]]:
    with paas_host(tmp_path / "first") as first, paas_host(tmp_path / "second") as second, \
            sshd_server(tmp_path / "sshd") as server:
        for host in (first, second):
            serve_ssh(host, server)  # one ssh account's authorized_keys; the entry names no home (as sudo)
        yield first, second, server



def test_keys_of_one_name_in_two_instances_each_reach_their_own_with_their_own_role(
        two_instances: tuple[Paas, Paas, Sshd]) -> None:
    first, second, server = two_instances
    keys_file = server.dir / "authorized_keys"
    first_key = server.key("first-alice").with_suffix(".pub").read_text()
    second_key = server.key("second-alice").with_suffix(".pub").read_text()
    first.run("ssh-keys:add", "alice", "--role", "admin", input=first_key)
    second.run("ssh-keys:add", "alice", "--role", "deployer", input=second_key)
    theirs, mine = first.new_app("theirs"), second.new_app("mine")
    second.run("ssh-keys:grant", "alice", mine)
    assert first.instance != second.instance

    # The first's alice: admin, of the first instance alone.
    assert "as alice (admin)" in server.ssh("first-alice", "help").stdout
    assert _names(server.ssh("first-alice", "apps:list", "--json")) == [theirs]
    assert server.ssh("first-alice", "apps:create", "made-by-first").returncode == 0
    assert "made-by-first" in _apps(first) and "made-by-first" not in _apps(second)

    # The second's alice: a deployer of its one app, in the second instance alone.
    helped = server.ssh("second-alice", "help").stdout
    assert "as alice (deployer)" in helped and f"apps: {mine}" in helped
    assert _names(server.ssh("second-alice", "apps:list", "--json")) == [mine]
    assert_refused(server.ssh("second-alice", "apps:create", "sneaky"), "may not run apps:create")
    assert_refused(server.ssh("second-alice", "releases", theirs), f"no access to app {theirs}")
    checkout = checkout_for(second, server, mine)
    push(second, server, checkout, "second-alice")
    assert second.get(mine).status == 200 and mine not in _apps(first)

    # Lines that do not match are refused with one line, and run nothing: the second's key in a line that names
    # the first instance (with its own fingerprint), a line of an older minipaas (no instance), a line naming a
    # folder that is no instance.
    managed = keys_file.read_text()
    body = " ".join(second_key.split()[:2])
    for command, words in (
            (f"ssh-command --home {first.home} --user alice --fingerprint {fingerprint(second_key)}",
             f"names alice of the instance at {first.home} with another key's fingerprint"),
            ("ssh-command --user alice", "written by an older minipaas"),
            (f"ssh-command --home {server.dir} --user alice --fingerprint {fingerprint(second_key)}",
             "no minipaas instance")):
        keys_file.write_text(f'command="{ssh_entry()} {command}",restrict {body} forged\n{managed}')
        assert_refused(server.ssh("second-alice", "apps:create", "forged"), words)
        assert "forged" not in _apps(first) and "forged" not in _apps(second)
    refusals = [e for e in json.loads(first.run("events", "--json").stdout) if e["outcome"].startswith("refused")]
    assert [(e["user"], e["fingerprint"]) for e in refusals] == [("alice", fingerprint(second_key))]
    keys_file.write_text(managed)
    assert _names(server.ssh("second-alice", "apps:list", "--json")) == [mine]

    # An install from before: the first's line named no instance nor fingerprint. Refused, until `init` rewrites
    # it (the second's block as it was).
    old = managed.replace(f" --home {first.home}", "").replace(f" --fingerprint {fingerprint(first_key)}", "")
    keys_file.write_text(old)
    assert_refused(server.ssh("first-alice", "help"), "written by an older minipaas")
    assert "ssh keys: this instance's lines" in first.run("init").stdout
    assert sorted(keys_file.read_text().splitlines()) == sorted(managed.splitlines())
    assert "as alice (admin)" in server.ssh("first-alice", "help").stdout
    assert "as alice (deployer)" in server.ssh("second-alice", "help").stdout
    commit(checkout, "again")
    push(second, server, checkout, "second-alice")

