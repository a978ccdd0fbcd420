"""When a request has arrived whole (httpworker.request_complete)."""

import pytest

from ovsgre.httpworker import BODY_MAX, HEAD_MAX, request_complete

HEAD = b"POST /Plugin.Activate HTTP/1.1\r\nHost: x\r\n"


@pytest.mark.parametrize("buf, whole", [
    (b"", False),
    (HEAD, False),
    (HEAD + b"\r\n", True),                               # no body
    (HEAD + b"Content-Length: 2\r\n\r\n{", False),
    (HEAD + b"Content-Length: 2\r\n\r\n{}", True),
    (HEAD + b"content-length:2\r\n\r\n{}", True),
    (HEAD + b"Content-Length: %d\r\n\r\n" % (BODY_MAX + 1), True),  # 413
    (HEAD + b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n", False),
    (HEAD + b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", True),
    (b"x" * (HEAD_MAX + 1), True),           # gunicorn refuses it itself
])
def test_request_complete(buf, whole):
    assert request_complete(bytearray(buf)) is whole
