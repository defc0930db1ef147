"""The address pool at its end, against the real engine (issue 20): a host whose MINIPAAS_SUBNETS holds two /26s,
both taken by other networks. `apps:create` and `report` say so in one line; a container app's push is refused
in one line before anything is built; a static site, which needs no network, deploys; and once a network is
freed, the refused app's next push deploys."""

from __future__ import annotations

import ipaddress
import json
import random
import uuid
from pathlib import Path

from tests.helpers.host import ROOT, docker, paas_host

STATIC_SITE = ROOT / "tests" / "apps" / "static-site"
SMALL_APP = ROOT / "tests" / "apps" / "env-echo"  # a Dockerfile app: a build of seconds, nothing to download


def _free_pool() -> str:
    """A /25 no network of the engine overlaps (other tests and instances share it)."""
    used = [ipaddress.ip_network(c["Subnet"]) for n in json.loads(docker("network", "inspect",
                                                                           *docker("network", "ls", "-q").split()))
            for c in (n.get("IPAM") or {}).get("Config") or [] if c.get("Subnet") and ":" not in c["Subnet"]]
    for _ in range(100):
        pool = ipaddress.ip_network(f"10.217.{random.randrange(256)}.{random.choice((0, 128))}/25")
        if not any(pool.overlaps(u) for u in used):
            return str(pool)
    raise AssertionError("no free /25 in 10.217.0.0/16")


def test_a_full_address_pool_is_said_in_one_line_and_refused_before_the_build(tmp_path: Path,
                                                                                engine_ready: None) -> None:
    tag = uuid.uuid4().hex[:8]
    pool = _free_pool()
    fillers = [f"mp-test-pool-{tag}-{n}" for n in range(2)]
    try:
        for name, subnet in zip(fillers, ipaddress.ip_network(pool).subnets(new_prefix=26), strict=True):
            docker("network", "create", "--label", f"minipaas-test={tag}", "--subnet", str(subnet), name)
        with paas_host(tmp_path / "work", MINIPAAS_SUBNETS=pool) as paas:
            full = f"MINIPAAS_SUBNETS {pool} has no /26 network left (all 2 taken)"
            app = paas.new_app("pool")
            created = paas.run("apps:create", f"{app}-2")
            assert f"warning: {full}" in created.stdout, created.stdout
            report = paas.run("report").stdout
            assert f"MINIPAAS_SUBNETS {pool}: 2 of its 2 /26 networks taken" in report and full in report, report

            checkout = paas.checkout(app, SMALL_APP)
            refused = paas.push(checkout, expect_ok=False)
            output = refused.stdout + refused.stderr
            lines = [line for line in output.splitlines() if "needs a network of its own" in line]
            assert len(lines) == 1 and f"MINIPAAS_SUBNETS {pool} has no /26 left (all 2 taken)" in lines[0], output
            assert "Building" not in output and "#1 " not in output, output  # refused before the build
            assert not docker("images", "-q", "--filter", f"label=minipaas.app={app}",
                              "--filter", f"label=minipaas={paas.home}").split()
            assert paas.get(app).status != 200

            site = paas.new_app("site")  # the honest variant: a static site needs no network
            paas.push(paas.checkout(site, STATIC_SITE))
            assert paas.get(site).status == 200

            docker("network", "rm", fillers.pop())  # room for one: the refused app's next push deploys
            paas.push(checkout)
            served = paas.get(app)
            assert served.status == 200 and served.body.startswith("v1 "), served
    finally:
        for name in fillers:
            docker("network", "rm", name)
