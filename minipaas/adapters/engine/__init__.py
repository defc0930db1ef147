"""The Docker adapter: every call minipaas makes to the Docker engine goes through this package.

It wraps the Docker SDK (docker-py) so that the rest of minipaas deals in plain values (ids, tags,
addresses) and in `minipaas.errors`, never in SDK objects or exceptions. Callers use `engine.NAME`:
the names below are the adapter's whole interface, kept in submodules by what they act on.

A submodule is loaded when one of its names is first used (PEP 562), not when the package is: a command that
only lists containers (inventory.py, over the standard library) never loads the SDK, whose import alone costs
about 65 ms, a third of what `ps` may take.
"""

from __future__ import annotations

import importlib
from typing import Any

_NAMES = {
    "labels": ("LABEL", "APP_LABEL", "BUILDPACK_LABEL", "INDEX_LABEL", "PORT_LABEL", "PROCESS_LABEL",
               "RELEASE_LABEL", "SHA_LABEL", "TASK_LABEL"),
    "inventory": ("Container", "cgroups", "containers", "inspect", "process_uid"),
    "sdk": ("answers", "client", "dropped", "reason"),
    "lifecycle": ("Limits", "ensure_network", "exec_capture", "exec_in", "last_exit_code", "remove", "run",
                  "run_oneoff", "run_to_completion", "start", "stop", "wait"),
    "hostnet": ("HostShell", "host_network"),
    "images": ("BuildOutcome", "build", "copy_out", "exposed_ports", "image_env", "image_id",
               "image_info", "image_labels", "image_size", "import_rootfs", "labelled_images", "list_images",
               "login", "prune_dangling", "pull", "push", "remove_image", "remove_images_labelled",
               "step_exit_code", "tag_image", "tags_matching"),
    "disk": ("unique_image_sizes",),
    "streams": ("events", "logs"),
    "volumes": ("connect", "create_volume", "disconnect", "exec_io", "exec_script", "networks_of",
                "remove_volume", "volume_exists"),
}
_HOME = {name: module for module, names in _NAMES.items() for name in names}
__all__ = sorted(_HOME)


# Used as modules: `engine.swarm.join(...)` (the cluster package), `engine.sdk.docker` and `engine.wire.get(...)`
# (networks.py, an adapter of its own).
_MODULES = ("services", "swarm", "sdk", "wire")


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        return importlib.import_module(f"{__name__}.{name}")  # the import sets the package's attribute
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # the next use is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOME))
