"""The Docker adapter: every call minipaas makes to the Docker engine goes through this package.

It wraps the Docker SDK (docker-py) so that the rest of minipaas deals in plain values (ids, tags,
addresses) and in `minipaas.errors`, never in SDK objects or exceptions. Callers use `engine.NAME`:
the names below are the adapter's whole interface, kept in submodules by what they act on.
"""

from __future__ import annotations

from minipaas.adapters.engine.client import (
    LABEL,
    client,
    reason,
)
from minipaas.adapters.engine.containers import (
    Container,
    Limits,
    containers,
    ensure_network,
    exec_capture,
    exec_in,
    inspect,
    process_uid,
    remove,
    run,
    run_oneoff,
    run_to_completion,
    start,
    stop,
)
from minipaas.adapters.engine.images import (
    BuildOutcome,
    build,
    cgroups,
    copy_out,
    exposed_ports,
    image_env,
    image_id,
    image_info,
    image_labels,
    image_size,
    import_rootfs,
    labelled_images,
    list_images,
    prune_dangling,
    pull,
    remove_image,
    remove_images_labelled,
    step_exit_code,
    tag_image,
    unique_image_sizes,
)
from minipaas.adapters.engine.streams import (
    events,
    logs,
)

__all__ = [
    "LABEL",
    "BuildOutcome",
    "Container",
    "Limits",
    "build",
    "cgroups",
    "client",
    "containers",
    "copy_out",
    "ensure_network",
    "events",
    "exec_capture",
    "exec_in",
    "exposed_ports",
    "image_env",
    "image_id",
    "image_info",
    "image_labels",
    "image_size",
    "import_rootfs",
    "inspect",
    "labelled_images",
    "list_images",
    "logs",
    "process_uid",
    "prune_dangling",
    "pull",
    "reason",
    "remove",
    "remove_image",
    "remove_images_labelled",
    "run",
    "run_oneoff",
    "run_to_completion",
    "start",
    "step_exit_code",
    "stop",
    "tag_image",
    "unique_image_sizes",
]
