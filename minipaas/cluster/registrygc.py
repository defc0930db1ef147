"""The cluster registry's garbage collection, driven by `gc` (docs/cluster-design.md): the manifests of the releases gc
removes are deleted through the registry's HTTP API (v2), then `docker-registry garbage-collect` frees the blobs
no manifest references any more.

gc decides which releases go (its keep rules: the last `keep-releases` that went live, the live one, what runs);
this module only removes their images from the registry: the manager's copy under the registry's name (the
manager's engine holds each release twice: `minipaas/hello:7` and `10.0.0.5:5000/minipaas/hello:7`), the tag's
manifest, then the blobs.

The registry addresses a manifest by digest only, and deleting one removes every tag that points to it: a digest
another tag still names (an identical rebuild, a review app's image in its parent's repository) is left alone.

The blob sweep runs with the registry restarted read-only (pulls go on, pushes get 405) and put back after, even
when the sweep fails: the registry's own documentation says a push during a collection can lose a blob. Nodes
pulling meanwhile (a rescheduled task) are only refused during the two restarts, a second or two each, and retry.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from minipaas.adapters import diskuse, engine
from minipaas.cluster import credentials, membership, registry
from minipaas.errors import EngineError
from minipaas.progress import Progress
from minipaas.state.settings import Settings

if TYPE_CHECKING:
    import requests

TIMEOUT = 10.0
SWEEP_TIMEOUT = 600.0
# Every manifest type the engine may have pushed: the registry answers a HEAD with the digest of the manifest as
# stored only when its type is accepted (else it converts schema 2 to schema 1: another digest).
MANIFEST_TYPES = ", ".join((
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
))


def _session(settings: Settings) -> requests.Session:
    import requests

    session = requests.Session()
    session.trust_env = False  # REQUESTS_CA_BUNDLE would replace the CA below, HTTPS_PROXY would see the traffic
    session.verify = str(registry.files(settings).ca_cert)  # the cluster's own CA, nothing else
    session.headers["Accept"] = MANIFEST_TYPES
    account = credentials.load(settings)
    if account is not None:
        session.auth = (account.username, account.password)
    return session


def _url(where: str, repository: str, what: str) -> str:
    return f"https://{where}/v2/{repository}/{what}"


def _tags(session: requests.Session, where: str, repository: str) -> list[str]:
    response = session.get(_url(where, repository, "tags/list"), timeout=TIMEOUT)
    if response.status_code == 404:
        return []
    response.raise_for_status()
    return list(response.json().get("tags") or [])


def _digest(session: requests.Session, where: str, repository: str, tag: str) -> str | None:
    response = session.head(_url(where, repository, f"manifests/{tag}"), timeout=TIMEOUT)
    if response.status_code == 404:
        return None
    response.raise_for_status()
    return response.headers.get("Docker-Content-Digest")


def forget(settings: Settings, images: Iterable[str], progress: Progress) -> list[str]:
    """The images (`minipaas/hello:7`: releases gc removed from this engine) removed from the cluster's
    registry and the manager's copy of them under the registry's name; returns the `repository:tag`s whose
    manifest was deleted. Outside a cluster: nothing. A registry that does not answer: said, and nothing done
    there (the next gc tries again: it looks at every release its rules drop)."""
    where = membership.registry_address(settings)
    if where is None:
        return []
    import requests  # here: outside a cluster (and in `report`, which imports gc) the HTTP library is not needed

    by_repository: dict[str, set[str]] = {}
    for image in images:
        repository, _, tag = image.rpartition(":")
        by_repository.setdefault(repository, set()).add(tag)
        engine.remove_image(f"{where}/{image}")  # the manager's copy; a task still using it keeps it
    deleted = []
    try:
        with _session(settings) as session:
            for repository, doomed in sorted(by_repository.items()):
                tags = _tags(session, where, repository)
                if not doomed & set(tags):
                    continue
                digests = {tag: _digest(session, where, repository, tag) for tag in tags}
                kept = {digests[tag] for tag in tags if tag not in doomed}
                for tag in sorted(doomed & set(tags)):
                    digest = digests[tag]
                    if digest is None or digest in kept:
                        continue
                    response = session.delete(_url(where, repository, f"manifests/{digest}"), timeout=TIMEOUT)
                    if response.status_code not in (202, 404):
                        response.raise_for_status()
                    deleted.append(f"{repository}:{tag}")
    except (requests.RequestException, ValueError) as exc:
        progress(f"!     the cluster's registry ({where}) did not delete old manifests: {exc}; gc tries again later")
    return deleted


def sweep(settings: Settings, progress: Progress) -> int:
    """`docker-registry garbage-collect` with the registry read-only; returns the bytes its storage shrank by.
    Outside a cluster: 0. The registry is back read-write afterwards whatever happened."""
    where = membership.registry_address(settings)
    advertise = membership.advertise_address(settings)
    if where is None or advertise is None:
        return 0
    before = diskuse.of(registry.storage(settings))
    progress("-----> Collecting the cluster registry's unreferenced blobs (pushes refused meanwhile)")
    try:
        registry.run(settings, advertise, readonly=True, progress=progress)
        registry.wait_answering(settings, where)
        code, output = engine.exec_capture(
            registry.container_name(settings),
            ["/usr/bin/docker-registry", "garbage-collect", "/etc/docker/registry/config.yml"],
            timeout=SWEEP_TIMEOUT)
        if code != 0:
            raise EngineError(f"the registry's garbage-collect exited with {code}",
                              detail="\n".join(output.splitlines()[-20:]))
    finally:
        registry.run(settings, advertise, readonly=False, progress=progress)
        registry.wait_answering(settings, where)
    return max(0, before - diskuse.of(registry.storage(settings)))
