"""Task standard input: a pipe per task, written without blocking the shell.

Input arrives as RFC 24 `data` events (from `flux job attach` through the shell's
`stdin` service); the leader shell appends them to the `input` eventlog and every
shell writes them to its tasks. `input.stdin.type=file` gives the tasks the file
itself (set up by the `input` plugin) and no pipe.
"""

from __future__ import annotations

import asyncio
import os


class StdinWriter:
    """The write end of one task's stdin pipe."""

    __slots__ = ("loop", "fd", "buf", "closing", "waiting")

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int):
        self.loop = loop
        self.fd = fd
        self.buf = bytearray()
        self.closing = False
        self.waiting = False
        os.set_blocking(fd, False)

    def write(self, data: bytes) -> None:
        if self.fd < 0 or self.closing:
            return
        if not self.buf:
            try:
                n = os.write(self.fd, data)
            except BlockingIOError:
                n = 0
            except OSError:  # the task closed its stdin or exited
                self._close_now()
                return
            data = data[n:]
        if data:
            self.buf += data
            if not self.waiting:
                self.waiting = True
                self.loop.add_writer(self.fd, self._writable)

    def _writable(self) -> None:
        try:
            n = os.write(self.fd, self.buf)
        except BlockingIOError:
            return
        except OSError:
            self._close_now()
            return
        del self.buf[:n]
        if not self.buf:
            self.loop.remove_writer(self.fd)
            self.waiting = False
            if self.closing:
                self._close_now()

    def close(self) -> None:
        """Close once buffered data is written (eof for the task)."""
        self.closing = True
        if not self.buf:
            self._close_now()

    def _close_now(self) -> None:
        if self.fd >= 0:
            if self.waiting:
                self.loop.remove_writer(self.fd)
                self.waiting = False
            os.close(self.fd)
            self.fd = -1
        self.buf.clear()
