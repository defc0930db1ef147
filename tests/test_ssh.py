"""minipaas over ssh, through a real OpenSSH server and the real ssh and git clients."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from conftest import APPS, EXAMPLE, Paas, Sshd, commit, git


def add_key(paas: Paas, sshd: Sshd, name: str, role: str = "admin") -> None:
    paas.run("ssh-keys:add", name, "--role", role, input=(sshd.key(name).with_suffix(".pub")).read_text())


def checkout_for(paas: Paas, sshd: Sshd, app: str, source=APPS / "dockerfile", user: str = "alice"):
    path = paas.checkout(app, source)
    git(path, "remote", "set-url", "paas", sshd.url(app))
    return path


def push(paas: Paas, sshd: Sshd, checkout, user: str, *, ok: bool = True, ref: str = "master"):
    result = subprocess.run(["git", "push", "paas", ref], cwd=checkout, env=sshd.git_env(paas.env, user),
                            capture_output=True, text=True, timeout=600)
    assert (result.returncode == 0) == ok, result.stdout + result.stderr
    return result


def test_first_push_over_ssh_creates_and_deploys_the_app_and_admin_commands_work(paas: Paas, sshd: Sshd) -> None:
    add_key(paas, sshd, "alice")
    app = "sshapp"
    checkout = checkout_for(paas, sshd, app)
    result = push(paas, sshd, checkout, "alice")
    assert "Created app sshapp" in result.stderr and "is live" in result.stderr
    assert paas.get(app).body == "from my own Dockerfile\n"

    listed = sshd.ssh("alice", "apps:list", "--json")
    assert listed.returncode == 0 and [a["name"] for a in json.loads(listed.stdout)] == [app]
    assert sshd.ssh("alice", "config:set", app, "GREETING='hi there'").returncode == 0
    assert json.loads(sshd.ssh("alice", "config", app, "--json").stdout) == {"GREETING": "hi there"}
    missing = sshd.ssh("alice", "config", "nope")
    assert missing.returncode == 1 and missing.stderr.strip() == "error: app nope does not exist " \
        "(create it with `minipaas apps:create nope`)"
    # The same commands, the same output and exit codes as on the host.
    local = paas.run("releases", app)
    assert sshd.ssh("alice", "releases", app).stdout == local.stdout
