"""The adapters: Docker, nginx, git, cgroups, ssh (paramiko) and subprocesses; they import nothing of minipaas but errors."""
