"""An app's creation (bare repo + default domain + vhost) and destruction (containers, images, repo,
vhost, site folders, certificates, grants): the two operations that reach into every layer below."""

from __future__ import annotations

from collections.abc import Callable

from minipaas.access import events
from minipaas.adapters import engine, gitrepo, networks
from minipaas.addons import containers as addon_containers
from minipaas.addons import reviewdbs
from minipaas.addons import roles as addon_roles
from minipaas.build import buildcontext, cacheclear
from minipaas.cluster import registrygc
from minipaas.deploy import placement
from minipaas.errors import Conflict
from minipaas.routing import certs, proxy, sites
from minipaas.state import apps, locks, releaselog, reviews
from minipaas.state.host import Host
from minipaas.state.names import check_new_app
from minipaas.state.settings import HOOK_TEMPLATE


def create(host: Host, name: str) -> None:
    check_new_app(name)
    if apps.exists(host, name):
        raise Conflict(f"app {name} already exists")
    s = host.settings
    domain = apps.default_domain(host, name)
    repo = s.repo_path(name)
    if repo.exists() or repo.is_symlink():
        # Never adopt (or write through) something we did not create: a leftover, or a planted link.
        raise Conflict(f"{repo} exists already but belongs to no app; move it away first")
    apps.insert(host, name, domain=domain)
    try:
        s.repos_dir.mkdir(parents=True, exist_ok=True)
        gitrepo.init_bare(s.repo_path(name), home=s.home, app=name, hook_template=HOOK_TEMPLATE)
        proxy.setup(s)
        proxy.write_site(host, name, [domain])
    except BaseException:
        # Nothing half-done: an app is either fully there or not at all.
        gitrepo.remove(s.repo_path(name))
        apps.delete(host, name)
        raise


def forget(host: Host, name: str) -> None:
    """The app's row gone (its domains, config, settings and grants with it): undoes a creation."""
    apps.delete(host, name)


def destroy(host: Host, name: str, progress: Callable[[str], None]) -> None:
    """The app and everything it owns; an app's review apps go first. A review app's commits stay in
    its parent's repository (the branch is gone, or going: git's gc takes them)."""
    apps.require(host, name)
    s = host.settings
    for review in reviews.of(host, name):
        destroy(host, review.name, progress)
        progress(f"removed review app {review.name}")
    parent = reviews.parent(host, name)
    placement.for_host(host, name).remove_all(progress)
    proxy.remove_app(s, name)
    reviewdbs.drop(host, name, progress)  # a review app's own databases, before its roles go
    addon_containers.leave_network_of(host, name)  # its services leave its network (their links go below)
    addon_roles.forget_app(host, name, progress)  # and its Postgres roles are dropped
    networks.remove(s.app_network(name))
    images = sorted(releaselog.images(host, name).get(name, ()))
    registrygc.forget(s, images, progress)  # in a cluster: its registry's manifests
    for image in images:
        if engine.remove_image(image, owner=str(s.home)):
            progress(f"removed image {image}")
    leftovers = engine.remove_images_labelled({engine.LABEL: str(s.home), engine.APP_LABEL: name})
    if leftovers:
        progress(f"removed {len(leftovers)} more images of its builds")
    if parent is None:  # a review app's caches are its parent's (builds.cache_namespace)
        gitrepo.remove(s.repo_path(name))
        cacheclear.empty_life(host, apps.life(host, name), name, progress)  # else gc empties them
    cacheclear.empty_contexts(host, name, progress)  # BuildKit's copy of its files at its last build
    buildcontext.remove(s, name)
    sites.remove_app(s, name)

    certs.remove_app(s, name)
    granted = apps.destroyed(host, name)  # its grants, config, domains... go with it
    locks.remove_app_locks(s, name)
    if granted:
        # A deployer's access ends with the app: an app created later under this name starts with none.
        events.record(host, app=name, command=f"apps:destroy {name}",
                      outcome=f"grants removed: {', '.join(granted)}")
        progress(f"removed the grants of {', '.join(granted)}")
