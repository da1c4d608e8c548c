"""Network policy: the allow-list HTTP(S) proxy, port forwards and veth (SPEC §5.4)."""
