"""Swarm-scope networks on the managed plugin: one namespace host as a
single-node swarm (manager and worker), the plugin enabled with
OVSGRE_SCOPE=global.

The manager calls AllocateNetwork once per network; the options it returns
(ovsgre.network, ovsgre.key: the name and GRE key fixed for every node) are
what each node's CreateNetwork receives.  The test follows them from the
manager's allocation to the node's state record."""

import json
import os
import re

import pytest

from tests.harness import TestHost, import_busybox
from tests.harness import plugin_image
from tests.harness.etcd import EtcdServer
from tests.harness.plugin_image import PLUGIN, ManagedPlugin, ManagedSite
from tests.harness.sites import received, wait_for

DAEMON_CONFIG = {"default-address-pools": [{"base": "198.19.128.0/17",
                                            "size": 24}]}
ADVERTISE = "198.18.0.1"     # on a veth inside the host's netns


@pytest.fixture(scope="module")
def sw():
    host = TestHost("swarm", daemon_config=DAEMON_CONFIG)
    plugin = None
    try:
        host.start()
        # swarm needs an address to advertise: a veth pair in the netns
        host.run(["ip", "link", "add", "uplink0", "type", "veth", "peer",
                  "name", "uplink1"])
        host.run(["ip", "addr", "add", f"{ADVERTISE}/24", "dev", "uplink0"])
        for dev in ("uplink0", "uplink1"):
            host.run(["ip", "link", "set", dev, "up"])
        import_busybox(host.docker)
        plugin_image.ensure_plugin_created(host.docker)
        plugin = ManagedPlugin(host)
        plugin.configure(OVSGRE_SCOPE="global", OVSGRE_LOG_LEVEL="info")
        plugin.enable()
        site = ManagedSite(host, plugin)
        site.docker("swarm", "init", "--advertise-addr", ADVERTISE)
        yield site
    finally:
        try:
            if plugin is not None and host.docker.pid:
                site = ManagedSite(host, plugin)
                site.remove_all()
                site.docker("swarm", "leave", "--force", check=False)
                plugin.remove()
        finally:
            host.stop()
            if plugin is not None:
                plugin.remove_cgroups()


def inspect_network(site, name):
    return json.loads(site.out("network", "inspect", name))[0]


def log_has(site, pattern):
    return any(re.search(pattern, line) for line in site.plugin.log_lines())


def test_plugin_reports_global_scope(sw):
    assert sw.plugin.capabilities() == {"Scope": "global",
                                        "ConnectivityScope": "global"}
    info = json.loads(sw.out("info", "--format", "{{json .Swarm}}"))
    assert info["LocalNodeState"] == "active" and info["ControlAvailable"]
    # global scope is either/or: Docker makes every network of the driver
    # a swarm network (and refuses them outside a swarm)
    local = sw.docker("network", "create", "--scope", "local", "-d", PLUGIN,
                      "--subnet", "198.18.22.0/24", "loc", check=False)
    assert local.returncode != 0
    assert "cannot downgrade network scope" in local.stderr


def test_allocation_reaches_the_node_and_containers_talk(sw):
    sw.docker("network", "create", "--scope", "swarm", "--attachable",
              "-d", PLUGIN, "--subnet", "198.18.20.0/24",
              "-o", "ovsgre.network=sw", "sw")
    net = inspect_network(sw, "sw")
    assert net["Scope"] == "swarm" and net["Driver"] == PLUGIN
    opts = net["Options"]
    assert opts["ovsgre.network"] == "sw"
    key = opts["ovsgre.key"]
    assert key.isdigit() and 1 <= int(key) <= 16777215, opts
    short = net["Id"][:12]
    assert log_has(sw, rf"AllocateNetwork network={short} ok"), \
        sw.plugin.log_tail()

    # the node creates the network when the first container attaches
    sw.run_bg("s1", "sw", "sleep", "600")
    sw.run_bg("s2", "sw", "sleep", "600")
    assert log_has(sw, rf"CreateNetwork network={short} ok")
    record = sw.plugin.records("networks")[net["Id"]]
    assert record["name"] == "sw" and record["key"] == int(key), record
    ip1, ip2 = sw.ip("s1", "sw"), sw.ip("s2", "sw")
    assert ip1.startswith("198.18.20.") and ip2.startswith("198.18.20.")
    assert ip1 != ip2
    assert received(sw.out("exec", "s1", "ping", "-c", "3", "s2")) == (3, 3)
    assert received(sw.out("exec", "s2", "ping", "-c", "3", ip1)) == (3, 3)

    sw.docker("rm", "-f", "s1", "s2")
    sw.docker("network", "rm", "sw")
    assert sw.wait_no_leftovers() == {"links": [], "ports": [],
                                      "records": []}


def test_allocation_names_an_unnamed_network(sw):
    """Without -o ovsgre.network the manager fixes the name (the swarm
    network ID) and a key for every node."""
    sw.docker("network", "create", "--scope", "swarm", "--attachable",
              "-d", PLUGIN, "--subnet", "198.18.21.0/24", "anon")
    net = inspect_network(sw, "anon")
    assert net["Options"]["ovsgre.network"] == net["Id"]
    key = int(net["Options"]["ovsgre.key"])
    sw.run_bg("a1", "anon", "sleep", "600")
    record = sw.plugin.records("networks")[net["Id"]]
    assert record["name"] == net["Id"] and record["key"] == key, record
    reply = sw.run_rm("anon", "ping", "-c", "2", "a1")
    assert received(reply.stdout) == (2, 2)
    sw.docker("rm", "-f", "a1")
    sw.docker("network", "rm", "anon")
    assert sw.wait_no_leftovers() == {"links": [], "ports": [],
                                      "records": []}


def _etcd_value(etcd, key):
    out = etcd.etcdctl("get", key, "--print-value-only",
                       netns=etcd.netns).stdout.strip()
    return json.loads(out) if out else None


def _etcd_keys(etcd, prefix):
    return etcd.etcdctl("get", prefix, "--prefix", "--keys-only",
                        netns=etcd.netns).stdout.split()


def test_with_etcd_the_manager_reserves_and_frees(sw):
    """With etcd, AllocateNetwork reserves the name and key without making
    the manager a host of the network, and FreeNetwork deletes the
    definition: the name can then be re-created with other subnets (the
    manager used to hold it forever, and the re-create got a Conflict)."""
    etcd = EtcdServer(sw.host.netns,
                      os.path.join(sw.host.run_dir, "etcd", "etcd0.data"),
                      ADVERTISE)
    etcd.start()
    try:
        sw.docker("plugin", "disable", PLUGIN)
        sw.plugin.configure(OVSGRE_ETCD=etcd.url, OVSGRE_LOCAL_IP=ADVERTISE)
        sw.plugin.enable()
        for subnet in ("198.18.23.0/24", "198.18.24.0/24"):
            sw.docker("network", "create", "--scope", "swarm", "-d", PLUGIN,
                      "--subnet", subnet, "-o", "ovsgre.network=res", "res")
            net = inspect_network(sw, "res")
            key = int(net["Options"]["ovsgre.key"])
            record = _etcd_value(etcd, "/ovsgre/networks/res")
            assert record["hosts"] == [] and record["swarm"] == [net["Id"]]
            assert record["key"] == key and record["ipv4"] == [subnet]
            sw.docker("network", "rm", "res")
            wait_for(lambda: not _etcd_keys(etcd, "/ovsgre/networks/") and
                     not _etcd_keys(etcd, "/ovsgre/keys/"), timeout=15,
                     what="FreeNetwork to delete the definition")
    finally:
        etcd.stop()


def test_leave_swarm_and_remove_plugin(sw):
    sw.docker("swarm", "leave", "--force")
    info = json.loads(sw.out("info", "--format", "{{json .Swarm}}"))
    assert info["LocalNodeState"] == "inactive"
    sw.docker("plugin", "disable", PLUGIN)
    wait_for(lambda: not sw.plugin.pids(), timeout=15,
             what="the plugin's processes to exit")
    sw.docker("plugin", "rm", PLUGIN)
    assert sw.out("plugin", "ls", "-q") == ""
