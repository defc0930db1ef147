"""Health checks: the default one, and dokku-style CHECKS files."""

from __future__ import annotations

import pytest

from conftest import APPS, Paas, commit
from minipaas.deploy.health import Check, parse_checks
from minipaas.errors import InvalidInput


def test_parse_checks_reads_paths_contents_and_settings() -> None:
    checks = parse_checks("# comment\nWAIT=2\nTIMEOUT=7\nATTEMPTS=3\n\n/ from my own\n/health\n")
    assert checks.checks == (Check("/", "from my own"), Check("/health", ""))
    assert (checks.wait, checks.request_timeout) == (2.0, 7.0)
    assert Check("/", "").passes(302, "") and not Check("/", "").passes(404, "")
    assert Check("/").passes(404, "") and not Check("/").passes(500, "")


@pytest.mark.parametrize("text", ["", "# only a comment\n", "WAIT=soon\n/ x\n", "health\n", "//host/path x\n"])
def test_parse_checks_refuses_malformed_files(text: str) -> None:
    with pytest.raises(InvalidInput):
        parse_checks(text)


def test_checks_file_gates_the_deploy(paas: Paas) -> None:
    app, checkout = paas.deploy(APPS / "dockerfile")
    paas.run("settings:set", app, "healthcheck-timeout", "3")
    (checkout / "CHECKS").write_text("WAIT=0\n/ text the app never says\n")
    commit(checkout, "a check that cannot pass")
    result = paas.push(checkout, expect_ok=False)
    assert "did not pass GET / containing 'text the app never says'" in result.stderr
    assert paas.get(app).status == 200

    (checkout / "CHECKS").write_text("/ from my own Dockerfile\n")
    commit(checkout, "a check that passes")
    assert "passed: GET / containing 'from my own Dockerfile'" in paas.push(checkout).stderr
