"""Node.js versions as apps ask for them (engines.node, .node-version, .nvmrc), through real pushes.

Each exact version is a base image of its own (about 45 s and 300 MB to make): these tests use three
besides the default, 20.17.0, 18.20.8 and one of 18.20.7-5 for gc, and share them within a run (the file's order matters
only for speed: a test that finds its version missing makes it).
"""

from __future__ import annotations

import json
import re
import subprocess
import time

from tests.helpers.host import APPS, EXAMPLE, Paas, commit, docker

PINNED = "20.17.0"
NODE18 = "18.20.8"  # the last release of Node 18: what 18.x.x and lts/hydrogen resolve to for good
BUILDING = "-----> Building base image minipaas/node:{} (Node {}, first use on this host)"


def base_images() -> dict[str, str]:
    """Local base images: tag -> image id."""
    lines = docker("images", "--filter", "label=minipaas=stack", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}")
    return dict(line.split() for line in lines.splitlines() if line.startswith("minipaas/node:"))


def forget_base_image(version: str) -> None:
    """Untag every base image of `version` (its exact tag and the major tag when it points there), so that
    the next push needing it makes it; images other homes built on it keep their layers."""
    for tag in base_images():
        labels = json.loads(docker("image", "inspect", "--format", "{{json .Config.Labels}}", tag))
        if labels.get("minipaas.node.version") == version:
            subprocess.run(["docker", "rmi", tag], capture_output=True, check=False)
    assert f"minipaas/node:{version}" not in base_images()


def output(result: subprocess.CompletedProcess[str]) -> str:
    return result.stdout + result.stderr


def wait_for_text(paas: Paas, app: str, text: str, deadline: float = 30) -> str:
    end = time.monotonic() + deadline
    body = ""
    while time.monotonic() < end:
        response = paas.get(app)
        body = response.body.strip()
        if response.status == 200 and body == text:
            return body
        time.sleep(0.2)
    raise AssertionError(f"{app} answered {body!r}, not {text!r}")


def test_first_push_builds_the_base_image_once_while_a_concurrent_push_waits(paas: Paas) -> None:
    forget_base_image(PINNED)
    apps = [paas.new_app("pin"), paas.new_app("pin")]
    checkouts = [paas.checkout(app, APPS / "node-version-file") for app in apps]
    pushes = [subprocess.Popen(["git", "push", "paas", "master"], cwd=c, env=paas.env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for c in checkouts]
    outputs = [p.communicate(timeout=1200)[0] for p in pushes]
    for push, text in zip(pushes, outputs, strict=True):
        assert push.returncode == 0, text
        assert f"-----> Using Node.js {PINNED} (the newest release that satisfies engines.node '20.17.x')" in text
    builders = [t for t in outputs if BUILDING.format(PINNED, PINNED) in t]
    assert len(builders) == 1, outputs
    waiter = outputs[1 - outputs.index(builders[0])]
    assert f"-----> Waiting for another build of the base image minipaas/node:{PINNED} to finish..." in waiter
    assert f"-----> minipaas/node:{PINNED} is ready (the other build made it); using it" in waiter
    assert "Building base image" not in waiter
    # The build's steps reach the pusher, indented under the heading.
    assert re.search(r"remote:        Node 20\.17\.0 and npm [\d.]+ \(the newest npm that supports it\)", builders[0])
    assert f"remote:        minipaas/node:{PINNED} ready in" in builders[0]
    for app in apps:
        assert wait_for_text(paas, app, f"v{PINNED}") == f"v{PINNED}"
    # One image, tagged with its exact version; the major tag names the newest local 20.x.
    images = base_images()
    assert f"minipaas/node:{PINNED}" in images
    major = json.loads(docker("image", "inspect", "--format", "{{json .Config.Labels}}", "minipaas/node:20"))
    assert major["minipaas.node.version"].startswith("20.") and major["minipaas"] == "stack"
    user = docker("image", "inspect", "--format", "{{.Config.User}} {{index .Config.Labels \"minipaas.node.version\"}}",
                  paas.image(apps[0], 1)).split()
    assert user == ["node", PINNED]

    # A later push reuses it: no build, no wait.
    (checkouts[0] / "app.js").write_text((checkouts[0] / "app.js").read_text() + "// second release\n")
    commit(checkouts[0], "second")
    again = output(paas.push(checkouts[0]))
    assert f"-----> Using Node.js {PINNED}" in again
    assert "Building base image" not in again and "Waiting for another build" not in again
    assert base_images()[f"minipaas/node:{PINNED}"] == images[f"minipaas/node:{PINNED}"]


def test_engines_18_x_x_without_a_lockfile_runs_on_node_18(paas: Paas) -> None:
    app, _checkout = paas.deploy(APPS / "node18-no-lockfile", prefix="n18")
    assert wait_for_text(paas, app, f"v{NODE18}") == f"v{NODE18}"
    assert f"minipaas/node:{NODE18}" in base_images()


def test_nvmrc_forms(paas: Paas) -> None:
    app = paas.new_app("nvm")
    checkout = paas.checkout(app, APPS / "nvmrc")  # `v20.17.0`, below a comment line
    first = output(paas.push(checkout))
    assert f"-----> Using Node.js {PINNED} (the newest release that satisfies .nvmrc 'v20.17.0')" in first
    assert wait_for_text(paas, app, f"v{PINNED}")

    # lts/hydrogen: the newest Node 18, whose image the run shares with the engines test above.
    (checkout / ".nvmrc").write_text("lts/hydrogen\n")
    commit(checkout, "hydrogen")
    second = output(paas.push(checkout))
    assert f"-----> Using Node.js {NODE18} (the newest release that satisfies .nvmrc 'lts/hydrogen')" in second
    assert wait_for_text(paas, app, f"v{NODE18}")

    # lts/*: the newest LTS line, which on this host's date is the default major's (made for the run).
    default = json.loads(docker("image", "inspect", "--format", "{{json .Config.Labels}}", "minipaas/node:26"))
    (checkout / ".nvmrc").write_text("lts/*\n")
    commit(checkout, "newest lts")
    third = output(paas.push(checkout))
    assert "Building base image" not in third
    assert wait_for_text(paas, app, "v" + default["minipaas.node.version"])


def test_a_request_nothing_satisfies_is_one_line_and_changes_nothing(paas: Paas) -> None:
    app, checkout = paas.deploy(EXAMPLE, prefix="bad")
    before_images = base_images()
    package = json.loads((checkout / "package.json").read_text())
    cases = [
        ({"node": "^99"}, None, r"no Node\.js release satisfies engines\.node '\^99'; the newest ones are "
                                r"26\.\d+\.\d+, 25\.\d+\.\d+, 24\.\d+\.\d+, 23\.\d+\.\d+"),
        ({"node": 18}, None, r"engines\.node in package\.json must be a string .*not a number"),
        (None, "lts/nonesuch\n", r"\.nvmrc 'lts/nonesuch' is not a Node\.js LTS line \(the newest ones: "
                                 r"lts/lithium, lts/krypton"),
        (None, "what\x07ever\n", r"\.nvmrc is not a Node\.js version or range: 'what\\x07ever'"),
        (None, "twenty\n", r"\.nvmrc 'twenty' is not a Node\.js version or range"),
    ]
    for engines, nvmrc, message in cases:
        body = {k: v for k, v in package.items() if k != "engines"}
        if engines is not None:
            body["engines"] = engines
        (checkout / "package.json").write_text(json.dumps(body, indent=2) + "\n")
        (checkout / ".nvmrc").unlink(missing_ok=True)
        if nvmrc is not None:
            (checkout / ".nvmrc").write_text(nvmrc)
        commit(checkout, f"ask for {engines or nvmrc!r}")
        result = paas.push(checkout, expect_ok=False)
        errors = [line for line in output(result).splitlines()
                  if line.startswith("remote: !") and "push rejected" not in line]
        assert len(errors) == 1 and re.search(message, errors[0]), output(result)
        assert "Building base image" not in output(result)
        assert paas.get(app).status == 200  # the live release still serves
    assert base_images() == before_images
    history = json.loads(paas.run("releases", app, "--json").stdout)
    assert [(r["number"], r["status"]) for r in history if r["status"] != "failed"] == [(1, "live")]
    assert docker("images", "--format", "{{.Tag}}", paas.repository(app)).split() == ["1"]  # nothing was built


def unused_version(candidates: tuple[str, ...]) -> str:
    """The first of `candidates` no image on the engine is built on (of any home): gc may remove its
    base image only then, whatever else this host runs."""
    for version in candidates:
        users = docker("images", "--filter", f"label=minipaas.node.version={version}",
                       "--format", '{{.Repository}} {{.Label "minipaas"}}').splitlines()
        if not [line for line in users if not line.endswith(" stack")]:
            return version
    raise AssertionError(f"every one of {candidates} has images built on it on this host")


def test_stack_build_list_and_gc(paas: Paas) -> None:
    built = paas.run("stack:build", "--node", "20.17.x", timeout=1200).stdout
    assert f"-----> Node.js {PINNED} (the newest release that satisfies --node '20.17.x')" in built
    assert built.rstrip().endswith(f"minipaas/node:{PINNED}")
    again = paas.run("stack:build", "--node", "20.17.x").stdout
    assert f"-----> minipaas/node:{PINNED} is already there" in again and "Building" not in again
    # A base image only this test uses (none of this host's other homes builds on it): gc's to remove.
    spare = unused_version(("18.20.7", "18.20.6", "18.20.5"))
    paas.run("stack:build", "--node", spare, timeout=1200)
    spare_id = base_images()[f"minipaas/node:{spare}"]

    app, _checkout = paas.deploy(APPS / "node-version-file", prefix="gc")
    listing = json.loads(paas.run("stack:list", "--json").stdout)
    rows = {row["version"]: row for row in listing}
    assert rows[PINNED]["apps"] == [app] and rows[PINNED]["image"] == f"minipaas/node:{PINNED}"
    assert rows[PINNED]["size"] > 100_000_000
    table = paas.run("stack:list").stdout
    assert re.search(rf"^minipaas/node:{re.escape(PINNED)} .* {app}\b", table, re.M), table

    # Nothing is built on the spare version: gc removes it, and keeps the image this app's release is
    # built on, and the newest of the host's default major.
    dry = paas.run("gc", "--dry-run").stdout
    assert f"would remove base image minipaas/node:{spare} (no release is built on it)" in dry
    assert f"minipaas/node:{PINNED}" not in dry and "minipaas/node:26" not in dry
    assert f"minipaas/node:{spare}" in base_images()  # a dry run removes nothing
    done = paas.run("gc").stdout
    assert f"removed base image minipaas/node:{spare}" in done
    images = base_images()
    assert f"minipaas/node:{spare}" not in images and spare_id not in images.values()  # no tag left on it
    assert f"minipaas/node:{PINNED}" in images and "minipaas/node:26" in images
