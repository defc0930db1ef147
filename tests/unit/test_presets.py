"""Framework presets and detection of static builds (pure: no Docker, no git), and the choice of a build's
output folder against the commit's tree."""

from __future__ import annotations

import io
import json
import re
import subprocess
import tarfile
from pathlib import Path

import pytest

from minipaas.build import buildpacks, builds, sitebuild
from minipaas.build.docsite.links import BrokenLink
from minipaas.errors import MinipaasError
from minipaas.routing import sites
from minipaas.source import packagejson, presets
from minipaas.state.settings import SHARE_DIR
from tests.helpers.host import APPS

PACKS = buildpacks.load_all(SHARE_DIR / "buildpacks")
PRESETS = presets.load_all(SHARE_DIR / "buildpacks" / "presets")
ROOT = Path(__file__).resolve().parents[2]


def classify(package: dict[str, object], *, files: tuple[str, ...] = (), procfile: dict[str, str] | None = None,
             static_dir: str = "") -> builds.Source:
    paths = frozenset({"package.json", *files, *(["Procfile"] if procfile else [])})
    return builds.classify("0" * 40, paths, packagejson.parse(json.dumps(package).encode()), procfile or {},
                           packs=PACKS, known_presets=PRESETS, app_settings={"static-dir": static_dir})


def dockerfile(source: builds.Source) -> str:
    facts = {"app": "a", "files": sorted(source.paths), "package": source.package, "procfile": source.procfile,
             "build_ca": False, "build_command": source.build_command, "start_command": source.start_command,
             "base": "minipaas/node:26", "node_version": "26.0.0"}
    return buildpacks.render(source.pack, facts)


ELEVENTY = {"scripts": {"start": "eleventy --serve", "build": "eleventy"},
            "devDependencies": {"@11ty/eleventy": "^3.1.2"}}
VITE = {"scripts": {"dev": "vite", "build": "vite build", "preview": "vite preview"},
        "devDependencies": {"vite": "^8.0.0"}}


def test_every_preset_loads_and_the_readme_names_each() -> None:
    assert len(PRESETS) >= 10
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = " ".join(readme.split("**Framework presets**", 1)[1].split("\n- ", 1)[0].split())
    for preset in PRESETS:
        assert preset.name in section, f"README's list of framework presets lacks {preset.name}"
    names = {p.key: p for p in PRESETS}
    assert names["eleventy"].output == ("_site",) and names["gatsby"].output == ("public",)
    assert names["vitepress"].order < names["vite"].order  # the more specific tool first


@pytest.mark.parametrize(("package", "pack", "preset"), [
    (ELEVENTY, "static-build", "eleventy"),  # `start` runs its dev server: still a site
    (VITE, "static-build", "vite"),
    ({**VITE, "scripts": {"start": "npm run dev", "dev": "vite", "build": "vite build"}}, "static-build", "vite"),
    ({"scripts": {"start": "npx @11ty/eleventy --serve"}, "dependencies": {"@11ty/eleventy": "3"}},
     "static-build", "eleventy"),
    ({"scripts": {"build": "vite build", "start": "node server.js"},
      "dependencies": {"express": "5", "vite": "8"}}, "node", None),  # Vite beside a server framework
    ({**ELEVENTY, "scripts": {"build": "eleventy", "start": "node server.js"}}, "node", "eleventy"),
    ({"scripts": {"build": "vite build", "dev": "vite dev", "preview": "vite preview"},
      "devDependencies": {"@sveltejs/kit": "2", "@sveltejs/adapter-node": "5", "vite": "8"}}, "node",
     "sveltekit-node"),
    ({"scripts": {"build": "vite build"},
      "devDependencies": {"@sveltejs/kit": "2", "@sveltejs/adapter-static": "3", "vite": "8"}}, "static-build",
     "sveltekit-static"),
    ({"scripts": {"build": "nuxt build", "dev": "nuxt dev", "generate": "nuxt generate"},
      "dependencies": {"nuxt": "3"}}, "node", "nuxt"),  # no `start`, yet not a site
    ({"scripts": {"dev": "next dev", "build": "next build", "start": "next start"}, "dependencies": {"next": "15"}},
     "node", "nextjs"),
    ({"scripts": {"build": "astro build", "dev": "astro dev"}, "dependencies": {"astro": "5"}}, "static-build",
     "astro"),
    ({"scripts": {"build": "astro build"}, "dependencies": {"astro": "5", "@astrojs/node": "9"}}, "node",
     "astro-node"),
    ({"scripts": {"build": "docusaurus build", "start": "docusaurus start"},
      "dependencies": {"@docusaurus/core": "3"}}, "static-build", "docusaurus"),
    ({"scripts": {"build": "node build.js", "start": "node server.js"}}, "node", None),  # no preset: build+start
    ({"scripts": {"build": "node build.js"}}, "static-build", None),  # no preset: a build and no start
])
def test_detection(package: dict[str, object], pack: str, preset: str | None) -> None:
    source = classify(package)
    assert (source.pack.name, source.preset.key if source.preset else None) == (pack, preset)


def test_the_with_build_fixture_has_build_and_start_and_stays_a_node_app() -> None:
    package = json.loads((APPS / "with-build" / "package.json").read_text())
    assert {"build", "start"} <= set(package["scripts"])
    assert classify(package).pack.name == "node"


def test_a_static_file_or_the_static_dir_setting_wins_over_scripts() -> None:
    package = {"scripts": {"build": "node build.js", "start": "node server.js"}}
    assert classify(package, files=(".static",)).pack.name == "static-build"
    assert classify(package, static_dir="site").pack.name == "static-build"
    assert classify(ELEVENTY, procfile={"web": "node server.js"}).pack.name == "node"  # a Procfile: a server


def test_a_server_preset_starts_its_build_output_when_there_is_no_start_script() -> None:
    kit = {"scripts": {"build": "vite build", "dev": "vite dev"},
           "devDependencies": {"@sveltejs/kit": "2", "@sveltejs/adapter-node": "5"}}
    text = dockerfile(classify(kit))
    assert 'CMD ["/bin/sh", "-c", "exec node build"]' in text and "RUN npm run build && npm prune" in text
    nuxt = dockerfile(classify({"scripts": {"build": "nuxt build"}, "dependencies": {"nuxt": "3"}}))
    assert 'CMD ["/bin/sh", "-c", "exec node .output/server/index.mjs"]' in nuxt
    # a start script, or a Procfile web: line, is the app's own word
    assert 'CMD ["npm", "start"]' in dockerfile(classify({**kit, "scripts": {"build": "x", "start": "svelte s.js"}}))
    assert 'exec node s.js"]' in dockerfile(classify({**kit, "scripts": {"build": "x", "start": "node s.js"}}))
    own = dockerfile(classify(kit, procfile={"web": "node my.js"}))
    assert 'exec node my.js' in own and "exec node build" not in own


def test_a_preset_without_a_build_script_runs_the_tools_build() -> None:
    source = classify({"scripts": {"start": "eleventy --serve"}, "devDependencies": {"@11ty/eleventy": "3"}})
    assert source.pack.name == "static-build"
    text = dockerfile(source)
    assert "RUN npm install --no-audit --no-fund\n" in text  # dev dependencies too: the tool is one
    assert "RUN node_modules/.bin/eleventy && npm prune" in text
    assert "CMD" not in text  # a site: nothing runs afterwards
    assert "RUN npm run build" in dockerfile(classify(ELEVENTY))


@pytest.mark.parametrize(("start", "runs"), [
    ("eleventy --serve", True), ("npx @11ty/eleventy --serve --port 8080", True), ("node server.js", False),
    ("eleventy-dev-server", False), ("my-eleventy --serve", False),
])
def test_a_start_script_runs_the_dev_server(start: str, runs: bool) -> None:
    [eleventy] = [p for p in PRESETS if p.key == "eleventy"]
    assert eleventy.runs_dev_server({"start": start}) is runs


@pytest.mark.parametrize(("text", "words"), [
    ('kind = "static"\ndependencies = ["x"]\noutput = ["dist"]\n', "needs its output folder(s) and build"),
    ('kind = "server"\ndependencies = ["x"]\n', "needs its start command"),
    ('kind = "site"\ndependencies = ["x"]\n', "kind must be one of"),
    ('kind = "static"\ndependencies = ["x"]\noutput = ["../up"]\nbuild = "b"\n', "relative path inside"),
    ('kind = "static"\noutput = ["dist"]\nbuild = "b"\n', "dependencies must name"),
    ('kind = "static"\ndependencies = "x\n', "malformed"),
])
def test_a_malformed_preset_is_one_line(tmp_path: Path, text: str, words: str) -> None:
    (tmp_path / "odd.toml").write_text(text)
    with pytest.raises(MinipaasError, match=re.escape(words)):
        presets.load_all(tmp_path)


# --- which folder of the image is the site ------------------------------------------------------------------


def tar_of(folder: str, files: dict[str, bytes]) -> io.BytesIO:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        info = tarfile.TarInfo(folder)
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
        for name, data in files.items():
            info = tarfile.TarInfo(f"{folder}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    out.seek(0)
    return out


def test_blob_ids_are_gits(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"hello\n")
    expected = subprocess.run(["git", "hash-object", str(tmp_path / "f")], capture_output=True, text=True,
                              check=True).stdout.strip()
    assert sitebuild.blob_id(b"hello\n") == expected


def test_a_folder_the_commit_holds_as_it_is_is_not_the_output() -> None:
    files = {"robots.txt": b"User-agent: *\n", "css/site.css": b"body{}\n"}
    committed = {f"public/{name}": ("100644", sitebuild.blob_id(data)) for name, data in files.items()}
    committed["src/index.md"] = ("100644", sitebuild.blob_id(b"# Hi\n"))
    output = sitebuild.scan(tar_of("public", files))
    assert sitebuild.unchanged(output, committed, "public")
    changed = sitebuild.scan(tar_of("public", {**files, "css/site.css": b"body{color:red}\n"}))
    assert not sitebuild.unchanged(changed, committed, "public")
    added = sitebuild.scan(tar_of("public", {**files, "index.html": b"<h1>built</h1>"}))
    assert added.has_index and not sitebuild.unchanged(added, committed, "public")
    assert not sitebuild.unchanged(sitebuild.scan(tar_of("_site", files)), committed, "_site")  # not in the commit


def test_broken_link_warnings_are_bounded() -> None:
    broken = [BrokenLink(f"p{n}.md", "missing.md") for n in range(25)]
    lines = sites.broken_link_warnings(broken)
    assert len(lines) == 21 and lines[0] == "warning: p0.md links to missing.md, which does not exist"
    assert lines[-1] == "warning: and 5 more broken links"
    assert sites.broken_link_warnings(broken[:3]) == [f"warning: p{n}.md links to missing.md, which does not exist"
                                                      for n in range(3)]


@pytest.mark.parametrize(("scripts", "command"), [
    ({"start": "node server.js"}, '["/bin/sh", "-c", "exec node server.js"]'),
    ({"start": "node --enable-source-maps dist/main.js"},
     '["/bin/sh", "-c", "exec node --enable-source-maps dist/main.js"]'),
    # npm's own work is needed: its lifecycle scripts, a shell, a binary from node_modules/.bin
    ({"start": "node server.js", "prestart": "node migrate.js"}, '["npm", "start"]'),
    ({"start": "node server.js", "poststart": "echo done"}, '["npm", "start"]'),
    ({"start": "node a.js && node b.js"}, '["npm", "start"]'),
    ({"start": "NODE_ENV=x node a.js"}, '["npm", "start"]'),
    ({"start": "nodemon a.js"}, '["npm", "start"]'),
    ({"start": "node $FILE"}, '["npm", "start"]'),
])
def test_a_plain_node_start_script_runs_without_npm(scripts: dict[str, str], command: str) -> None:
    [cmd] = [line for line in dockerfile(classify({"scripts": scripts})).splitlines() if line.startswith("CMD ")]
    assert cmd == f"CMD {command}"
