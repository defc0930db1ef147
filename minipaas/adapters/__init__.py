"""The adapters: Docker, nginx, git, cgroups and subprocesses; they import nothing of minipaas but errors."""
