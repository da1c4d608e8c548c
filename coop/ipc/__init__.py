"""The unix-socket protocol between clients, the daemon and session supervisors."""
