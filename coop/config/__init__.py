"""Configuration: the Coopfile, the global config and their merge (SPEC §3)."""
