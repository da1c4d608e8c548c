"""`python -m coop.daemon` runs the daemon in the foreground (the CLI starts it detached)."""

from coop.daemon.server import main

main()
