"""`coop serve`: the web UI's server, inside the daemon (SPEC §10)."""
