"""The pre-receive hook: decides, for each pushed ref, whether to deploy, accept or refuse.

Git runs it before updating any ref; a non-zero exit rejects the whole push, so a failed build
or health check leaves the branch where it was and the old release serving. Everything printed
here reaches the pusher as `remote:` lines.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, TextIO

from minipaas.adapters import gitrepo
from minipaas.adapters.gitrepo import ZERO_SHA
from minipaas.deploy import pushlog
from minipaas.errors import MinipaasError, disk_full
from minipaas.progress import Lines
from minipaas.state import locks, perms

if TYPE_CHECKING:  # the deploy path's modules load after SIGHUP is ignored (main)
    from minipaas.build import builds

# What the pusher sees; if their connection drops, the deploy goes on without them.
say = Lines()
PUSH_OPTIONS = frozenset({"verbose", "skip-tests", "no-cache"})
# The pusher's role, which the ssh entry sets before it runs git-receive-pack (sshentry.py); a push without it
# came from the host itself (a local `git push` to the repository), whose user is the administrator.
ROLE_ENV = "MINIPAAS_ROLE"


def push_options(environ: dict[str, str]) -> list[str]:
    """The `git push -o ...` options (git passes them as GIT_PUSH_OPTION_<n>)."""
    count = environ.get("GIT_PUSH_OPTION_COUNT", "0")
    given = int(count) if count.isascii() and count.isdigit() else 0
    return [environ.get(f"GIT_PUSH_OPTION_{i}", "") for i in range(given)]


def deploy_refs(branch_setting: str) -> tuple[str, ...]:
    if branch_setting:
        return (f"refs/heads/{branch_setting}",)
    return ("refs/heads/master", "refs/heads/main")


def main(app: str, stdin: TextIO) -> int:
    code = 1
    try:
        code = _main(app, stdin)
        return code
    finally:
        if log := _push_log:
            say.copy_to(None)
            pushlog.finish(log, code == 0)


_push_log: BinaryIO | None = None  # the running push's log (deploy/pushlog.py), from its turn on
_started = 0.0  # when the push began (its failed release, if it made one, is no older)


def _main(app: str, stdin: TextIO) -> int:
    global _push_log, _started
    _started = time.time()
    # git runs the hook with the pusher's umask; the build and the release write under the home.
    perms.restrict_umask()
    # A pusher whose ssh session ends must not end the deploy half-way.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    updates = [line.split() for line in stdin.read().splitlines() if line.strip()]
    live = None
    try:
        # Imported once SIGHUP is ignored and the umask set: the deploy path's modules (the docker SDK
        # among them) take a few hundred ms to load, and the .pyc files Python may write get our umask.
        from minipaas.deploy import reviewapps, rollout
        from minipaas.state import apps, releaselog
        from minipaas.state.host import current

        host = current()
        apps.require(host, app)
        live = releaselog.live(host, app)
        role = os.environ.get(ROLE_ENV, "admin")
        options = _options(push_options(dict(os.environ)), role,
                           apps.push_options_allowed(apps.get_setting(host, app, "deployer-push-options")), app)
        # One push of the repository at a time, until git has updated the refs it accepted: a push that waited
        # finds them as the one before left them, and is refused if they moved (git would refuse its ref update
        # after its deploy: a live release that its branch never names).
        with locks.push_turn(host.settings, app, say) as turn:
            _push_log = pushlog.start(host.settings, app)  # the lines from here on, for the dashboard too
            say.copy_to(_push_log)
            live = releaselog.live(host, app)
            moved = _moved(host.settings.repo_path(app), updates)
            if moved is not None:
                say(moved)
                return 1
            targets = deploy_refs(apps.get_setting(host, app, "deploy-branch"))
            review_apps = apps.get_setting(host, app, "review-apps") == "on"
            deploy = None
            branches: list[tuple[str, str]] = []  # (branch, new sha) of the review apps to deploy or remove
            for _old, new, ref in updates:
                if ref in targets:
                    if new == ZERO_SHA:
                        say(f"!     {ref.removeprefix('refs/heads/')} is the deploy branch of {app}; "
                            "deleting it is refused (destroy the app instead)")
                        return 1
                    deploy = deploy or new
                elif ref.startswith("refs/heads/") and review_apps:
                    branches.append((ref.removeprefix("refs/heads/"), new))
                elif ref.startswith("refs/heads/"):
                    say(f"-----> {ref.removeprefix('refs/heads/')} accepted, not deployed (review-apps is off; "
                        f"deploys come from {' or '.join(t.removeprefix('refs/heads/') for t in targets)})")
            # More review apps than the limit: refused before anything is kept or made.
            reviewapps.check_room(host, app, [branch for branch, new in branches if new != ZERO_SHA])
            # Review apps before the app itself: one that fails rejects the push before production changed.
            for branch, new in branches:
                if new == ZERO_SHA:
                    reviewapps.remove_branch(host, app, branch, say)
                else:
                    gitrepo.keep_pushed(host.settings.repo_path(app), new)
                    reviewapps.deploy_branch(host, app, branch, new, say, options, by_deployer=role != "admin")
            if deploy:
                gitrepo.keep_pushed(host.settings.repo_path(app), deploy)
                rollout.deploy_commit(host, app, deploy, say, options)
            turn.keep_until_gone(gitrepo.receive_pack_pid())
        return 0
    except MinipaasError as exc:
        say(f"!     {exc.message}")
        for line in exc.detail.splitlines():
            say(f"!     {line}")
        say(_rejected(live))
        _failed(app, exc.message)
        return 1
    except KeyboardInterrupt:
        say("!     interrupted; push rejected")
        _failed(app, "interrupted")
        return 1
    except Exception as exc:  # a bug, the engine failing oddly, a full disk: still one line, and the push is refused
        from minipaas.adapters import engine

        known = disk_full(exc) or engine.dropped(exc)
        if known is not None:
            say(f"!     {known.message}")
        elif os.environ.get("MINIPAAS_DEBUG"):
            raise
        else:
            say(f"!     internal error: {type(exc).__name__}: {exc} (MINIPAAS_DEBUG=1 shows details)")
        say(_rejected(live))
        _failed(app, known.message if known is not None else f"internal error: {type(exc).__name__}")
        return 1


def _failed(app: str, why: str) -> None:
    """The `deploy-failed` event (the audit log's, and the notifications'): the push was rejected."""
    from minipaas.access import events
    from minipaas.state import releaselog
    from minipaas.state.host import current

    try:
        host = current()
        newest = next(iter(releaselog.listing(host, app)), None)
    except Exception:  # no home: nothing was deployed, nothing to tell
        return
    # The release this push made and failed, if it got that far (an older failed one is not this push's).
    failed = newest is not None and newest.status == releaselog.Status.FAILED and newest.created_at >= _started
    release = newest.number if failed and newest is not None else None
    events.announce(host, "deploy-failed", app=app, command=f"deploy-failed {app}", release=release,
                    outcome=f"push rejected: {why}")


def _moved(repo: Path, updates: list[list[str]]) -> str | None:
    """The one line refusing a push whose refs moved since it began (another push's, which it waited for)."""
    for old, _new, ref in updates:
        now = gitrepo.ref_value(repo, ref)
        if now != old:
            where = f"moved to {now[:7]}" if now != ZERO_SHA else "was deleted"
            return (f"!     {ref.removeprefix('refs/heads/')} {where} while this push waited for another; nothing "
                    "was deployed: fetch, then push again")
    return None


def _options(given: list[str], role: str, allowed: frozenset[str], app: str) -> builds.Options:
    """The build's options from the push's; a deployer's privileged ones must be in the app's
    `deployer-push-options`, else the push is refused (PermissionDenied)."""
    from minipaas.access.access import PermissionDenied
    from minipaas.build.builds import Options
    from minipaas.state.apps import PRIVILEGED_PUSH_OPTIONS

    known = set()
    canary = None
    for option in given:
        if option.startswith("canary="):
            canary = _canary_option(option)
            continue
        if option not in PUSH_OPTIONS:
            say(f"-----> push option {option[:40]!r} is not one minipaas knows "
                f"({', '.join(sorted(PUSH_OPTIONS))}, canary=N); ignored")
            continue
        if option in PRIVILEGED_PUSH_OPTIONS and role != "admin" and option not in allowed:
            raise PermissionDenied(f"push option {option} is for admins on {app}; an admin may allow it to deployers: "
                                   f"minipaas settings:set {app} deployer-push-options {option}")
        known.add(option)
    return Options(skip_tests="skip-tests" in known, no_cache="no-cache" in known, canary=canary,
                   verbose="verbose" in known)


def _canary_option(option: str) -> int:
    """`canary=10` → 10: the share of new clients the pushed release starts with beside the live one (0: none)."""
    from minipaas.errors import InvalidInput

    value = option.removeprefix("canary=")
    if not (value.isascii() and value.isdigit() and len(value) <= 2):
        raise InvalidInput(f"push option canary={value[:20]!r}: a percentage from 0 (no canary) to 99, e.g. canary=10")
    return int(value)


def _rejected(live: object) -> str:
    if live is None:
        return "!     push rejected; nothing was deployed"
    return "!     push rejected; the previous release keeps serving"
