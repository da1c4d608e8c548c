"""Terminals: relaying a PTY to the local terminal (later: fan-out, filter, screens)."""
