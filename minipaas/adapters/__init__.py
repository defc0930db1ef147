"""The adapters: Docker, nginx, git, cgroups, ssh (paramiko) and subprocesses.

They import nothing of minipaas but its errors (an import-linter contract)."""
