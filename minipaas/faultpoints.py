"""Named moments of a deploy where a test can freeze the process that reaches them, to kill it exactly there.

The fault tests (tests/test_faults.py) set MINIPAAS_TEST_PAUSE_AT to one of STEPS for a push: the deploying
process stops itself (SIGSTOP) when it reaches that step; the test, which sees it stopped, checks what serves
meanwhile, then kills it (SIGKILL), as a crash would, or lets it go on (SIGCONT). A SIGKILL sent from outside
at a moment the test guessed would land anywhere; this lands at the step named, every time.

The variable is read once, when this module loads, and taken out of the environment then, so that the processes
this one starts (the watcher, a retirer) never pause. Unset (always, outside the tests) `reached` compares two
strings and returns: no behaviour changes. Only the host's root can set it for a push: sshd passes no variable of
a pusher's on (PermitUserEnvironment no) and sudo resets the environment.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

VARIABLE = "MINIPAAS_TEST_PAUSE_AT"
STEPS = {
    "build": "the builder runs (its first line of output has arrived)",
    "started": "the new release's containers were started, none health-checked yet",
    "health": "a new web container's health check has begun and not passed yet",
    "switch": "the routing table's files name the new containers, nginx has not been told yet",
    "record": "inside the transaction that records the release live, before its commit",
    "retire": "the release is recorded live, the old containers not yet handed to a retirer",
}

_AT = os.environ.pop(VARIABLE, "")


def reached(step: str) -> None:
    """The deploy is at `step` (one of STEPS): stop here, once, if a test asked for it."""
    global _AT
    if step == _AT:
        _AT = ""  # a process the test lets go on (SIGCONT) does not stop again
        os.kill(os.getpid(), signal.SIGSTOP)


def on_first_call(step: str, feed: Callable[[str], None]) -> Callable[[str], None]:
    """`feed`, reaching `step` before its first line (the builder's output: the builder runs)."""
    if step != _AT:
        return feed
    first = [True]

    def fed(line: str) -> None:
        if first[0]:
            first[0] = False
            reached(step)
        feed(line)

    return fed
