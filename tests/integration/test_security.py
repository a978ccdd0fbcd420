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
