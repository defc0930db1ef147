"""Running apps: `ps`, logs, one-offs, scaling, `ps:restore`, the watchers, gc, cluster drains."""
