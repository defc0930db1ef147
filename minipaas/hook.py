"""The entry point that app repositories' pre-receive hooks written before the layers import
(`from minipaas.hook import main`): kept so that an upgraded host deploys them as before, without
rewriting their hooks. New hooks import minipaas.deploy.hook itself (hooks/pre-receive)."""

from minipaas.deploy.hook import main

__all__ = ["main"]
