"""The labels minipaas puts on what it makes in the engine, and the one the Swarm puts on a task's container:
each spelled once, with nothing to import (commands that only read them need not load the SDK)."""

from __future__ import annotations

LABEL = "minipaas"  # every object minipaas creates carries this label (its value: the home it belongs to)
# The labels of an app's containers and images (their values: the app, its process type, the release it
# runs, the index among that process type's containers, the port it listens on, the commit and buildpack
# an image was built from).
APP_LABEL = "minipaas.app"
PROCESS_LABEL = "minipaas.process"
RELEASE_LABEL = "minipaas.release"
INDEX_LABEL = "minipaas.index"
PORT_LABEL = "minipaas.port"
SHA_LABEL = "minipaas.sha"
BUILDPACK_LABEL = "minipaas.buildpack"
# On every container the Swarm starts for a task. The task's container also carries the image's labels, minipaas'
# own included (`minipaas=<home>`, set at build): this one tells it from a plain container.
TASK_LABEL = "com.docker.swarm.task.id"
