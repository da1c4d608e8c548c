"""Port forwards: the host's 127.0.0.1:PORT into the sandbox's own loopback.

In `none` and `proxy` modes the sandbox has its own network namespace, so a dev server the
agent starts on 127.0.0.1:3000 is invisible to the host. For each `ports` entry the
supervisor listens on the host's loopback and, per connection, asks the sandbox's outer
process (which lives in that namespace) for a socket connected to the inside port.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable

from coop.net.proxy import splice

log = logging.getLogger("coop.forward")


class PortForward:
    def __init__(self, host_port: int, inside_port: int,
                 connect_inside: Callable[[int], socket.socket]) -> None:
        self.host_port = host_port
        self.inside_port = inside_port
        self.connect_inside = connect_inside
        self.server: asyncio.Server | None = None
        self.tasks: set[asyncio.Task[object]] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.host_port)

    def close(self) -> None:
        if self.server is not None:
            self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:  # see ForwardProxy.tasks
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        try:
            inside = self.connect_inside(self.inside_port)
        except OSError as exc:
            log.info("forward %d -> %d: %s", self.host_port, self.inside_port, exc)
            writer.close()
            return
        inside.setblocking(False)
        up_reader, up_writer = await asyncio.open_connection(sock=inside)
        try:
            await splice(reader, writer, up_reader, up_writer)
        finally:
            with contextlib.suppress(Exception):
                writer.close()
