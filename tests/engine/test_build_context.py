"""BuildKit's context folder follows the pushes: what a commit removes leaves the image, modes are git's,
a committed node_modules and the app's .dockerignore'd files stay out, and the folder goes with the app."""

from __future__ import annotations

import stat

from tests.helpers.host import APPS, EXAMPLE, Paas, commit, docker, git


def listing(paas: Paas, app: str, release: int, folder: str) -> dict[str, str]:
    """name -> `mode owner` of what the release's image has in `folder` (and one level below)."""
    found = docker("run", "--rm", "--entrypoint", "sh", paas.image(app, release), "-c",
                   f"cd {folder} && find . -maxdepth 2 -not -path './node_modules/*/*' -exec stat -c '%n %a %U' {{}} +")
    return {line.split()[0].removeprefix("./"): " ".join(line.split()[1:]) for line in found.splitlines()}


def test_the_context_follows_each_push_with_gits_modes_and_without_node_modules(paas: Paas) -> None:
    app = paas.new_app("ctx")
    checkout = paas.checkout(app, EXAMPLE)
    (checkout / "gone.txt").write_text("removed by the next commit\n")
    (checkout / "run.sh").write_text("#!/bin/sh\nexec node server.js\n")
    (checkout / "run.sh").chmod(0o755)
    (checkout / "node_modules").mkdir()
    (checkout / "node_modules" / "evil.js").write_text("committed, never built\n")
    git(checkout, "add", "-f", "node_modules/evil.js")
    commit(checkout, "with extra files")
    paas.push(checkout)
    first = listing(paas, app, 1, "/app")
    assert first["gone.txt"] == "644 node" and first["server.js"] == "644 node" and first["run.sh"] == "755 node"
    assert "node_modules/evil.js" not in first and "node_modules/express" in first

    (checkout / "gone.txt").unlink()
    (checkout / "run.sh").chmod(0o644)
    commit(checkout, "one file less, one mode changed")
    paas.push(checkout)
    second = listing(paas, app, 2, "/app")
    assert "gone.txt" not in second and second["run.sh"] == "644 node", second

    folder = paas.home / "build" / app
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((paas.home / "build").stat().st_mode) == 0o700
    assert sorted(p.name for p in (folder / "buildpack" / "src").iterdir()) == sorted(
        p.name for p in checkout.iterdir() if p.name not in (".git",))
    paas.run("apps:destroy", app, "--force")
    assert not folder.exists()


def test_an_apps_own_dockerfile_builds_from_its_folder_with_its_dockerignore(paas: Paas) -> None:
    app = paas.new_app("ctx")
    checkout = paas.checkout(app, APPS / "dockerfile")
    dockerfile = checkout / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text().replace("COPY server.js .", "COPY . ."))
    (checkout / "secret.txt").write_text("never in the image\n")
    (checkout / ".dockerignore").write_text("secret.txt\n")
    commit(checkout, "copy everything but what .dockerignore names")
    paas.push(checkout)
    assert paas.get(app).body == "from my own Dockerfile\n"
    files = listing(paas, app, 1, "/srv")
    assert "server.js" in files and "Dockerfile" in files and "secret.txt" not in files, files
