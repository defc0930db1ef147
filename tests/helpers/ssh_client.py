"""A deployer's side over ssh (with tests/helpers/sshd.py's server): add a key, clone and push over ssh,
and a refusal as ssh prints it."""

from __future__ import annotations

import subprocess

from tests.helpers.host import APPS, Paas, git
from tests.helpers.sshd import Sshd


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


def assert_refused(result: subprocess.CompletedProcess[str], words: str = "") -> None:
    assert result.returncode != 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    assert words in errors[0], errors[0]
