"""When a request has arrived whole (httpworker.request_complete)."""

import pytest

from ovsgre.httpworker import HEAD_MAX, Incoming, request_complete
from ovsgre.schema import MAX_BODY

HEAD = b"POST /Plugin.Activate HTTP/1.1\r\nHost: x\r\n"


@pytest.mark.parametrize("buf, whole", [
    (b"", False),
    (HEAD, False),
    (HEAD + b"\r\n", True),                               # no body
    (HEAD + b"Content-Length: 2\r\n\r\n{", False),
    (HEAD + b"Content-Length: 2\r\n\r\n{}", True),
    (HEAD + b"content-length:2\r\n\r\n{}", True),
    (HEAD + b"Content-Length: %d\r\n\r\n" % (MAX_BODY + 1), True),  # 413
    (HEAD + b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n", False),
    (HEAD + b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", True),
    (b"x" * (HEAD_MAX + 1), True),           # gunicorn refuses it itself
])
def test_request_complete(buf, whole):
    assert request_complete(bytearray(buf)) is whole


REQUESTS = [
    HEAD + b"Content-Length: 2\r\n\r\n{}",
    HEAD + b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
    HEAD + b"\r\n",
]


@pytest.mark.parametrize("request_bytes", REQUESTS)
def test_a_request_in_pieces_is_whole_only_at_its_last_byte(request_bytes):
    """Split anywhere (the head's end and the last chunk across two
    reads too): whole exactly when the last byte is in."""
    for size in range(1, 6):
        incoming = Incoming()
        pieces = [request_bytes[i:i + size]
                  for i in range(0, len(request_bytes), size)]
        said = [incoming.add(piece) for piece in pieces]
        assert said == [False] * (len(pieces) - 1) + [True], size


def test_a_full_port_range_body_is_read_whole():
    """`docker run -p 1-65535:1-65535 -p 1-65535:1-65535/udp` and their
    exposed ports: ~13 MB of JSON in 64 KiB reads."""
    body = b'{"Proto":6,"IP":"","Port":65535,"HostIP":"","HostPort":65535,' \
        b'"HostPortEnd":65535},{"Proto":6,"Port":65535},' * (2 * 65535)
    assert MAX_BODY > len(body) > 12 << 20
    incoming = Incoming()
    data = HEAD + b"Content-Length: %d\r\n\r\n" % len(body) + body
    said = [incoming.add(data[i:i + 65536])
            for i in range(0, len(data), 65536)]
    assert said[-1] and not any(said[:-1])
