"""gunicorn's threaded worker, with every request read whole before a
thread takes it.

gunicorn's gthread worker hands a connection to a request thread as soon
as it has data, and the thread then blocks reading the rest: a client that
sends half a request holds a thread for good, and 16 such clients leave no
thread for Docker, which then hangs every container start.  Here the
worker's main loop reads requests without blocking (the poller it already
runs) until the head and the body Content-Length announces are in, and
only then gives the bytes to a thread; a connection that has not sent a
whole request within READ_TIMEOUT seconds is closed.
"""

import re
import selectors
import time
from functools import partial

from gunicorn.workers.gthread import ThreadWorker

from .schema import MAX_BODY

READ_TIMEOUT = 10.0       # seconds for a whole request to arrive
HEAD_MAX = 64 * 1024      # beyond this, gunicorn's own limits answer
_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)[ \t]*(?=\r\n|$)")
_CHUNKED = re.compile(rb"\r\ntransfer-encoding:[^\r]*chunked")
_LAST_CHUNK = b"0\r\n\r\n"


class Incoming:
    """A request arriving in pieces.  add() says whether it is whole (or
    far enough that the application refuses it without reading more),
    looking at each byte about once: a 20 MB body comes in 65 KiB reads."""

    def __init__(self):
        self.buf = bytearray()
        self.body_start = None    # offset of the body, once the head is in
        self.total = None         # length of the whole request (not chunked)
        self.scanned = 0          # where to look next for the head's end
        #                           or the last chunk

    def add(self, data):
        self.buf += data
        if self.body_start is None and not self._head():
            return len(self.buf) > HEAD_MAX
        body = len(self.buf) - self.body_start
        if self.total is not None:
            return len(self.buf) >= self.total or \
                self.total - self.body_start > MAX_BODY
        found = self.buf.find(_LAST_CHUNK, self.scanned) >= 0
        self.scanned = max(self.body_start, len(self.buf) - 4)
        return found or body > MAX_BODY

    def _head(self):
        head_end = self.buf.find(b"\r\n\r\n", self.scanned)
        if head_end < 0:
            self.scanned = max(0, len(self.buf) - 3)
            return False
        self.body_start = self.scanned = head_end + 4
        head = bytes(self.buf[:head_end]).lower()
        if not _CHUNKED.search(head):
            match = _LENGTH.search(head)
            self.total = self.body_start + (int(match.group(1)) if match
                                            else 0)
        return True


def request_complete(buf):
    """Whether buf holds a whole HTTP/1.x request (or enough that the
    application refuses it without reading more)."""
    return Incoming().add(buf)


class WholeRequestWorker(ThreadWorker):
    def init_process(self):
        self.reading = []          # connections whose request is not in
        super().init_process()

    def enqueue_req(self, conn):
        parser = conn.parser
        if parser is not None and parser.unreader.buf.getvalue():
            super().enqueue_req(conn)   # the next request is read already
            return
        conn.sock.setblocking(False)
        conn.whole = Incoming()
        conn.read_deadline = time.monotonic() + READ_TIMEOUT
        self.reading.append(conn)
        self.poller.register(conn.sock, selectors.EVENT_READ,
                             partial(self._read_some, conn))

    def _read_some(self, conn, _sock):
        try:
            data = conn.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:                   # the client went away
            self._drop(conn)
            return
        if not conn.whole.add(data):
            return
        self.poller.unregister(conn.sock)
        self.reading.remove(conn)
        conn.sock.setblocking(True)
        conn.init()
        conn.parser.unreader.unread(bytes(conn.whole.buf))
        conn.data_ready = True
        conn.whole = None
        super().enqueue_req(conn)

    def _drop(self, conn):
        self.poller.unregister(conn.sock)
        self.reading.remove(conn)
        self.nr_conns -= 1
        conn.close()

    def murder_keepalived(self, *args, **kwargs):
        super().murder_keepalived(*args, **kwargs)
        now = time.monotonic()
        for conn in [c for c in self.reading if c.read_deadline <= now]:
            self._drop(conn)
