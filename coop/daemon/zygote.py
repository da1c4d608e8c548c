"""The zygote: a clean, pre-imported process that forks session supervisors.

Forking the daemon itself would copy its running asyncio loop into every supervisor; a
fresh `python -m` costs ~100 ms of imports. So the daemon forks this helper before its
loop starts; it waits for requests and double-forks a supervisor for each, which is
detached (own session, reparented away from the daemon) and so survives the daemon.
"""

from __future__ import annotations

import json
import os
import signal
import socket
from typing import Any

from coop.proctitle import set_title


class Zygote:
    """The daemon's handle on the zygote process."""

    def __init__(self) -> None:
        self.sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        # Loaded here so that every supervisor starts with them already imported.
        import coop.daemon.supervisor  # noqa: F401

        self.pid = os.fork()
        if self.pid == 0:
            set_title("coop-zygote")
            self.sock.close()
            _serve(theirs)
            os._exit(0)
        theirs.close()

    def spawn(self, request: dict[str, Any]) -> int:
        """Start a supervisor for `request`; returns the read end of its status pipe."""
        read_end, write_end = os.pipe()
        try:
            socket.send_fds(self.sock, [json.dumps(request).encode()], [write_end])
        finally:
            os.close(write_end)
        return read_end

    def close(self) -> None:
        self.sock.close()


def _serve(sock: socket.socket) -> None:
    from coop.sandbox import syscalls as sc

    sc.prctl(sc.PR_SET_PDEATHSIG, signal.SIGTERM)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    while True:
        try:
            data, fds, _, _ = socket.recv_fds(sock, 1 << 20, 1)
        except OSError:
            return
        if not data:
            return
        request = json.loads(data)
        child = os.fork()
        if child == 0:
            sock.close()
            if os.fork() == 0:  # the supervisor: reparented once its parent exits
                os.setsid()
                _supervise(request, fds[0])
            os._exit(0)
        os.close(fds[0])
        os.waitpid(child, 0)


def _supervise(request: dict[str, Any], status_fd: int) -> None:
    import logging

    from coop.daemon.supervisor import run_supervisor

    set_title("coop-session", str(request.get("name", "")))
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    logging.basicConfig(level=logging.INFO, force=True,
                        format=f"%(asctime)s supervisor[{os.getpid()}] %(levelname)s "
                               "%(message)s")
    try:
        run_supervisor(request, status_fd)
    finally:
        os._exit(0)
