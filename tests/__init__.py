"""Tests: unit/ (no engine), engine/ (the Docker engine and nginx), cluster/ (a Swarm of node containers)."""
