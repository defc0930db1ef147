"""The routing layer: nginx's configuration, the routing table, static sites and docs, certificates, ACME."""
