"""Soak: 1,000 container lifecycles through the plugin's socket.

The real plugin process (`ovsgre serve`, gunicorn master + one worker)
against a real OVS in a scratch namespace, driven with the calls dockerd
sends for `docker run` / `docker rm` (CreateEndpoint, Join, EndpointOperInfo,
Leave, DeleteEndpoint), one container at a time, 1,000 times.  Its memory
and open file descriptors must stay flat, and nothing may be left behind.

System ports (OVSGRE_PORT_TYPE=system): an afxdp port costs ovs-vswitchd
~70 MB and ~100 ms each; the plugin's own code path is the same.
"""

import os
import time
import uuid

import pytest

from tests.harness import link_json
from tests.harness.plugin import PluginProcess
from tests.harness.sites import wait_for

pytestmark = pytest.mark.integration

NET = "5" * 64
SUBNET = "198.18.92.0/22"
LIFECYCLES = 1000
WARMUP = 100
# Bounds, measured against the state after the warm-up (imports done,
# OVSDB replica, thread pool and pyroute2 sockets all in use by then):
# - fds: a leak of one socket or file per lifecycle would add ~900; the
#   slack of 5 covers keep-alive connections gunicorn may still hold open
#   and a log or store file that happens to be open at the sample instant.
# - RSS: 20 MB over 900 lifecycles catches anything that keeps ~22 KB or
#   more per container (e.g. a record, an OVSDB row or a netlink message
#   per endpoint never dropped); less than that is within what CPython's
#   allocator and the IDL's caches move by on their own.
FD_SLACK = 5
RSS_SLACK_KB = 20 * 1024


@pytest.fixture
def soak_plugin(ovs_ns):
    ns, ovs, base = ovs_ns
    proc = PluginProcess(ns, base + "/plugin", ovs.db_remote,
                         extra_env={"OVSGRE_PORT_TYPE": "system"})
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def sample(plugin):
    """{pid: (rss kB, open fds)} of the plugin's processes."""
    pids = plugin.pids()
    assert len(pids) == 2, f"expected master + worker, got {pids}"
    return {pid: (rss_kb(pid), len(os.listdir(f"/proc/{pid}/fd")))
            for pid in pids}


def totals(snapshot):
    return (sum(r for r, _ in snapshot.values()),
            sum(f for _, f in snapshot.values()))


class Dockerd:
    """The calls dockerd sends for one container, in its order."""

    def __init__(self, plugin):
        self.plugin = plugin
        self.n = 0

    def create_network(self):
        self.plugin.ok("NetworkDriver.CreateNetwork", {
            "NetworkID": NET, "Options": {"com.docker.network.generic": {}},
            "IPv4Data": [{"AddressSpace": "LocalDefault", "Pool": SUBNET,
                          "Gateway": "198.18.92.1/22"}],
            "IPv6Data": []})

    def lifecycle(self):
        self.n += 1
        eid = uuid.uuid4().hex + uuid.uuid4().hex
        host = 2 + self.n % 1000          # 198.18.92.2 .. 198.18.95.233
        ip = f"198.18.{92 + host // 256}.{host % 256}/22"
        ids = {"NetworkID": NET, "EndpointID": eid}
        reply = self.plugin.ok("NetworkDriver.CreateEndpoint", dict(
            ids, Options={}, Interface={"Address": ip, "AddressIPv6": "",
                                        "MacAddress": ""}))
        assert reply["Interface"]["MacAddress"]
        join = self.plugin.ok("NetworkDriver.Join", dict(
            ids, SandboxKey="/var/run/docker/netns/" + eid[:12],
            Options={}))
        assert join["InterfaceName"]["SrcName"].startswith("ovgc")
        info = self.plugin.ok("NetworkDriver.EndpointOperInfo", ids)
        assert info["Value"]["state"] == "joined"
        self.plugin.ok("NetworkDriver.Leave", ids)
        self.plugin.ok("NetworkDriver.DeleteEndpoint", ids)


def our_links(ns):
    return [l["ifname"] for l in link_json(ns)
            if l["ifname"].startswith("ovg")]


def records(plugin, kind):
    return sorted(os.listdir(os.path.join(plugin.state_dir, kind)))


def quiet(ns):
    """The background link reaper has deleted every veth pair."""
    wait_for(lambda: not our_links(ns), 30, "the link reaper to settle")


@pytest.mark.reliability("load", "soak: 1,000 container lifecycles, plugin memory and fds flat")
def test_thousand_lifecycles_keep_memory_and_fds_flat(ovs_ns, soak_plugin):
    ns, ovs, _ = ovs_ns
    plugin = soak_plugin
    docker = Dockerd(plugin)
    docker.create_network()
    start = time.monotonic()
    for _ in range(WARMUP):
        docker.lifecycle()
    quiet(ns)
    warm = sample(plugin)
    warm_at = time.monotonic()
    mid = None
    for i in range(WARMUP, LIFECYCLES):
        docker.lifecycle()
        if i + 1 == (WARMUP + LIFECYCLES) // 2:
            mid = sample(plugin)
    quiet(ns)
    end = sample(plugin)
    took = time.monotonic() - start
    rate = (LIFECYCLES - WARMUP) / (time.monotonic() - warm_at)

    (rss0, fd0), (rss1, fd1), (rss2, fd2) = map(totals, (warm, mid, end))
    print(f"\n{LIFECYCLES} lifecycles in {took:.1f} s "
          f"({rate:.0f}/s after warm-up)")
    for label, snap in (("after warm-up", warm), ("halfway", mid),
                        ("end", end)):
        per = ", ".join(f"pid {p}: {r} kB, {f} fds"
                        for p, (r, f) in snap.items())
        print(f"  {label}: RSS {totals(snap)[0]} kB, fds "
              f"{totals(snap)[1]} ({per})")
    print(f"  growth after warm-up: RSS {rss2 - rss0:+d} kB "
          f"({(rss2 - rss0) / (LIFECYCLES - WARMUP):.2f} kB/lifecycle), "
          f"fds {fd2 - fd0:+d}")

    assert set(end) == set(warm), "a plugin process was replaced"
    assert fd2 <= fd0 + FD_SLACK, (warm, mid, end)
    assert rss2 - rss0 <= RSS_SLACK_KB, (warm, mid, end)

    # nothing left behind: no veth, no port, no endpoint record
    assert our_links(ns) == []
    assert ovs.vsctl("list-ports", "br-ovsgre").split() == []
    assert records(plugin, "endpoints") == []
    plugin.ok("NetworkDriver.DeleteNetwork", {"NetworkID": NET})
    assert records(plugin, "networks") == []
    assert "Traceback" not in open(plugin.log_path, errors="replace").read()
