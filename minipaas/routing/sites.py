"""Static sites: release directories that nginx serves directly, switched by an atomic symlink.

`MINIPAAS_HOME/static/<app>/<release>/` holds a release's files; `current` points at the live one.
A deploy fills a new directory (from the commit, from a built image, or rendered from Markdown), leaving
out every dotfile and dot-folder but /.well-known/, then replaces the symlink in one rename: no container,
no reload, no downtime.
"""

from __future__ import annotations

import gzip
import io
import os
import shutil
import tarfile
import tempfile
import zlib
from pathlib import Path, PurePosixPath

from minipaas.adapters import diskuse, engine, gitrepo
from minipaas.build import sitebuild
from minipaas.build.buildpacks import Buildpack
from minipaas.build.docsite import links
from minipaas.errors import BuildFailed, InvalidInput
from minipaas.progress import Progress
from minipaas.state import apps, perms
from minipaas.state.host import Host
from minipaas.state.names import _show
from minipaas.state.settings import Settings


def app_dir(settings: Settings, app: str) -> Path:
    return settings.layout.static_dir / app


def current_link(settings: Settings, app: str) -> Path:
    return app_dir(settings, app) / "current"


def serving_root(settings: Settings, app: str) -> Path | None:
    """The path nginx serves the app from, when the app is a static site; None for container apps."""
    link = current_link(settings, app)
    return link if link.is_symlink() else None


def prepare(host: Host, app: str, release: int, sha: str, pack: Buildpack, *,
            site_dir: str, image: str, progress: Progress, outputs: tuple[str, ...] = ()) -> Path:
    """Fill the release directory; returns it. Nothing is served from it until `activate`.

    `outputs`: where the app's framework preset says its build writes the site (tried first).
    Whatever wrote them (git archive, the built image, the Markdown renderer, precompression), its
    files end 0644 in 0755 folders for nginx's workers: static/ is the gate (see perms.py).
    """
    settings = host.settings
    target = perms.served_folder(app_dir(settings, app)) / str(release)
    if target.exists():
        shutil.rmtree(target)
    target.mkdir()
    try:
        if pack.serve == "static":
            _from_commit(settings, app, sha, pack, site_dir, target)
        elif pack.serve == "static-build":
            if site_dir:
                check_static_dir(settings, app, sha, site_dir)
            root, archive = sitebuild.choose_output(settings.repo_path(app), sha, image, app=app, site_dir=site_dir,
                                                    roots=_unique(outputs + pack.site_roots))
            progress(f"       serving the build output in {root}/")
            extract_tar(archive, target, strip=Path(root).name + "/")
        else:
            _from_markdown(host, app, sha, target, progress)
        hidden = drop_hidden(target)
        if hidden:
            shown = ", ".join(hidden[:5]) + (f" and {len(hidden) - 5} more" if len(hidden) > 5 else "")
            progress(f"       not served: {shown} (dotfiles and dot-folders; only /.well-known/ is served)")
        if not (target / "index.html").is_file():
            raise BuildFailed("the site has no index.html at its root")
        precompress(target)
        perms.publish(target)
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise
    files = sum(1 for p in target.rglob("*") if p.is_file())
    progress(f"-----> Site of release {release}: {files} files")
    return target


WELL_KNOWN = ".well-known"


def drop_hidden(root: Path) -> list[str]:
    """Remove every dotfile and dot-folder under `root` but the folder /.well-known/ at its root (RFC 8615:
    security.txt and the like), dot names inside that too; returns what went (`a/.env`, `.git/`), sorted.
    A repository's `.env`, `.npmrc`, `.git-credentials` or `.ssh/` is never meant to be a page."""
    removed = []
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        for name in [*dirs, *files]:
            path = here / name
            keep = here == root and name == WELL_KNOWN and path.is_dir() and not path.is_symlink()
            if not name.startswith(".") or keep:
                continue
            is_dir = path.is_dir() and not path.is_symlink()
            if is_dir:
                shutil.rmtree(path)
                dirs.remove(name)
            else:
                path.unlink()
            removed.append(str(path.relative_to(root)) + ("/" if is_dir else ""))
    return sorted(removed)


def image_has_folder(image: str, folder: str) -> bool:
    """Whether the built app in `image` has `folder` (a static-dir setting served at once, or from the next push)."""
    return engine.copy_out(image, f"/app/{folder.strip('/')}") is not None


def _unique(names: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(names))


def _roots(pack: Buildpack, site_dir: str) -> tuple[str, ...]:
    return (site_dir,) if site_dir else pack.site_roots


def _from_commit(settings: Settings, app: str, sha: str, pack: Buildpack, site_dir: str, target: Path) -> None:
    repo = settings.repo_path(app)
    paths = set(gitrepo.all_files(repo, sha))
    for root in _roots(pack, site_dir):
        prefix = "" if root in (".", "") else root.strip("/") + "/"
        if f"{prefix}index.html" in paths or (not prefix and ".static" in paths):
            extract_tar(io.BytesIO(gitrepo.archive(repo, sha)), target, strip=prefix)
            return
    raise BuildFailed(f"no index.html in {', '.join(_roots(pack, site_dir))}")


def check_static_dir(settings: Settings, app: str, sha: str, folder: str) -> None:
    """Refuse a static-dir that leaves the app's folder through a symlink of the commit (`site -> /etc`)."""
    parts = folder.strip("/").split("/")
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    for path, (mode, _) in gitrepo.tree_entries(settings.repo_path(app), sha, prefixes).items():
        if path in prefixes and mode == "120000":
            raise InvalidInput(f"static-dir {folder} leads through {path}, a symbolic link in the repository; "
                               "name a real folder inside the app")


def _from_markdown(host: Host, app: str, sha: str, target: Path, progress: Progress) -> None:
    # Markdown, Pygments and the sanitizer load only for a docs site's deploy, not on every push.
    from minipaas.build.docsite import site

    allow_html = apps.get_setting(host, app, "markdown-html") == "sanitize"
    with tempfile.TemporaryDirectory(prefix="minipaas-md-") as tmp:
        extract_tar(io.BytesIO(gitrepo.archive(host.settings.repo_path(app), sha)), Path(tmp))
        rendered = site.render_docs(Path(tmp), target, title=app, allow_html=allow_html)
    progress(f"       rendered {rendered.pages} Markdown pages")
    for line in broken_link_warnings(rendered.broken):
        progress(f"       {line}")


MAX_LINK_WARNINGS = 20


def broken_link_warnings(broken: list[links.BrokenLink], limit: int = MAX_LINK_WARNINGS) -> list[str]:
    """One warning a broken link, the first `limit` of them, then how many more: the push still succeeds."""
    lines = [f"warning: {link}" for link in broken[:limit]]
    if len(broken) > limit:
        lines.append(f"warning: and {len(broken) - limit} more broken links")
    return lines


def extract_tar(stream: io.BufferedIOBase | io.BytesIO, target: Path, *, strip: str = "") -> None:
    """Extract regular files and folders only, under `strip`: links, devices and paths leaving the
    target are skipped (a repository is untrusted; dokku once followed a symlink out of the app dir).
    An entry that cannot be written where its name says (a file where a folder is, a name too long for
    the filesystem, a full disk), or a damaged archive, is one line; the caller removes the half-written target."""
    try:
        with tarfile.open(fileobj=stream, mode="r|*") as tar:
            for member in tar:
                parts = _member_parts(member.name, strip)
                if not parts or not (member.isfile() or member.isdir()):
                    continue
                try:
                    _write_member(tar, member, target.joinpath(*parts))
                except OSError as exc:
                    raise BuildFailed(f"cannot write {_show('/'.join(parts))} of the site: "
                                      f"{exc.strerror or exc}") from None
    except (tarfile.TarError, EOFError, zlib.error) as exc:  # EOFError, zlib.error: a cut or damaged gzip
        reason = str(exc).strip().splitlines()[0][:80] if str(exc).strip() else type(exc).__name__
        raise BuildFailed(f"the site's files came as a damaged archive ({reason})") from None


def _write_member(tar: tarfile.TarFile, member: tarfile.TarInfo, destination: Path) -> None:
    if member.isdir():
        destination.mkdir(parents=True, exist_ok=True)
        return
    destination.parent.mkdir(parents=True, exist_ok=True)
    source = tar.extractfile(member)
    if source is None:
        return
    with open(destination, "wb") as out:
        shutil.copyfileobj(source, out)


def _member_parts(name: str, strip: str) -> tuple[str, ...]:
    """Where an entry's name puts it under the target, as path parts; () for nowhere (another folder than
    `strip`, an absolute name, `..`). A leading `./` is no part of a name: `./.env` is `.env`, a dotfile."""
    while name.startswith("./"):
        name = name[2:]
    if not name.startswith(strip):
        return ()
    relative = PurePosixPath(name[len(strip):])
    if relative.is_absolute() or ".." in relative.parts:
        return ()
    return relative.parts


COMPRESSIBLE = frozenset({".html", ".htm", ".css", ".js", ".mjs", ".json", ".svg", ".txt", ".xml", ".map",
                          ".webmanifest", ".md"})


def precompress(root: Path, *, min_size: int = 256) -> int:
    """Write name.gz beside every text file worth it, for nginx's gzip_static; returns how many."""
    count = 0
    for path in root.rglob("*"):
        if path.suffix.lower() in COMPRESSIBLE and path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            if len(data) < min_size or path.with_name(path.name + ".gz").exists():
                continue
            packed = gzip.compress(data, compresslevel=9, mtime=0)
            if len(packed) < len(data):
                target = path.with_name(path.name + ".gz")
                target.write_bytes(packed)
                count += 1
    return count


def activate(settings: Settings, app: str, release: int) -> None:
    """Point `current` at the release in one atomic rename."""
    link = current_link(settings, app)
    tmp = link.with_name(f".current-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(str(release))
    os.replace(tmp, link)


def deactivate(settings: Settings, app: str) -> None:
    """The app is no longer a static site (it became a container app)."""
    current_link(settings, app).unlink(missing_ok=True)


def live_release(settings: Settings, app: str) -> int | None:
    link = current_link(settings, app)
    return int(os.readlink(link)) if link.is_symlink() else None


def prune(settings: Settings, app: str, keep: set[int], *, dry_run: bool = False) -> list[tuple[int, int]]:
    """Remove release directories not in `keep` (never the live one); returns (release, bytes) of each."""
    live = live_release(settings, app)
    folder = app_dir(settings, app)
    removed = []
    for entry in sorted(folder.iterdir()) if folder.is_dir() else []:
        if entry.name.isdigit() and int(entry.name) not in keep and int(entry.name) != live:
            size = diskuse.of(entry)
            if not dry_run:
                shutil.rmtree(entry, ignore_errors=True)
            removed.append((int(entry.name), size))
    return removed


def remove_app(settings: Settings, app: str) -> None:
    shutil.rmtree(app_dir(settings, app), ignore_errors=True)
