"""The pre-receive hook: decides, for each pushed ref, whether to deploy, accept or refuse.

Git runs it before updating any ref; a non-zero exit rejects the whole push, so a failed build
or health check leaves the branch where it was and the old release serving. Everything printed
here reaches the pusher as `remote:` lines.
"""

from __future__ import annotations

import os
import sys
from typing import TextIO

from minipaas import perms
from minipaas.errors import MinipaasError
from minipaas.gitrepo import ZERO_SHA


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def deploy_refs(branch_setting: str) -> tuple[str, ...]:
    if branch_setting:
        return (f"refs/heads/{branch_setting}",)
    return ("refs/heads/master", "refs/heads/main")


def main(app: str, stdin: TextIO) -> int:
    # git runs the hook with the pusher's umask; the build and the release write under the home.
    perms.restrict_umask()
    updates = [line.split() for line in stdin.read().splitlines() if line.strip()]
    try:
        from minipaas import apps, releases
        from minipaas.host import current

        host = current()
        apps.require(host, app)
        targets = deploy_refs(apps.get_setting(host, app, "deploy-branch"))
        deploy = None
        for _old, new, ref in updates:
            if ref in targets:
                if new == ZERO_SHA:
                    say(f"!     {ref.removeprefix('refs/heads/')} is the deploy branch of {app}; "
                        "deleting it is refused (destroy the app instead)")
                    return 1
                deploy = deploy or new
            elif ref.startswith("refs/heads/"):
                say(f"-----> {ref.removeprefix('refs/heads/')} accepted, not deployed "
                    f"(deploys come from {' or '.join(t.removeprefix('refs/heads/') for t in targets)})")
        if deploy:
            releases.deploy_commit(host, app, deploy, say)
        return 0
    except MinipaasError as exc:
        say(f"!     {exc.message}")
        for line in exc.detail.splitlines():
            say(f"!     {line}")
        say("!     push rejected; the previous release keeps serving")
        return 1
    except KeyboardInterrupt:
        say("!     interrupted; push rejected")
        return 1
    except Exception as exc:  # a bug, or the engine failing oddly: still one line, and the push is refused
        if os.environ.get("MINIPAAS_DEBUG"):
            raise
        say(f"!     internal error: {type(exc).__name__}: {exc} (MINIPAAS_DEBUG=1 shows details)")
        say("!     push rejected; the previous release keeps serving")
        return 1
