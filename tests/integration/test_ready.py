"""Join answers only once ovs-vswitchd forwards on the container's port,
against a real ovsdb-server and ovs-vswitchd: the container's first packet
must not be lost, and a port vswitchd does not take ends in a clear error
within the configured bound."""

import concurrent.futures
import contextlib
import os
import signal
import time

import pytest

from tests.harness import Netns
from tests.harness.plugin import PluginProcess
from tests.integration.test_dataplane import (NET, create_network, ep_id,
                                              port_gone)

pytestmark = pytest.mark.integration

SUBNET = "198.18.10"


def _plugin(ns, ovs, base, **env):
    proc = PluginProcess(ns, base + "/plugin", ovs.db_remote, extra_env=dict(
        {"OVSGRE_MTU": "1400"}, **env))
    return proc.start()


def _create(plugin, eid, n):
    return plugin.ok("NetworkDriver.CreateEndpoint", {
        "NetworkID": NET, "EndpointID": eid, "Options": {},
        "Interface": {"Address": f"{SUBNET}.{n}/24", "AddressIPv6": "",
                      "MacAddress": ""}})


def _join(plugin, eid):
    return plugin.call("NetworkDriver.Join", {
        "NetworkID": NET, "EndpointID": eid, "Options": {},
        "SandboxKey": "/var/run/docker/netns/" + eid[:12]}, timeout=60)


def _into_sandbox(ns, peer_if, sandbox, n):
    """What Docker does after Join: move the end, name it eth0, address
    it, bring it up."""
    ns.run(["ip", "link", "set", peer_if, "netns", sandbox.name])
    for argv in (["ip", "link", "set", peer_if, "name", "eth0"],
                 ["ip", "addr", "add", f"{SUBNET}.{n}/24", "dev", "eth0"],
                 ["ip", "link", "set", "eth0", "up"]):
        sandbox.run(argv)


@contextlib.contextmanager
def _sandboxes(ns, count):
    boxes = [Netns(f"{ns.name}-c{i}") for i in range(count)]
    try:
        for box in boxes:
            box.create()
        yield boxes
    finally:
        for box in boxes:
            box.delete()


@contextlib.contextmanager
def _stopped(pid):
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


@pytest.mark.kernel_datapath
@pytest.mark.reliability("load", "Join waits for ovs-vswitchd (held with "
                         "SIGSTOP) and the first ping afterwards is answered")
def test_join_waits_for_vswitchd_and_the_first_ping_is_answered(ovs_ns):
    ns, ovs, base = ovs_ns
    plugin = _plugin(ns, ovs, base)
    try:
        create_network(plugin)
        with _sandboxes(ns, 2) as (box_a, box_b):
            a, b = ep_id(1), ep_id(2)
            _create(plugin, a, 2)
            assert _join(plugin, a)[0] == 200
            _into_sandbox(ns, "ovgc" + a[:11], box_a, 2)
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                with _stopped(ovs.vswitchd_pid):
                    _create(plugin, b, 3)
                    joining = pool.submit(_join, plugin, b)
                    time.sleep(1.0)
                    # vswitchd has not taken the port: Join must not answer
                    assert not joining.done()
                status, reply = joining.result(timeout=30)
            assert status == 200, reply
            assert int(ovs.vsctl("get", "Interface", "ovgh" + b[:11],
                                 "ofport")) > 0
            _into_sandbox(ns, reply["InterfaceName"]["SrcName"], box_b, 3)
            # the container's very first packet: one ping, one second
            out = box_b.run(["ping", "-c", "1", "-W", "1", f"{SUBNET}.2"],
                            check=False)
            assert out.returncode == 0, out.stdout + out.stderr
    finally:
        plugin.stop()


@pytest.mark.reliability("fault", "ovs-vswitchd never takes the port: Join "
                         "fails within --ready-timeout naming the port")
def test_join_fails_within_the_bound_when_vswitchd_does_not_take_the_port(
        ovs_ns):
    ns, ovs, base = ovs_ns
    plugin = _plugin(ns, ovs, base, OVSGRE_READY_TIMEOUT="1.5")
    try:
        create_network(plugin)
        eid = ep_id(3)
        with _stopped(ovs.vswitchd_pid):
            _create(plugin, eid, 4)
            start = time.monotonic()
            status, reply = _join(plugin, eid)
            took = time.monotonic() - start
        assert status == 500, reply
        assert "ovgh" + eid[:11] in reply["Err"]
        assert "did not put port" in reply["Err"] and "1.5 s" in \
            reply["Err"], reply
        assert 1.5 <= took < 4, took
        # Docker's DeleteEndpoint after a failed Join leaves nothing
        plugin.ok("NetworkDriver.DeleteEndpoint",
                  {"NetworkID": NET, "EndpointID": eid})
        assert port_gone(ovs, "ovgh" + eid[:11])
    finally:
        plugin.stop()


def test_join_reports_a_port_vswitchd_refused(ovs_ns):
    ns, ovs, base = ovs_ns
    plugin = _plugin(ns, ovs, base, OVSGRE_READY_TIMEOUT="5")
    try:
        create_network(plugin)
        eid = ep_id(4)
        _create(plugin, eid, 5)
        host_if = "ovgh" + eid[:11]
        # someone gives the port a type vswitchd cannot open
        ovs.vsctl("set", "Interface", host_if, "type=geneve")
        start = time.monotonic()
        status, reply = _join(plugin, eid)
        assert status == 500, reply
        assert f"ovs-vswitchd refused port {host_if} (type geneve)" in \
            reply["Err"], reply
        assert time.monotonic() - start < 4     # no need to wait it out
    finally:
        plugin.stop()


def test_network_port_type_option_gives_its_ports_that_type(ovs_ns):
    """Host default: plain (system) ports; a network's -o ovsgre.port-type
    is probed once at CreateNetwork and given to its ports."""
    ns, ovs, base = ovs_ns
    plugin = _plugin(ns, ovs, base)
    try:
        create_network(plugin)
        fast = "f" * 64
        create_network(plugin, net=fast, pool="198.18.11.0/24",
                       opts={"ovsgre.port-type": "afxdp-nonpmd"})
        plain = ep_id(5)
        _create(plugin, plain, 6)
        plugin.ok("NetworkDriver.CreateEndpoint", {
            "NetworkID": fast, "EndpointID": ep_id(6), "Options": {},
            "Interface": {"Address": "198.18.11.6/24", "AddressIPv6": "",
                          "MacAddress": ""}})
        assert ovs.vsctl("get", "Interface", "ovgh" + plain[:11],
                         "type").strip() in ('""', "system")
        assert ovs.vsctl("get", "Interface", "ovgh" + ep_id(6)[:11],
                         "type").strip() == "afxdp-nonpmd"
        status, reply = plugin.call("NetworkDriver.Join", {
            "NetworkID": fast, "EndpointID": ep_id(6), "Options": {},
            "SandboxKey": "/var/run/docker/netns/x"}, timeout=60)
        assert status == 200, reply
        # the probe port is gone again
        assert "ovghzzprobe0000" not in ovs.vsctl("list-ports",
                                                  "br-ovsgre").split()
    finally:
        plugin.stop()
