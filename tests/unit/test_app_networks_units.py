"""App networks (adapters/networks.py) without the engine: the next free subnet of a pool."""

from __future__ import annotations

from minipaas.adapters import networks


def test_free_subnet_skips_what_is_taken() -> None:
    assert networks.free_subnet("10.9.0.0/24", []) == "10.9.0.0/26"
    assert networks.free_subnet("10.9.0.0/24", ["10.9.0.0/26", "10.9.0.128/25"]) == "10.9.0.64/26"
    assert networks.free_subnet("10.9.0.0/25", ["10.9.0.0/24"]) is None

