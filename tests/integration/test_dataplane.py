"""Endpoints in OVSDB and in the kernel, through the plugin's HTTP API."""

import json
import os
import stat
import time

import pytest

from tests.harness import ethtool_features, link_json
from tests.harness.datapath import DATAPATH, KERNEL

# Also run with the kernel datapath, in the test VM (tests/vm).
pytestmark = [pytest.mark.integration, pytest.mark.kernel_datapath]

NET = "a" * 64
NET2 = "b" * 64


def ep_id(n):
    return f"{n:04x}" + "e" * 60


def create_network(plugin, net=NET, pool="198.18.10.0/24", opts=None):
    plugin.ok("NetworkDriver.CreateNetwork", {
        "NetworkID": net,
        "Options": {"com.docker.network.generic": opts or {}},
        "IPv4Data": [{"AddressSpace": "LocalDefault", "Pool": pool,
                      "Gateway": pool.replace("0/24", "1/24")}],
        "IPv6Data": []})


def create_endpoint(plugin, eid, net=NET, mac=""):
    return plugin.ok("NetworkDriver.CreateEndpoint", {
        "NetworkID": net, "EndpointID": eid,
        "Interface": {"Address": "198.18.10.5/24", "AddressIPv6": "",
                      "MacAddress": mac}, "Options": {}})


def ports(ovs):
    out = ovs.vsctl("--format=json", "--columns=name,tag,external_ids",
                    "list", "Port")
    rows = json.loads(out)["data"]
    result = {}
    for name, tag, ids in rows:
        tag = tag if isinstance(tag, int) else None
        result[name] = {"tag": tag, "external_ids": dict(ids[1])}
    return result


def wait_ofport(ovs, port, timeout=10):
    deadline = time.monotonic() + timeout
    while True:
        value = ovs.vsctl("get", "Interface", port, "ofport").strip()
        if value.lstrip("-").isdigit() and int(value) > 0 \
                or time.monotonic() > deadline:
            return int(value) if value.lstrip("-").isdigit() else -1
        time.sleep(0.05)


def links_gone(ns, timeout=5):
    """The plugin deletes veth pairs in the background after
    DeleteEndpoint (the kernel needs tens of ms per pair)."""
    deadline = time.monotonic() + timeout
    while our_links(ns):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def port_gone(ovs, name, timeout=5):
    """DeleteEndpoint leaves the port to the plugin's reaper, which removes
    a burst's ports together within a second."""
    deadline = time.monotonic() + timeout
    while name in ovs.vsctl("list-ports", "br-ovsgre").split():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def our_links(ns):
    return {l["ifname"]: l for l in link_json(ns)
            if l["ifname"].startswith("ovg")}


@pytest.mark.reliability("security", "socket mode 0660")
def test_socket_mode_is_0660(plugin):
    mode = stat.S_IMODE(os.stat(plugin.socket).st_mode)
    assert mode == 0o660


def test_bridge_created_with_the_runs_datapath(plugin, ovs_ns):
    _, ovs, _ = ovs_ns
    assert ovs.datapath_types()["br-ovsgre"] == DATAPATH
    # Chosen by the harness (datapath.py), not by `auto`, and every bridge
    # the plugin made has it.
    assert plugin.environ().get("OVSGRE_DATAPATH") == DATAPATH
    assert set(ovs.datapath_types().values()) == {DATAPATH}, \
        ovs.datapath_types()
    if KERNEL:  # the kernel holds this namespace's datapath
        assert "system@ovs-system" in ovs.appctl("ovs-vswitchd",
                                                  "dpif/show")


def test_endpoint_lifecycle_in_ovsdb_and_kernel(plugin, ovs_ns):
    ns, ovs, _ = ovs_ns
    create_network(plugin)
    eid = ep_id(1)
    reply = create_endpoint(plugin, eid, mac="02:42:c6:12:0a:05")
    assert reply == {}  # MAC given: nothing to fill in
    host_if, peer_if = "ovgh" + eid[:11], "ovgc" + eid[:11]

    port = ports(ovs)[host_if]
    assert port["tag"] == 1
    assert port["external_ids"] == {"owner": "ovsgre",
                                    "ovsgre_role": "endpoint",
                                    "ovsgre_network": NET,
                                    "ovsgre_endpoint": eid}
    links = our_links(ns)
    assert links[peer_if]["mtu"] == 1400 and links[host_if]["mtu"] == 1400
    assert links[peer_if]["address"] == "02:42:c6:12:0a:05"
    assert "UP" in links[host_if]["flags"]
    # Userspace OVS does not complete partial checksums: offload off on
    # the container's end there, and only there.
    assert ethtool_features(ns, peer_if)["tx-checksumming"] is KERNEL
    assert wait_ofport(ovs, host_if) > 0  # ovs-vswitchd took the port

    join = plugin.ok("NetworkDriver.Join", {
        "NetworkID": NET, "EndpointID": eid,
        "SandboxKey": "/var/run/docker/netns/x", "Options": {}})
    assert join["InterfaceName"] == {"SrcName": peer_if, "DstPrefix": "eth"}
    assert join["DisableGatewayService"] is True
    plugin.ok("NetworkDriver.Leave", {"NetworkID": NET, "EndpointID": eid})
    plugin.ok("NetworkDriver.DeleteEndpoint",
              {"NetworkID": NET, "EndpointID": eid})
    assert port_gone(ovs, host_if)
    assert links_gone(ns)
    assert os.listdir(os.path.join(plugin.state_dir, "endpoints")) == []


def test_repeated_calls_make_no_duplicates(plugin, ovs_ns):
    ns, ovs, _ = ovs_ns
    create_network(plugin)
    create_network(plugin)
    eid = ep_id(2)
    first = create_endpoint(plugin, eid)
    again = create_endpoint(plugin, eid)
    assert first == again and first["Interface"]["MacAddress"]
    body = {"NetworkID": NET, "EndpointID": eid, "SandboxKey": "/x"}
    assert plugin.ok("NetworkDriver.Join", body) == \
        plugin.ok("NetworkDriver.Join", body)
    assert len([p for p in ports(ovs) if p.startswith("ovgh")]) == 1
    assert len(our_links(ns)) == 2
    for _ in range(2):
        plugin.ok("NetworkDriver.Leave", {"NetworkID": NET,
                                          "EndpointID": eid})
    for _ in range(2):
        plugin.ok("NetworkDriver.DeleteEndpoint", {"NetworkID": NET,
                                                   "EndpointID": eid})
    for _ in range(2):
        plugin.ok("NetworkDriver.DeleteNetwork", {"NetworkID": NET})
    assert links_gone(ns)
    assert [p for p in ports(ovs) if p.startswith("ovg")] == []
    assert os.listdir(os.path.join(plugin.state_dir, "networks")) == []


def test_networks_get_distinct_tags_and_prefix_collisions_resolve(
        plugin, ovs_ns):
    ns, ovs, _ = ovs_ns
    create_network(plugin, NET)
    create_network(plugin, NET2, pool="198.18.11.0/24")
    e1 = "c" * 11 + "1" * 53
    e2 = "c" * 11 + "2" * 53  # same first 11 characters
    create_endpoint(plugin, e1, NET)
    create_endpoint(plugin, e2, NET2)
    by_endpoint = {p["external_ids"]["ovsgre_endpoint"]: (name, p["tag"])
                   for name, p in ports(ovs).items()
                   if p["external_ids"].get("owner") == "ovsgre"}
    (n1, t1), (n2, t2) = by_endpoint[e1], by_endpoint[e2]
    assert n1 != n2 and len(n1) <= 15 and len(n2) <= 15
    assert {t1, t2} == {1, 2}


@pytest.mark.reliability("load", "100 endpoint lifecycles leave nothing")
def test_no_leftovers_after_100_cycles(plugin, ovs_ns):
    ns, ovs, _ = ovs_ns
    create_network(plugin)
    for i in range(100):
        eid = ep_id(1000 + i)
        create_endpoint(plugin, eid)
        plugin.ok("NetworkDriver.Join", {"NetworkID": NET, "EndpointID": eid,
                                         "SandboxKey": "/x"})
        plugin.ok("NetworkDriver.Leave", {"NetworkID": NET,
                                          "EndpointID": eid})
        plugin.ok("NetworkDriver.DeleteEndpoint", {"NetworkID": NET,
                                                   "EndpointID": eid})
    plugin.ok("NetworkDriver.DeleteNetwork", {"NetworkID": NET})
    assert links_gone(ns)
    assert [p for p in ports(ovs) if p != "br-ovsgre"] == []
    for kind in ("networks", "endpoints"):
        assert os.listdir(os.path.join(plugin.state_dir, kind)) == []


@pytest.mark.reliability("fault", "plugin restart with orphans and missing pieces: reconciled")
def test_restart_reconciles_store_ovsdb_and_links(plugin, ovs_ns):
    ns, ovs, _ = ovs_ns
    create_network(plugin)
    kept, lost = ep_id(7), ep_id(8)
    create_endpoint(plugin, kept)
    create_endpoint(plugin, lost)
    plugin.kill9()
    # While the plugin is down: its port for `lost` vanishes, and
    # somebody leaves an orphan port and an orphan link with our marks.
    ovs.vsctl("del-port", "ovgh" + lost[:11])
    ns.run(["ip", "link", "add", "ovghdeadbeef000", "type", "veth",
            "peer", "name", "ovgcdeadbeef000"])
    ovs.vsctl("add-port", "br-ovsgre", "ovghdeadbeef000", "--", "set",
              "Port", "ovghdeadbeef000", "external_ids:owner=ovsgre")
    ns.run(["ip", "link", "add", "ovgh0123456789a", "type", "veth",
            "peer", "name", "ovgc0123456789a"])
    ns.run(["ip", "link", "add", "foreign0", "type", "veth", "peer",
            "name", "foreign1"])
    ovs.vsctl("add-port", "br-ovsgre", "foreign0")

    plugin.start()
    current = ports(ovs)
    assert current["ovgh" + lost[:11]]["tag"] == 1
    assert "ovgh" + kept[:11] in current
    assert "ovghdeadbeef000" not in current
    assert "foreign0" in current  # not ours: untouched
    names = set(our_links(ns))
    assert names == {"ovgh" + kept[:11], "ovgc" + kept[:11],
                     "ovgh" + lost[:11], "ovgc" + lost[:11]}
    # and the restored endpoint still works end to end
    plugin.ok("NetworkDriver.Join", {"NetworkID": NET, "EndpointID": lost,
                                     "SandboxKey": "/x"})
