"""`ovsgre trace` on two hosts with etcd: a packet followed from a
container through the tunnel to the peer (with the command trace prints
for it), then each cause broken on purpose and named: wrong network, MAC
unknown, MTU, no tunnel to the peer, port down."""

import json
import shlex

import pytest

from tests.harness.cluster import Cluster
from tests.harness.sites import (ovsgre_cli, received, start_mesh,
                                 stop_sites, tunnels, wait_for)
from ovsgre.definitions import tunnel_port_name

RED = ("--subnet", "198.18.90.0/24")


# also on the kernel datapath, in the test VM (tests/vm)
pytestmark = pytest.mark.kernel_datapath


@pytest.fixture(scope="module")
def bed():
    cluster = Cluster(n_hosts=2, etcd=True)
    try:
        a, b = start_mesh(cluster)
        a.run_bg("ta", "blue", "sleep", "3600")
        b.run_bg("tb", "blue", "sleep", "3600")
        a.docker("network", "create", "-d", "ovsgre", *RED, "red")
        a.run_bg("tr", "red", "sleep", "3600")
        # both MACs learned on both hosts, as after any conversation
        ping = b.docker("exec", "tb", "ping", "-c", "2",
                        a.ip("ta", "blue"))
        assert received(ping.stdout) == (2, 2)
        yield cluster, a, b
    finally:
        stop_sites(cluster, getattr(cluster, "mesh_sites", []))


def trace(site, *args):
    """(exit status, verdict as JSON) of `ovsgre trace ARGS --json`."""
    proc = ovsgre_cli(site, "trace", *args, "--json", check=False)
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def test_followed_through_the_tunnel_to_the_container(bed):
    cluster, a, b = bed
    rc, got = trace(a, "ta", b.ip("tb", "blue"))
    assert rc == 0 and got["outcome"] == "tunnel", got
    assert got["peers"] == [cluster.host_ip(b.host)]
    assert got["line"] == (f"sent to peer {cluster.host_ip(b.host)} with "
                           f"GRE key {got['key']}")
    # the command printed for the peer, run there
    hop = got["next_hop"][0]
    assert hop.startswith(f"on {cluster.host_ip(b.host)}: ovsgre trace ")
    argv = shlex.split(hop.split(": ", 1)[1])[2:]
    proc = ovsgre_cli(b, "trace", *argv, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[0].startswith(
        "delivered on this host to container tb (port ovgh"), proc.stdout
    text = ovsgre_cli(a, "trace", "ta", b.ip("tb", "blue"), "-v").stdout
    lines = [line.strip() for line in text.splitlines()]
    assert lines[1].startswith(
        f"then on {cluster.host_ip(b.host)}: ovsgre trace --from-tunnel")
    assert lines[2].startswith("flow: in_port=ovgh"), text
    # the learned MAC in the tunnel bridge's table 2 sets the key
    assert any(line.startswith("br-ovsgre-tun table 2:") and
               "->NXM_NX_TUN_ID" in line for line in lines), text


def test_same_host_container_by_name(bed):
    _, a, _ = bed
    a.run_bg("tc", "blue", "sleep", "3600")
    a.docker("exec", "tc", "ping", "-c", "1", a.ip("ta", "blue"))
    rc, got = trace(a, "ta", "tc")
    assert rc == 0 and got["outcome"] == "delivered", got
    assert "to container tc" in got["line"]


def test_what_cannot_be_traced_says_why(bed):
    _, a, _ = bed
    proc = ovsgre_cli(a, "trace", "nobody", "198.19.0.3", check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == \
        "ovsgre trace: no container 'nobody' on this host", proc.stderr
    proc = ovsgre_cli(a, "trace", "ta", "198.19.0.3", "--size", "9",
                      check=False)
    assert proc.returncode == 2 and "--size 9" in proc.stderr


def test_wrong_network_is_named(bed):
    cluster, a, b = bed
    rc, got = trace(a, "ta", "tr")
    assert rc == 1 and got["cause"] == "wrong network", got
    assert "share no ovsgre network" in got["line"]
    rc, got = trace(a, "ta", a.ip("tr", "red"))
    assert rc == 1 and got["cause"] == "wrong network", got
    assert "is on none of ta's ovsgre networks" in got["line"]
    # a key this host has no network for, from a real peer
    rc, got = trace(a, *_arriving(cluster.host_ip(b.host), 12345))
    assert rc == 1 and got["cause"] == "wrong network", got
    assert "no network with GRE key 12345" in got["line"]
    # and from a host that is no peer
    rc, got = trace(a, *_arriving("198.18.0.250", 12345))
    assert rc == 1 and got["cause"] == "no tunnel to the peer", got


def test_unknown_mac_is_named(bed):
    cluster, a, b = bed
    nobody = a.ip("ta", "blue").rsplit(".", 1)[0] + ".250"
    # no ARP entry: the ARP request is what leaves, to every peer
    rc, got = trace(a, "ta", nobody)
    assert rc == 0 and got["outcome"] == "flooded", got
    assert got["line"].startswith(f"the container has no ARP entry for "
                                  f"{nobody}: its ARP request"), got
    assert got["peers"] == [cluster.host_ip(b.host)]
    argv = shlex.split(got["next_hop"][0].split(": ", 1)[1])[2:]
    there = ovsgre_cli(b, "trace", *argv).stdout
    assert f"no container here has {nobody}" in there, there
    # a MAC nobody has: flooded, and named
    rc, got = trace(a, "ta", nobody, "--dst-mac", "02:00:00:00:00:99")
    assert rc == 0 and got["cause"] == "MAC unknown", got
    assert "MAC 02:00:00:00:00:99 is unknown on this host" in got["line"]


def test_mtu_is_named(bed):
    _, a, b = bed
    dev = _underlay_device(a)
    a.host.netns.run(["ip", "link", "set", dev, "mtu", "1400"])
    try:
        rc, got = trace(a, "ta", b.ip("tb", "blue"), "--size", "1400")
        assert rc == 1 and got["cause"] == "MTU", got
        assert "more than the underlay's MTU 1400" in got["line"]
        rc, got = trace(a, "ta", b.ip("tb", "blue"), "--size", "1358")
        assert rc == 0 and got["outcome"] == "tunnel", got
        rc, got = trace(a, "ta", b.ip("tb", "blue"), "--size", "1500")
        assert rc == 1 and got["cause"] == "MTU", got   # over eth0's MTU
    finally:
        a.host.netns.run(["ip", "link", "set", dev, "mtu", "1500"])


def test_no_tunnel_to_the_peer_is_named(bed):
    cluster, a, b = bed
    port = tunnel_port_name(cluster.host_ip(b.host))
    a.host.ovs.vsctl("del-port", a.plugin.env.get(
        "OVSGRE_BRIDGE", "br-ovsgre") + "-tun", port)
    rc, got = trace(a, "ta", b.ip("tb", "blue"))
    assert rc == 1 and got["cause"] == "no tunnel to the peer", got
    # and on the peer's side: B's packets arrive through a port A lacks
    rc, back = trace(a, *_arriving(cluster.host_ip(b.host), 4242))
    assert rc == 1 and back["cause"] == "no tunnel to the peer", back
    # the plugin puts it back (restart: the tunnel sync runs at start)
    a.plugin.stop()
    a.plugin.start()
    wait_for(lambda: len(tunnels(a)) == 1, 20, "the tunnel back")


def test_port_down_is_named(bed):
    _, a, b = bed
    host_if = _host_if(a, "ta")
    a.host.netns.run(["ip", "link", "del", host_if])
    seen = []

    def named():
        seen[:] = [trace(a, "ta", b.ip("tb", "blue"))]
        return seen[0][1]["cause"] == "port down"
    # as soon as ovs-vswitchd has noticed the device is gone
    wait_for(named, 15, "trace to see the port down")
    rc, got = seen[0]
    assert rc == 1 and host_if in got["line"], got
    # userspace datapath: the link is down; kernel: no such device
    assert "is down" in got["line"] or "No such device" in got["line"], got


def _host_if(site, container):
    eid = site.out("inspect", "-f",
                   "{{(index .NetworkSettings.Networks \"blue\").EndpointID}}",
                   container)
    path = f"{site.plugin.state_dir}/endpoints/{eid}.json"
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)["host_if"]


def _underlay_device(site):
    """The link holding the host's underlay (tunnel source) address."""
    ip = site.plugin.env.get("OVSGRE_LOCAL_IP") or ""
    out = site.host.netns.run(["ip", "-o", "-4", "addr", "show"]).stdout
    for line in out.splitlines():
        fields = line.split()
        if ip and fields[3].split("/")[0] == ip:
            return fields[1]
    for line in out.splitlines():   # no --local-ip: the non-loopback one
        fields = line.split()
        if fields[1] != "lo" and fields[3].startswith("198.18."):
            return fields[1]
    raise AssertionError(out)


def _arriving(peer, key):
    """trace's arguments for a packet arriving from peer with key."""
    return ("198.19.0.1", "198.19.0.2", "--from-tunnel", str(key), "--peer",
            peer, "--src-mac", "02:42:c6:13:00:01", "--dst-mac",
            "02:42:c6:13:00:02")
