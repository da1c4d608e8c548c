"""The raw output ring of a PTY: the last N bytes, addressed by a running sequence number.

Byte `seq` of the PTY's whole output lives at `seq - start` in the ring while it is
retained. Scrollback, `coop logs`, screen catch-up and replay all read from here, so the
stream to clients never waits for anything slower than a memcpy.
"""

from __future__ import annotations

DEFAULT_CAPACITY = 1 << 20


class OutputRing:
    """A bounded byte buffer with absolute positions."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.capacity = capacity
        self._buf = bytearray()
        self.start = 0
        """Sequence number of the oldest retained byte."""

    @property
    def end(self) -> int:
        """Sequence number one past the newest byte (= total bytes ever written)."""
        return self.start + len(self._buf)

    def append(self, data: bytes) -> None:
        self._buf += data
        excess = len(self._buf) - self.capacity
        if excess > 0:
            # Trim in big steps so appends stay amortised O(len(data)).
            trim = max(excess, self.capacity // 8)
            trim = min(trim, len(self._buf))
            del self._buf[:trim]
            self.start += trim

    def read(self, since: int, limit: int | None = None) -> tuple[int, bytes]:
        """Bytes from `since` (clamped to what is retained): (actual start, data)."""
        begin = max(since, self.start)
        offset = begin - self.start
        stop = len(self._buf) if limit is None else min(len(self._buf), offset + limit)
        return begin, bytes(self._buf[offset:stop])

    def tail_lines(self, count: int) -> bytes:
        """The last `count` lines (by `\\n`) that are retained."""
        if count <= 0:
            return b""
        index = len(self._buf)
        if self._buf.endswith(b"\n"):
            index -= 1
        for _ in range(count):
            index = self._buf.rfind(b"\n", 0, index)
            if index < 0:
                return bytes(self._buf)
        return bytes(self._buf[index + 1:])
