"""The multi-host test bed itself, proven with hand-built traffic (no plugin).

One Cluster (3 hosts with OVS + dockerd, etcd on the switch) for the whole
module; the last test stops it and checks nothing is left behind.
"""
import json
import os
import re
import subprocess
import time

import pytest

from tests.harness import BASE_ROOT
from tests.harness._proc import pid_alive
from tests.harness.cluster import Cluster, PHY_BRIDGE
from tests.harness.etcd import EtcdServer
from tests.harness.fixtures import make_cluster  # noqa: F401

pytestmark = pytest.mark.e2e

KEY = 42
CONTAINER_MTU = 1458   # 1500 underlay - 42 (outer IPv4 + GRE/key + inner Eth)


def _netns_names():
    out = subprocess.run(["ip", "netns", "list"], capture_output=True,
                         text=True, check=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _mounts_under(path):
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f
                if line.split()[4].startswith(path)]


def _received(ping_output):
    m = re.search(r"(\d+) packets transmitted, (\d+) received", ping_output)
    assert m, ping_output
    return int(m.group(1)), int(m.group(2))


def _wait(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _leftovers(prefix):
    return {
        "netns": [n for n in _netns_names() if n.startswith(prefix)],
        "mounts": _mounts_under(os.path.join(BASE_ROOT, prefix)),
        "dirs": [d for d in os.listdir(BASE_ROOT) if d.startswith(prefix)]
        if os.path.isdir(BASE_ROOT) else [],
    }


def _pids(cluster):
    pids = []
    for h in cluster.hosts:
        pids += [h.ovs.vswitchd_pid, h.ovs.ovsdb_pid]
        if h.docker:
            pids.append(h.docker.pid)
        pids += h.netns.pids()
    pids += cluster.switch.pids()
    if cluster.etcd:
        pids.append(cluster.etcd.pid)
    return [p for p in pids if p]


@pytest.fixture(scope="module")
def cluster():
    c = Cluster(n_hosts=3, etcd=True)
    t0 = time.monotonic()
    try:
        c.start()
        print(f"\nTIMING cluster start {time.monotonic() - t0:.2f}s "
              f"{c.timings}")
        yield c
    finally:
        c.stop()


def test_a_underlay_ping_mesh(cluster):
    assert [cluster.host_ip(h) for h in cluster.hosts] == [
        "198.18.0.1", "198.18.0.2", "198.18.0.3"]
    targets = [cluster.host_ip(h) for h in cluster.hosts] + ["198.18.0.254"]
    for h in cluster.hosts:
        # The underlay address lives on the OVS internal port br-phy.
        assert f"{cluster.host_ip(h)}/24" in h.run(
            ["ip", "-4", "-o", "addr", "show", "dev", PHY_BRIDGE]).stdout
        assert "inet " not in h.run(
            ["ip", "-4", "-o", "addr", "show", "dev", h.underlay_if]).stdout
        for ip in targets:
            if ip == cluster.host_ip(h):
                continue
            cp = h.run(["ping", "-c", "2", "-i", "0.2", "-W", "2", ip],
                       check=False)
            assert _received(cp.stdout) == (2, 2), (
                f"{h.name} -> {ip}\n{cp.stdout}\n{cluster.diag(h)}\n"
                + cluster.switch.run(["ip", "neigh"]).stdout
                + cluster.switch.run(["bridge", "fdb", "show", "br",
                                      cluster.switch_bridge]).stdout)
    # Peers learned each other's br-phy MAC, never the MAC of the OVS port
    # eth0 (the kernel must not answer ARP there: see cluster.py).
    macs = {cluster.host_ip(h): h.run(["cat", f"/sys/class/net/{PHY_BRIDGE}"
                                       "/address"]).stdout.strip()
            for h in cluster.hosts}
    macs["198.18.0.254"] = cluster.switch.run(
        ["cat", f"/sys/class/net/{cluster.switch_bridge}/address"]
    ).stdout.strip()
    assert macs["198.18.0.254"] == "02:00:c6:12:00:fe"   # pinned
    for h in cluster.hosts:
        for ip, mac in macs.items():
            if ip != cluster.host_ip(h):
                neigh = h.run(["ip", "neigh", "show", ip]).stdout
                assert f"lladdr {mac}" in neigh, (h.name, ip, neigh, macs)


def test_b_etcd_from_every_host(cluster):
    assert cluster.etcd.url == "http://198.18.0.254:2379"
    for h in cluster.hosts:
        env = cluster.plugin_env(h)
        assert env == {"OVSGRE_ETCD": "http://198.18.0.254:2379",
                       "OVSGRE_LOCAL_IP": cluster.host_ip(h),
                       "OVSGRE_LEASE_TTL": "3"}
        # Exactly the command line the brief asks for: TCP across br-phy.
        cp = h.run(["etcdctl", "--endpoints", "http://198.18.0.254:2379",
                    "--command-timeout=5s", "put", f"/bed/{h.hostname}",
                    cluster.host_ip(h)], env={"ETCDCTL_API": "3"}, timeout=20)
        assert cp.stdout.strip() == "OK"
    for h in cluster.hosts:
        cp = h.run(["etcdctl", "--endpoints", "http://198.18.0.254:2379",
                    "--command-timeout=5s", "get", "--prefix", "/bed/"],
                   env={"ETCDCTL_API": "3"}, timeout=20)
        lines = cp.stdout.split()
        for other in cluster.hosts:
            i = lines.index(f"/bed/{other.hostname}")
            assert lines[i + 1] == cluster.host_ip(other)
        # A bigger value too: several full-size TCP segments.
        big = "x" * 20000
        cluster.etcd.etcdctl("put", f"/big/{h.hostname}", big, netns=h.netns)
        got = cluster.etcd.etcdctl("get", "--print-value-only",
                                   f"/big/{h.hostname}", netns=h.netns)
        assert got.stdout.strip() == big


def _gre_side(cluster, h, idx, peer_ip):
    """br-test (netdev) on h: veth to a "container" netns with
    198.19.0.<idx>/24 (MTU 1458, tx offload off), GRE with flow-based key."""
    ns = cluster.add_netns(f"c{idx}")
    veth = f"vc{idx}"
    h.run(["ip", "link", "add", veth, "mtu", str(CONTAINER_MTU), "type",
           "veth", "peer", "name", "eth0", "mtu", str(CONTAINER_MTU),
           "netns", ns.name])
    ns.run(["ethtool", "-K", "eth0", "tx", "off"])
    ns.run(["ip", "addr", "add", f"198.19.0.{idx}/24", "dev", "eth0"])
    ns.run(["ip", "link", "set", "eth0", "up"])
    h.run(["ip", "link", "set", veth, "up"])
    h.ovs.vsctl(
        "add-br", "br-test", "--", "set", "bridge", "br-test",
        "datapath_type=netdev", "fail_mode=secure",
        "--", "add-port", "br-test", veth,
        "--", "add-port", "br-test", "gre0",
        "--", "set", "interface", "gre0", "type=gre",
        f"options:remote_ip={peer_ip}", "options:key=flow")
    flows = os.path.join(h.run_dir, "br-test.flows")
    with open(flows, "w") as f:
        f.write(f"table=0,priority=10,in_port={veth},"
                f"actions=set_field:{KEY}->tun_id,output:gre0\n"
                f"table=0,priority=10,in_port=gre0,tun_id={KEY},"
                f"actions=output:{veth}\n")
    h.ovs.ofctl("-O", "OpenFlow13", "replace-flows", "br-test", flows)
    return ns


def test_c_d_handmade_gre_across_hosts(cluster):
    h1, h2 = cluster.hosts[:2]
    c1 = _gre_side(cluster, h1, 1, cluster.host_ip(h2))
    c2 = _gre_side(cluster, h2, 2, cluster.host_ip(h1))

    def ping_once():
        return c1.run(["ping", "-c", "1", "-W", "1", "198.19.0.2"],
                      check=False).returncode == 0
    t0 = time.monotonic()
    _wait(ping_once, 15, "first ping across GRE")
    print(f"\nTIMING first GRE ping ok after {time.monotonic() - t0:.2f}s")

    # (d) the switch sees GRE (ip proto 47) with key 42 during a ping.
    cap = cluster.start_capture(cluster.switch, cluster.switch_bridge,
                                "ip proto 47")
    cp = c1.run(["ping", "-c", "5", "-i", "0.1", "-W", "2", "198.19.0.2"],
                check=False)
    assert _received(cp.stdout) == (5, 5), cp.stdout
    # Largest packet that fits: DF set, 1458 - 28 bytes of ICMP payload.
    cp = c1.run(["ping", "-c", "2", "-i", "0.2", "-W", "2", "-M", "do",
                 "-s", str(CONTAINER_MTU - 28), "198.19.0.2"], check=False)
    assert _received(cp.stdout) == (2, 2), cp.stdout
    lines = cap.stop()
    gre = [ln for ln in lines if "GRE" in ln]
    assert len(gre) >= 10, lines
    assert any("198.18.0.1 > 198.18.0.2" in ln for ln in gre), gre
    assert any("198.18.0.2 > 198.18.0.1" in ln for ln in gre), gre
    assert all(f"key=0x{KEY:x}" in ln for ln in gre), gre

    # TCP across GRE (checksum offload + MTU traps would show here).
    server = c2.popen(["iperf3", "-s", "-1", "-B", "198.19.0.2"],
                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # iperf3 3.12 -J exits 0 even on "Connection refused" (server not
        # listening yet): the JSON "error" key tells.
        deadline = time.monotonic() + 10
        while True:
            cp = c1.run(["iperf3", "-c", "198.19.0.2", "-t", "2", "-J"],
                        check=False, timeout=30)
            try:
                res = json.loads(cp.stdout)
            except ValueError:
                res = {"error": cp.stdout[-500:] + cp.stderr[-500:]}
            if (cp.returncode == 0 and "error" not in res) \
                    or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert cp.returncode == 0 and "error" not in res, (
            cp.stdout[-2000:] + cp.stderr + cluster.diag(h1))
        got = res["end"]["sum_received"]["bytes"]
        gbps = res["end"]["sum_received"]["bits_per_second"] / 1e9
        print(f"\nTIMING iperf3 across GRE: {got} bytes, {gbps:.2f} Gbit/s")
        assert got > 1_000_000
    finally:
        server.kill()
        server.wait(5)


def test_e_etcd_restart_keeps_data(cluster):
    e = cluster.etcd
    h = cluster.hosts[0]
    e.etcdctl("put", "/persist", "yes", netns=h.netns)
    old = e.pid
    t0 = time.monotonic()
    e.stop()
    assert not pid_alive(old)
    assert not e.healthy(netns=h.netns, timeout=1)
    e.start()
    assert e.pid and e.pid != old
    assert e.etcdctl("get", "--print-value-only", "/persist",
                     netns=h.netns).stdout.strip() == "yes"
    # A crash (SIGKILL) keeps it too.
    e.etcdctl("put", "/persist2", "yes", netns=h.netns)
    e.kill()
    e.start()
    assert e.etcdctl("get", "--print-value-only", "/persist2",
                     netns=h.netns).stdout.strip() == "yes"
    print(f"\nTIMING etcd stop+start+kill+start {time.monotonic() - t0:.2f}s")


def test_etcd_tls_from_a_host(cluster):
    """A second, TLS-only etcd on the switch; etcdctl with client certs."""
    e = EtcdServer(cluster.switch,
                   os.path.join(cluster.switch_dir, "etcd-tls.data"),
                   cluster.switch_ip, client_port=2479, peer_port=2480,
                   name="etcd-tls", tls=True)
    h = cluster.hosts[1]
    try:
        e.start()
        assert e.url == "https://198.18.0.254:2479"
        cp = h.run(["etcdctl", "--endpoints", e.url, "--cacert", e.ca,
                    "--cert", e.client_cert, "--key", e.client_key,
                    "--command-timeout=5s", "put", "tls", "ok"],
                   env={"ETCDCTL_API": "3"})
        assert cp.stdout.strip() == "OK"
        assert e.etcdctl("get", "--print-value-only", "tls",
                         netns=h.netns).stdout.strip() == "ok"
        # Without a client certificate the server refuses.
        cp = h.run(["etcdctl", "--endpoints", e.url, "--cacert", e.ca,
                    "--dial-timeout=1s", "--command-timeout=2s", "get",
                    "tls"], env={"ETCDCTL_API": "3"}, check=False)
        assert cp.returncode != 0
    finally:
        e.stop()


def test_host_joins_and_leaves(cluster):
    h4 = cluster.add_host()
    assert h4.hostname == "h4" and cluster.host_ip(h4) == "198.18.0.4"
    assert h4 in cluster.hosts
    cp = h4.run(["ping", "-c", "1", "-W", "2", cluster.host_ip(
        cluster.hosts[0])], check=False)
    assert cp.returncode == 0, cp.stdout
    assert cluster.etcd.etcdctl("get", "--print-value-only", "/persist",
                                netns=h4.netns).stdout.strip() == "yes"
    ports_before = cluster.switch.run(["ip", "-o", "link", "show", "master",
                                       cluster.switch_bridge]).stdout
    pids = [h4.ovs.vswitchd_pid, h4.ovs.ovsdb_pid, h4.docker.pid]
    assert all(pids)
    cluster.stop_host(h4)
    assert h4 not in cluster.hosts
    assert not h4.netns.exists()
    assert not [p for p in pids if pid_alive(p)]
    ports_after = cluster.switch.run(["ip", "-o", "link", "show", "master",
                                      cluster.switch_bridge]).stdout
    assert len(ports_after.splitlines()) == len(ports_before.splitlines()) - 1
    assert h4.switch_port not in ports_after
    cp = cluster.hosts[0].run(["ping", "-c", "1", "-W", "1", "198.18.0.4"],
                              check=False)
    assert cp.returncode != 0
    # The switch (and etcd) stay reachable for the others: br0's MAC is
    # pinned, so ports coming and going do not change it.
    for h in cluster.hosts:
        assert cluster.etcd.healthy(netns=h.netns), h.name


def test_f_stop_leaves_nothing(cluster):
    prefix = cluster.prefix
    pids = _pids(cluster)
    assert len(pids) >= 10
    t0 = time.monotonic()
    cluster.stop()
    t_stop = time.monotonic() - t0
    cluster.stop()  # idempotent
    print(f"\nTIMING cluster stop {t_stop:.2f}s")
    assert not [p for p in pids if pid_alive(p)]
    assert _leftovers(prefix) == {"netns": [], "mounts": [], "dirs": []}


def test_make_cluster_fixture(make_cluster):
    c = make_cluster(n_hosts=2, etcd=False, docker=False)
    assert c.etcd is None and len(c.hosts) == 2
    assert "OVSGRE_ETCD" not in c.plugin_env(c.hosts[0])
    cp = c.hosts[0].run(["ping", "-c", "1", "-W", "2",
                         c.host_ip(c.hosts[1])], check=False)
    assert cp.returncode == 0, cp.stdout
    lines = []
    with c.start_capture(c.hosts[1], PHY_BRIDGE, "icmp") as cap:
        c.hosts[0].run(["ping", "-c", "2", "-i", "0.1", c.host_ip(c.hosts[1])])
    lines = cap.lines
    assert any("ICMP echo request" in ln for ln in lines), lines
    prefix = c.prefix
    c.stop()
    assert _leftovers(prefix) == {"netns": [], "mounts": [], "dirs": []}
