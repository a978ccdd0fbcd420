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

READ_TIMEOUT = 10.0       # seconds for a whole request to arrive
HEAD_MAX = 64 * 1024      # beyond this, gunicorn's own limits answer
BODY_MAX = 1 << 20        # protocol.MAX_BODY: a larger one is refused (413)
_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)[ \t]*(?=\r\n|$)")
_CHUNKED = re.compile(rb"\r\ntransfer-encoding:[^\r]*chunked")


def request_complete(buf):
    """Whether buf holds a whole HTTP/1.x request (or enough that the
    application refuses it without reading more)."""
    head_end = buf.find(b"\r\n\r\n")
    if head_end < 0:
        return len(buf) > HEAD_MAX
    head = bytes(buf[:head_end]).lower()
    body = len(buf) - head_end - 4
    if _CHUNKED.search(head):
        return buf.find(b"0\r\n\r\n", head_end + 4) >= 0 or body > BODY_MAX
    match = _LENGTH.search(head)
    length = int(match.group(1)) if match else 0
    return length > BODY_MAX or body >= length


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
        conn.whole = bytearray()
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
        conn.whole += data
        if not request_complete(conn.whole):
            return
        self.poller.unregister(conn.sock)
        self.reading.remove(conn)
        conn.sock.setblocking(True)
        conn.init()
        conn.parser.unreader.unread(bytes(conn.whole))
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
