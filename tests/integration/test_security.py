"""What the plugin exposes: one unix socket, 0660 from its first moment,
and no network listener at all."""

import os
import re
import stat
import subprocess
import threading
import time

import pytest

from tests.harness.plugin import PluginProcess

pytestmark = pytest.mark.integration


@pytest.mark.reliability("security", "no TCP or UDP listener")
def test_no_network_listener(plugin, ovs_ns):
    ns, _, _ = ovs_ns
    pids = plugin.pids()
    assert len(pids) >= 2            # master + worker
    out = subprocess.run(["ip", "netns", "exec", ns.name, "ss", "-H",
                          "-ltunp"], capture_output=True, text=True,
                         check=True).stdout
    owners = {int(p) for p in re.findall(r"pid=(\d+)", out)}
    assert not owners & set(pids), out
    # nor anything listening on the host's own namespace
    out = subprocess.run(["ss", "-H", "-ltunp"], capture_output=True,
                         text=True, check=True).stdout
    owners = {int(p) for p in re.findall(r"pid=(\d+)", out)}
    assert not owners & set(pids), out


@pytest.mark.reliability("security",
                         "socket is 0660 from the moment it exists")
def test_socket_mode_from_its_first_moment(ovs_ns):
    """Seen by a watcher polling while the plugin starts: never a moment
    with a wider mode (the socket is created under a umask, not chmod'ed
    afterwards)."""
    ns, ovs, base = ovs_ns
    plugin = PluginProcess(ns, base + "/plugin", ovs.db_remote)
    modes, done = [], threading.Event()

    def watch():
        while not done.is_set():
            try:
                modes.append(stat.S_IMODE(os.stat(plugin.socket).st_mode))
            except FileNotFoundError:
                pass
            time.sleep(0.0005)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        plugin.start()
    finally:
        done.set()
        watcher.join(5)
        plugin.stop()
    assert modes, "the watcher never saw the socket"
    assert set(modes) == {0o660}, sorted(set(modes))
    assert not any(m & 0o007 for m in modes)


def _half_requests(sock_path, count, kind):
    """Connections that send part of a request and then nothing."""
    import socket
    parts = {
        "nothing": b"",
        "head": b"POST /Plugin.Activate HTTP/1.1\r\nHost: x\r\n",
        "body": b"POST /NetworkDriver.CreateNetwork HTTP/1.1\r\nHost: x\r\n"
                b"Content-Length: 400\r\n\r\n{\"NetworkID\": ",
    }
    socks = []
    for i in range(count):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(sock_path)
        s.sendall(parts[kind])
        socks.append(s)
    return socks


@pytest.mark.reliability("security", "64 clients holding half-sent requests do not delay Docker's next call by more than a second, and are closed after the read timeout")
@pytest.mark.parametrize("kind", ["head", "body", "nothing"])
def test_half_sent_requests_do_not_hold_the_plugin(plugin, kind):
    from ovsgre.httpworker import READ_TIMEOUT
    from tests.harness.plugin import call
    socks = _half_requests(plugin.socket, 64, kind)
    try:
        for _ in range(3):
            start = time.monotonic()
            status, body = call(plugin.socket, "Plugin.Activate", timeout=30)
            took = time.monotonic() - start
            assert status == 200 and "NetworkDriver" in body["Implements"]
            assert took < 1.0, f"Plugin.Activate took {took:.2f} s"
        # a slow client that never finishes its request is let go
        socks[0].settimeout(READ_TIMEOUT + 10)
        start = time.monotonic()
        assert socks[0].recv(100) == b""
        assert time.monotonic() - start < READ_TIMEOUT + 5
    finally:
        for s in socks:
            s.close()


def test_requests_split_in_pieces_are_answered(plugin):
    """A request that arrives in small pieces (head, then body in two
    parts) is put together and answered, as is a keep-alive sequence."""
    import json
    import socket
    body = json.dumps({}).encode()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(plugin.socket)
    try:
        for _ in range(2):        # two requests on one connection
            s.sendall(b"POST /Plugin.Activate HTTP/1.1\r\nHost: x\r\n")
            time.sleep(0.2)
            s.sendall(b"Content-Length: %d\r\n\r\n" % len(body) + body[:1])
            time.sleep(0.2)
            s.sendall(body[1:])
            reply = b""
            while b"Implements" not in reply:
                reply += s.recv(4096)
            assert reply.startswith(b"HTTP/1.1 200")
    finally:
        s.close()
