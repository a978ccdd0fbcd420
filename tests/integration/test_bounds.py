"""Every operation has a bound: a hung ovsdb-server makes a call fail with a
clear error in bounded time (dockerd has no timeout of its own), and once
it answers again the plugin recovers and leaves nothing behind."""

import os
import signal
import time

import pytest

from tests.harness.plugin import PluginProcess

from tests.integration.test_dataplane import NET, create_network, ep_id, our_links

pytestmark = pytest.mark.integration

TIMEOUT = 2   # OVSGRE_OVSDB_TIMEOUT for this test


def _endpoint_body(eid):
    return {"NetworkID": NET, "EndpointID": eid, "Options": {},
            "Interface": {"Address": "198.18.10.9/24", "AddressIPv6": "",
                          "MacAddress": ""}}


@pytest.mark.reliability("fault", "ovsdb-server hangs (SIGSTOP) mid-call: "
                         "bounded error, then recovery without leftovers")
def test_hung_ovsdb_gives_a_bounded_error_and_recovers(ovs_ns):
    ns, ovs, base = ovs_ns
    plugin = PluginProcess(ns, base + "/plugin", ovs.db_remote, extra_env={
        "OVSGRE_OVSDB_TIMEOUT": str(TIMEOUT), "OVSGRE_STALE_AFTER": "4"})
    plugin.start()
    try:
        create_network(plugin)
        os.kill(ovs.ovsdb_pid, signal.SIGSTOP)
        try:
            start = time.monotonic()
            status, reply = plugin.call("NetworkDriver.CreateEndpoint",
                                        _endpoint_body(ep_id(1)), timeout=60)
            took = time.monotonic() - start
        finally:
            os.kill(ovs.ovsdb_pid, signal.SIGCONT)
        assert status >= 500 and "OVSDB" in reply["Err"], (status, reply)
        # the port transaction and the undo each wait at most TIMEOUT
        assert took < 2 * TIMEOUT + 3, took
        # ovsdb-server answers again: the plugin works again by itself
        deadline = time.monotonic() + 30
        while True:
            status, reply = plugin.call("NetworkDriver.CreateEndpoint",
                                        _endpoint_body(ep_id(2)), timeout=60)
            if status == 200 or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert status == 200, reply
        # and nothing of the failed endpoint stays: no record, port or link
        # (the janitor finishes what the timeouts left)
        failed_if = "ovgh" + ep_id(1)[:11]
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            ports = ovs.vsctl("list-ports", "br-ovsgre").split()
            records = os.listdir(os.path.join(plugin.state_dir, "endpoints"))
            if failed_if not in ports and failed_if not in our_links(ns) \
                    and not any(r.startswith(ep_id(1)) for r in records):
                break
            time.sleep(0.5)
        assert failed_if not in ovs.vsctl("list-ports", "br-ovsgre").split()
        assert failed_if not in our_links(ns)
        assert not any(r.startswith(ep_id(1)) for r in os.listdir(
            os.path.join(plugin.state_dir, "endpoints")))
        assert "ovgh" + ep_id(2)[:11] in ovs.vsctl("list-ports",
                                                   "br-ovsgre").split()
    finally:
        plugin.stop()
