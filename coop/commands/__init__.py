"""One module per CLI command; `coop.cli` imports each only when it runs."""
