"""What tests share: a minipaas host (host.py), a real sshd (sshd.py), the engine tier, CI rule and workers
(pytest plugins named in tests/conftest.py), the cluster's node containers and load tools."""
