"""The access layer: who may run what (rules, ssh keys, sudoers) and the audit log."""
