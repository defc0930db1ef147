"""`report`'s rows: the disk each app uses (its release images, site directories and git repository).

Kept apart from gc.py, which removes what this measures, so that `report` and an app's dashboard page load only
what measuring needs: the images' unique sizes come from a cache that changes only when an image comes or goes
(adapters/engine/disk.py), the folders' sizes from one `du` run again only for what changed (disksizes.py).
"""

from __future__ import annotations

from pathlib import Path

from minipaas.adapters import engine
from minipaas.routing import sites
from minipaas.running import disksizes
from minipaas.state import apps, releaselog
from minipaas.state.host import Host


def sizes_cache(host: Host) -> Path:
    """Where the images' unique sizes are kept with the images they were measured among (`report`, `gc`)."""
    return host.settings.cache_dir / "image-sizes.json"


def report(host: Host, only: str | None = None) -> list[dict[str, object]]:
    """Disk used per app (`only`: that app's row alone, as its dashboard page shows it): release images (what each
    adds beyond the layers it shares with other images), site directories and the git repository."""
    sizes = engine.unique_image_sizes(sizes_cache(host))
    names = [only] if only is not None else apps.names(host)
    folders = [(sites.app_dir(host.settings, app), host.settings.repo_path(app)) for app in names]
    disk = disksizes.sizes(host.settings, [site for site, _ in folders], [repo for _, repo in folders])
    images = releaselog.images(host, only)
    rows: list[dict[str, object]] = []
    for app, (site, repo) in zip(names, folders, strict=True):
        held = {image for image in images.get(app, ()) if image in sizes}
        rows.append({
            "app": app,
            "images": len(held),
            "image_bytes": sum(sizes[i] for i in held),
            "site_bytes": disk[site],
            "repo_bytes": disk[repo],
        })
    return rows
