"""A cluster made before its registry took credentials and its nodes had firewall rules (issue 19, item 13),
brought up to date by the next `cluster:*` command (the CLI calls `ensure` first).

Until then its pushes and deploys work as before (the registry takes anyone), and each says so in one line. The
upgrade: the registry's account made and the registry restarted with it (credentials.py), the manager's firewall
set, each worker's set over ssh when `cluster:add` brought it, and a line naming each node joined by hand (the
lines of `cluster:join-command` set it there). The services already running get the login (as `docker service
update --with-registry-auth` gives it; their tasks are not replaced), so that a task the Swarm moves to a node
without its image can still pull it; they pin their image by digest from their next deploy. Once upgraded, this
is one file read and one look at the nodes: the manager's firewall is set again only when the nodes changed
(firewall.refresh_manager).
"""

from __future__ import annotations

from minipaas.adapters import engine
from minipaas.cluster import credentials, firewall, hosts, membership, registry, releases
from minipaas.progress import Progress
from minipaas.state.settings import Settings


def ensure(settings: Settings, progress: Progress) -> None:
    where, advertise = membership.registry_address(settings), membership.advertise_address(settings)
    if not where or not advertise or not engine.swarm.state().manager:
        return  # no cluster of minipaas' here: the command itself says what it needs
    if credentials.load(settings) is not None and firewall.recorded(settings):
        firewall.refresh_manager(settings, advertise)
        return
    progress("-----> Upgrading this cluster: its registry takes credentials, its nodes get firewall rules")
    registry.run(settings, advertise, readonly=False, progress=progress)  # with the account, made first
    registry.wait_answering(settings, where)
    credentials.login(settings, where)
    for name in engine.services.labelled({releases.SWARM_SERVICE_LABEL: str(settings.home)}):
        engine.services.renew_registry_auth(name)
    firewall.set_manager(settings, advertise)
    progress("       the registry takes credentials; the manager's firewall is set")
    hosts.secure_added(settings, advertise, progress)
