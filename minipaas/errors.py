"""The one exception tree of minipaas.

Every failure a user can cause or meet is a `MinipaasError` carrying a message written for that
user; the CLI turns it into one line on stderr and an exit code (see `cli.main`). Anything else
that escapes is a bug and is reported as such.
"""

from __future__ import annotations

import errno


class MinipaasError(Exception):
    """A failure with a message for the user."""

    exit_code = 1

    def __init__(self, message: str, *, detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        # Multi-line context (a build log tail, nginx's own words) printed after the message.
        self.detail = detail


class InvalidInput(MinipaasError):
    """A name, value or argument that does not have the required form."""


class NotFound(MinipaasError):
    """An app, release, domain or key that does not exist."""


class Conflict(MinipaasError):
    """Something that already exists, or a state that forbids the operation."""


class BuildFailed(MinipaasError):
    """The image could not be built."""

    def __init__(self, message: str, *, detail: str = "", log: str = "") -> None:
        super().__init__(message, detail=detail)
        self.log = log  # the whole build log, kept with the failed release (`releases:info`)


class TestsFailed(BuildFailed):
    """The app's tests failed in the build's test stage: `detail` holds the tail of their output."""

    def __init__(self, message: str, *, detail: str = "", log: str = "", seconds: float | None = None) -> None:
        super().__init__(message, detail=detail, log=log)
        self.seconds = seconds  # how long they ran


class DeployFailed(MinipaasError):
    """The new release did not become healthy, or could not be switched to."""


class ProxyError(MinipaasError):
    """nginx rejected a generated configuration or could not be (re)started."""


class EngineError(MinipaasError):
    """The Docker engine is unreachable or refused a request."""


class StackMissing(MinipaasError):
    """No base image for the requested runtime version exists locally."""


class DiskFull(MinipaasError):
    """A write found no space left on its disk (the home's: the database, a build's context, the logs)."""


def no_space(where: str = "") -> DiskFull:
    """The one line for a write that found its disk full; `where` names the file, or the program that said so."""
    return DiskFull(f"no space left on the disk{' ' + where if where else ''}: free some (`minipaas gc` removes old "
                    "releases' images and files) and try again")


def disk_full(exc: BaseException) -> DiskFull | None:
    """`no_space` for an OSError that says the disk is full (ENOSPC, EDQUOT), wherever it happened; None for any
    other failure."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return no_space(f"of {exc.filename}" if exc.filename else "")
    return None
