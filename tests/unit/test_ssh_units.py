"""minipaas over ssh without a server: the forms of a repository path a git client sends."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(("path", "app"), [("hello", "hello"), ("hello.git", "hello"), ("/hello", "hello"),
                                           ("~/hello.git", "hello"), ("/hello.git/", "hello")])
def test_repository_path_forms(path: str, app: str) -> None:
    from minipaas.ssh.sshentry import REPO_PATH

    assert REPO_PATH.fullmatch(path).group("app") == app

