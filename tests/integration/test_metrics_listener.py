"""The metrics listener of the real plugin process: on loopback when only
a port is given, and a port already taken stops the plugin at start with
the address and the reason in its log."""

import re
import subprocess

import pytest

from tests.harness.plugin import PluginProcess

pytestmark = pytest.mark.integration


def _listeners(ns, pids):
    out = subprocess.run(["ip", "netns", "exec", ns.name, "ss", "-H",
                          "-ltnp"], capture_output=True, text=True,
                         check=True).stdout
    return [line.split()[3] for line in out.splitlines()
            if {int(p) for p in re.findall(r"pid=(\d+)", line)} &
            set(pids)]


def test_only_a_port_listens_on_loopback(ovs_ns):
    ns, ovs, base = ovs_ns
    plugin = PluginProcess(ns, base + "/plugin", ovs.db_remote,
                           extra_env={"OVSGRE_METRICS_ADDRESS": "9490"})
    plugin.start()
    try:
        assert _listeners(ns, plugin.pids()) == ["127.0.0.1:9490"]
        scrape = subprocess.run(
            ["ip", "netns", "exec", ns.name, "python3", "-c",
             "import urllib.request; print(urllib.request.urlopen("
             "'http://127.0.0.1:9490/metrics', timeout=5).read().decode())"],
            capture_output=True, text=True, timeout=30, check=True).stdout
        assert 'ovsgre_requests_total{call="Plugin.Activate"}' in scrape
        assert "ovsgre_ovsdb_up 1.0" in scrape
    finally:
        plugin.stop()


def test_a_taken_port_stops_the_plugin_with_the_reason(ovs_ns):
    ns, ovs, base = ovs_ns
    taken = subprocess.Popen(
        ["ip", "netns", "exec", ns.name, "python3", "-c",
         "import socket, time; s = socket.socket(); "
         "s.bind(('127.0.0.1', 9491)); s.listen(); print('up', flush=True);"
         " time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert taken.stdout.readline().strip() == "up"
        plugin = PluginProcess(ns, base + "/plugin", ovs.db_remote,
                               extra_env={"OVSGRE_METRICS_ADDRESS":
                                          "127.0.0.1:9491"})
        with pytest.raises(RuntimeError) as failed:
            plugin.start(timeout=30)
        assert plugin.proc.wait(timeout=30) != 0
        log = str(failed.value)
        assert "cannot serve metrics at 127.0.0.1:9491 " \
               "(--metrics-address)" in log, log
        assert "Address already in use" in log, log
    finally:
        taken.kill()
        taken.wait()

