"""The daemon (control plane) and the per-session supervisors (data plane)."""
