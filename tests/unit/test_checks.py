"""Health checks: the default one, and dokku-style CHECKS files."""

from __future__ import annotations

import pytest

from minipaas.deploy.health import Check, parse_checks
from minipaas.errors import InvalidInput


def test_parse_checks_reads_paths_contents_and_settings() -> None:
    checks = parse_checks("# comment\nWAIT=2\nTIMEOUT=7\nATTEMPTS=3\n\n/ from my own\n/health\n")
    assert checks.checks == (Check("/", "from my own"), Check("/health", ""))
    assert (checks.wait, checks.request_timeout) == (2.0, 7.0)
    assert Check("/", "").passes(302, "") and not Check("/", "").passes(404, "")
    assert Check("/").passes(404, "") and not Check("/").passes(500, "")


@pytest.mark.parametrize("text", ["", "# only a comment\n", "WAIT=soon\n/ x\n", "health\n", "//host/path x\n",
                                  "/caf\u00e9 ok\n", "/a\tb\n", "/\x7f\n", "WAIT=\u00b2\n/\n", "TIMEOUT=\u0661\n/\n",
                                  "WAIT=3601\n/\n", "TIMEOUT=" + "9" * 400 + "\n/\n"])
def test_parse_checks_refuses_malformed_files(text: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        parse_checks(text)
    assert "\n" not in refused.value.message and "\t" not in refused.value.message


