"""The ssh layer: the forced command of every key (sshentry) and the laptop's client (remote)."""
