"""minipaas over ssh, through a real OpenSSH server and the real ssh and git clients."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from tests.helpers.host import APPS, EXAMPLE, Paas, git
from tests.helpers.ssh_client import add_key, assert_refused, checkout_for, push
from tests.helpers.sshd import Sshd


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


def snapshot(paas: Paas) -> tuple[object, ...]:
    """What must not change when a request is refused: apps, repos, keys, nginx files."""
    repos = sorted(p.name for p in (paas.home / "repos").iterdir())
    sites = sorted(p.name for p in (paas.home / "nginx" / "sites").iterdir())
    apps = paas.run("apps:list", "--json").stdout
    keys = paas.run("ssh-keys:list", "--json").stdout
    config = {a["name"]: paas.run("config", a["name"], "--json").stdout for a in json.loads(apps)}
    refs = {r: paas.repo_ref(r.removesuffix(".git")) for r in repos}
    return repos, sites, apps, keys, config, refs


def test_deployers_reach_only_their_apps_and_read_only_commands(paas: Paas, sshd: Sshd) -> None:
    add_key(paas, sshd, "alice")
    add_key(paas, sshd, "ci", role="deployer")
    mine, other = paas.new_app("mine"), paas.new_app("other")
    paas.run("ssh-keys:grant", "ci", mine)
    paas.run("config:set", mine, "--secret", "SECRET=s3cret", "--no-restart")

    checkout = checkout_for(paas, sshd, mine)
    push(paas, sshd, checkout, "ci")
    assert paas.get(mine).status == 200
    before = snapshot(paas)

    assert [a["name"] for a in json.loads(sshd.ssh("ci", "apps:list", "--json").stdout)] == [mine]
    assert json.loads(sshd.ssh("ci", "config", mine, "--json").stdout) == {"SECRET": "<hidden>"}
    assert sshd.ssh("ci", "releases", mine).returncode == 0
    assert sshd.ssh("ci", "ps", mine).returncode == 0
    help_text = sshd.ssh("ci", "help").stdout
    assert "releases" in help_text and "config:set" not in help_text and "apps:create" not in help_text
    assert "config:set" in sshd.ssh("alice", "help").stdout

    assert_refused(sshd.ssh("ci", "config:get", mine, "SECRET"), "may not run config:get")
    assert_refused(sshd.ssh("ci", "config:set", mine, "SECRET=x"), "may not run config:set")
    assert_refused(sshd.ssh("ci", "releases", other), f"no access to app {other}")
    assert_refused(sshd.ssh("ci", "apps:create", "sneaky"), "may not run apps:create")
    assert_refused(sshd.ssh("ci", "apps:destroy", mine, "--force"), "may not run apps:destroy")
    assert_refused(sshd.ssh("ci", "run", mine, "--", "id"), "may not run run")
    assert_refused(sshd.ssh("ci", "ssh-keys:add", "evil"), "may not run ssh-keys:add")

    other_checkout = checkout_for(paas, sshd, other)
    assert_refused(push(paas, sshd, other_checkout, "ci", ok=False), f"may not push to {other}")
    new_checkout = checkout_for(paas, sshd, "brandnew")
    assert_refused(push(paas, sshd, new_checkout, "ci", ok=False), "may not create apps")
    assert snapshot(paas) == before

    paas.run("ssh-keys:revoke", "ci", mine)
    assert_refused(sshd.ssh("ci", "releases", mine), "no access")
    paas.run("ssh-keys:remove", "ci")
    gone = sshd.ssh("ci", "apps:list")
    assert gone.returncode == 255 and "Permission denied" in gone.stderr  # sshd itself refuses the key


HOSTILE_COMMANDS = [
    (["apps:create", "'a;rm -rf /tmp'"], "invalid app name"),
    (["apps:create", "a;rm", "-rf", "/tmp"], "No such option"),  # ssh joins words: still no shell
    (["apps:list;", "touch", "/tmp/minipaas-pwned"], "unknown command"),
    (["apps:create", "'$(touch /tmp/minipaas-pwned)'"], "invalid app name"),
    (["apps:create", "'`touch /tmp/minipaas-pwned`'"], "invalid app name"),
    (["apps:create", "$(touch", "/tmp/minipaas-pwned)"], "unexpected extra argument"),
    (["apps:create", "'x\ny'"], "invalid app name"),
    (["apps:create", "'unbalanced"], "cannot parse the command"),
    (["config:set", "nope", "A=1;reboot"], "does not exist"),
    (["rm", "-rf", "/"], "unknown command"),
    (["ssh-command", "--user", "root"], "unknown command"),
    (["git-receive-pack", "'../../etc/passwd'"], "invalid repository"),
    (["git-receive-pack", "'/etc/passwd'"], "invalid repository"),
    (["git-upload-pack", "'/var/lib/../../etc'"], "invalid repository"),
    (["git-receive-pack", "'a b'", "c"], "invalid repository"),
    (["git-upload-pack", "'ghost'"], "does not exist"),
]


@pytest.mark.parametrize(("command", "words"), HOSTILE_COMMANDS, ids=[" ".join(c)[:30] for c, _ in HOSTILE_COMMANDS])
def test_hostile_commands_over_ssh_change_nothing(paas: Paas, sshd: Sshd, command: list[str], words: str) -> None:
    add_key(paas, sshd, "alice")
    paas.new_app("victim")
    before = snapshot(paas)
    assert_refused(sshd.ssh("alice", *command), words)
    assert snapshot(paas) == before
    assert not __import__("os").path.exists("/tmp/minipaas-pwned")


def test_hostile_bytes_lengths_and_symlinks_over_ssh(paas: Paas, sshd: Sshd) -> None:
    add_key(paas, sshd, "alice")
    before = snapshot(paas)
    raw = subprocess.run([*sshd.ssh_args("alice"), b"apps:create \xff\xfe"], capture_output=True)
    assert raw.returncode == 1 and b"not valid UTF-8" in raw.stderr
    huge = sshd.ssh("alice", "apps:create", *["a" * 100_000] * 10)  # 1 MB, in words the kernel accepts
    assert huge.returncode != 0 and "Traceback" not in huge.stderr
    # A repository path planted as a symlink to somewhere else is never written through.
    outside = paas.work / "outside"
    outside.mkdir()
    (paas.home / "repos" / "planted.git").symlink_to(outside)
    checkout = checkout_for(paas, sshd, "planted")
    assert_refused(push(paas, sshd, checkout, "alice", ok=False), "exists already")
    assert list(outside.iterdir()) == []
    (paas.home / "repos" / "planted.git").unlink()
    assert snapshot(paas) == before


@pytest.mark.parametrize(("key_text", "words"), [
    ('command="/bin/sh" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE', "options"),
    ("ssh-ed25519 not-base64!! x", "damaged"),
    ("ssh-ed25519 AAAAB3NzaC1yc2EAAAADAQAB x", "says"),
    ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE", "exactly one"),
    ("ssh-dss AAAA x", "unknown key type"),
    ("", "exactly one"),
])
def test_bad_public_keys_are_refused(paas: Paas, sshd: Sshd, key_text: str, words: str) -> None:
    result = paas.run("ssh-keys:add", "mallory", input=key_text, check=False)
    assert result.returncode == 1 and words in result.stderr and "Traceback" not in result.stderr
    assert json.loads(paas.run("ssh-keys:list", "--json").stdout) == []


def test_duplicate_keys_are_refused(paas: Paas, sshd: Sshd) -> None:
    add_key(paas, sshd, "alice")
    again = paas.run("ssh-keys:add", "alice2", input=sshd.key("alice").with_suffix(".pub").read_text(), check=False)
    assert again.returncode == 1 and "already registered as alice" in again.stderr
    text = sshd.dir.joinpath("authorized_keys").read_text()
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    assert len(lines) == 1 and lines[0].startswith('command="') and ",restrict,pty ssh-ed25519 " in lines[0]


def test_logs_follow_ends_when_the_client_disconnects(paas: Paas, sshd: Sshd) -> None:
    add_key(paas, sshd, "alice")
    app, _ = paas.deploy(APPS / "dockerfile")
    follower = subprocess.Popen([*sshd.ssh_args("alice"), "logs", app, "-f"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
    time.sleep(2)
    assert follower.poll() is None  # still streaming
    follower.kill()
    follower.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        left = subprocess.run(["pgrep", "-f", f"ssh-command --home {paas.home} --user alice "], capture_output=True,
                              text=True).stdout
        if not left.strip():
            break
        time.sleep(0.2)
    assert not left.strip(), "a logs -f process outlived its ssh client"


def test_run_passes_exit_codes_and_gives_a_tty_only_when_asked(paas: Paas, sshd: Sshd) -> None:
    add_key(paas, sshd, "alice")
    app, _ = paas.deploy(EXAMPLE)
    paas.run("config:set", app, "GREETING=from config", "--no-restart")
    assert sshd.ssh("alice", "run", app, "--", "node", "-e", "'process.exit(3)'").returncode == 3
    out = sshd.ssh("alice", "run", app, "--", "node", "-e", "'console.log(process.env.GREETING)'")
    assert out.returncode == 0 and out.stdout.strip() == "from config"
    piped = sshd.ssh("alice", "run", app, "--", "sh", "-c", "'test -t 0 && echo tty || echo pipe; cat'",
                     input="through stdin\n")
    assert piped.stdout.splitlines() == ["pipe", "through stdin"]
    tty = sshd.ssh("alice", "run", app, "--", "sh", "-c", "'test -t 0 && echo tty || echo pipe'", tty=True)
    assert tty.stdout.strip().splitlines()[-1] == "tty"
    assert [c for c in paas.container_names() if ".run." in c] == []


def test_every_ssh_command_is_audited_with_config_values_redacted(paas: Paas, sshd: Sshd) -> None:
    add_key(paas, sshd, "alice")
    add_key(paas, sshd, "ci", role="deployer")
    app = paas.new_app()
    sshd.ssh("alice", "config:set", app, "TOKEN=very-secret", "--no-restart")
    sshd.ssh("ci", "config:set", app, "TOKEN=other-secret")
    events = json.loads(paas.run("events", app, "--json").stdout)
    assert [(e["user"], e["outcome"].split(":")[0]) for e in events] == [("ci", "refused"), ("alice", "ok")]
    assert all("secret" not in e["command"] for e in events)
    assert events[1]["command"] == f"config:set {app} 'TOKEN=<redacted>' --no-restart"
    assert events[1]["fingerprint"].startswith("SHA256:")


def laptop(paas: Paas, sshd: Sshd, app: str, *, user: str = "alice", known: bool = True) -> tuple[dict, object]:
    """A laptop: its own HOME with ~/.ssh/config and known_hosts, and an app checkout with a paas remote."""
    home = paas.work / f"laptop-{user}"
    (home / ".ssh").mkdir(parents=True, exist_ok=True)
    (home / ".ssh" / "config").write_text(
        f"Host paashost\n  HostName 127.0.0.1\n  Port {sshd.port}\n  User root\n"
        f"  IdentityFile {sshd.key(user)}\n  IdentitiesOnly yes\n")
    (home / ".ssh" / "known_hosts").write_text(sshd.known_hosts.read_text() if known else "")
    checkout = paas.work / f"laptop-{app}"
    if not checkout.exists():
        checkout.mkdir()
        git(checkout, "init", "-q", "-b", "master")
        git(checkout, "remote", "add", "paas", f"paashost:{app}")
    env = {k: v for k, v in paas.env.items() if not k.startswith("MINIPAAS_") and k != "SSH_AUTH_SOCK"}
    env.update(HOME=str(home), MINIPAAS_HOME=str(home / "not-a-host"))
    return env, checkout


def client(env: dict, checkout, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    import sys

    return subprocess.run([sys.executable, "-m", "minipaas", *args], cwd=checkout, env=env, text=True,
                          capture_output=True, input=input, timeout=300)


def test_remote_client_fills_in_the_app_and_talks_over_ssh(paas: Paas, sshd: Sshd) -> None:
    add_key(paas, sshd, "alice")
    app, _ = paas.deploy(EXAMPLE)
    env, checkout = laptop(paas, sshd, app)
    assert client(env, checkout, "config:set", "GREETING=from the laptop").returncode == 0
    assert paas.get(app).body.startswith("from the laptop")
    shown = client(env, checkout, "config", "--json")
    assert json.loads(shown.stdout) == {"GREETING": "from the laptop"}
    assert client(env, checkout, "run", "--", "node", "-e", "process.exit(4)").returncode == 4
    other = paas.new_app("other")
    assert client(env, checkout, "domains", "--app", other).stdout.split() == [f"{other}.paas.test"]
    missing = client(env, checkout, "releases", "--app", "nope")
    assert missing.returncode == 1 and "app nope does not exist" in missing.stderr


def test_remote_client_refuses_unknown_hosts_bad_keys_and_dead_hosts(paas: Paas, sshd: Sshd) -> None:
    add_key(paas, sshd, "alice")
    app = paas.new_app()
    env, checkout = laptop(paas, sshd, app, known=False)
    unknown = client(env, checkout, "releases")
    fingerprint = subprocess.run(["ssh-keygen", "-lf", str(sshd.dir / "host_ed25519.pub")], capture_output=True,
                                 text=True).stdout.split()[1]
    assert unknown.returncode == 1 and "not in your known_hosts" in unknown.stderr and fingerprint in unknown.stderr
    env, checkout = laptop(paas, sshd, app, user="stranger")
    refused = client(env, checkout, "releases")
    assert refused.returncode == 1 and "refused your key" in refused.stderr
    sshd.process.terminate()
    sshd.process.wait()
    env, checkout = laptop(paas, sshd, app)
    dead = client(env, checkout, "releases")
    assert dead.returncode == 1 and "cannot reach" in dead.stderr
    assert "Traceback" not in unknown.stderr + refused.stderr + dead.stderr


def test_enter_runs_in_the_live_container(paas: Paas, sshd: Sshd) -> None:
    add_key(paas, sshd, "alice")
    app, _ = paas.deploy(APPS / "dockerfile")
    result = sshd.ssh("alice", "enter", app, "web", "--", "sh", "-c", "'cat /srv/server.js | head -c 12; exit 5'")
    assert result.returncode == 5 and result.stdout == "const http ="


def test_a_deployers_grant_covers_the_apps_review_apps(paas: Paas, sshd: Sshd) -> None:
    add_key(paas, sshd, "ci", role="deployer")
    mine, other = paas.new_app("mine"), paas.new_app("other")
    paas.run("ssh-keys:grant", "ci", mine)
    checkout = checkout_for(paas, sshd, mine)
    push(paas, sshd, checkout, "ci")
    git(checkout, "checkout", "-q", "-b", "topic")
    result = push(paas, sshd, checkout, "ci", ref="topic")
    review = f"{mine}--topic"
    assert f"=====> {review} release 1 is live" in result.stderr, result.stderr
    assert paas.get("", host=f"topic.{mine}.paas.test").body == "from my own Dockerfile\n"
    names = [a["name"] for a in json.loads(sshd.ssh("ci", "apps:list", "--json").stdout)]
    assert names == [mine, review]
    assert sshd.ssh("ci", "ps", review).returncode == 0
    assert sshd.ssh("ci", "releases", review).returncode == 0
    assert_refused(sshd.ssh("ci", "releases", f"{other}--topic"), f"no access to app {other}--topic")
    # A review app's name is no repository: its branch is pushed to the app's.
    git(checkout, "remote", "set-url", "paas", sshd.url(review))
    assert_refused(push(paas, sshd, checkout, "ci", ok=False, ref="topic"),
                   f"{review} is a review app of {mine}")
    git(checkout, "remote", "set-url", "paas", sshd.url(mine))
    push(paas, sshd, checkout, "ci", ref=":topic")
    assert [a["name"] for a in json.loads(sshd.ssh("ci", "apps:list", "--json").stdout)] == [mine]
