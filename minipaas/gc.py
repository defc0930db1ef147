"""Garbage collection: what old releases leave on disk, removed by a retention rule.

The last `keep-releases` (default 5) releases that went live stay instantly rollback-able (their
images and site directories are kept); older release images, exited containers, dangling images and
older site directories go. The image of a running container is never removed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from minipaas import apps, engine, releases, sites
from minipaas.host import Host


@dataclass
class Freed:
    items: list[str] = field(default_factory=list)
    bytes: int = 0

    def add(self, what: str, size: int) -> None:
        self.items.append(what)
        self.bytes += size


def collect(host: Host, *, dry_run: bool, only: str | None = None,
            progress: Callable[[str], None] = lambda _: None) -> Freed:
    freed = Freed()
    home = str(host.settings.home)
    for app in [only] if only else apps.names(host):
        _collect_app(host, app, dry_run=dry_run, freed=freed)
    for container in engine.containers({engine.LABEL: home}):
        if container.status in ("exited", "dead", "created") and container.labels.get("minipaas.process") != "run":
            if not dry_run:
                engine.remove(container.id, timeout=0)
            freed.add(f"container {container.name}", 0)
    if not dry_run:
        freed.bytes += engine.prune_dangling({engine.LABEL: home})
    verb = "would free" if dry_run else "freed"
    for item in freed.items:
        progress(f"       {'would remove' if dry_run else 'removed'} {item}")
    progress(f"-----> gc {verb} {_human(freed.bytes)} ({len(freed.items)} items)")
    return freed


def _collect_app(host: Host, app: str, *, dry_run: bool, freed: Freed) -> None:
    retention = int(apps.get_setting(host, app, "keep-releases"))
    history = releases.listing(host, app)
    went_live = [r for r in history if r.status in ("live", "superseded")]
    keep = {r.number for r in (went_live if retention == 0 else went_live[:retention])}
    kept_images = {r.image for r in history if r.number in keep and r.image}
    in_use = {c.labels.get("minipaas.release") for c in releases.web_containers(host, app)}
    for rel in history:
        image = rel.image
        if not image or image in kept_images or str(rel.number) in in_use:
            continue
        if image != f"minipaas/{app}:{rel.number}":
            continue  # config and rollback releases reuse another release's image
        size = engine.image_size(image)
        if size is None:
            continue
        if dry_run or engine.remove_image(image):
            freed.add(f"image {image}", size)
    for number, size in sites.prune(host.settings, app, keep, dry_run=dry_run):
        freed.add(f"site directory {app}/{number}", size)


def report(host: Host) -> list[dict[str, object]]:
    """Disk used per app: release images (their own size, shared base layers counted once each),
    site directories and the git repository."""
    rows = []
    for app in apps.names(host):
        images = {r.image for r in releases.listing(host, app) if r.image}
        image_bytes = sum(engine.image_size(i) or 0 for i in images)
        rows.append({
            "app": app,
            "images": len([i for i in images if engine.image_size(i) is not None]),
            "image_bytes": image_bytes,
            "site_bytes": _du(sites.app_dir(host.settings, app)),
            "repo_bytes": _du(host.settings.repo_path(app)),
        })
    return rows


def _du(path: Path) -> int:
    if not path.exists():
        return 0
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"
