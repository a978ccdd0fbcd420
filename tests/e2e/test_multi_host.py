"""Several hosts: namespace hosts on one underlay, each with its own OVS,
dockerd and ovsgre, sharing a real etcd (or a static peer list)."""

import base64
import concurrent.futures
import json
import os
import re
import subprocess
import threading
import time

import pytest

from tests.e2e.test_one_host import fetch_md5, received, start_file_server
from tests.harness import import_busybox
from tests.harness.cluster import LEASE_TTL, Capture, Cluster
from tests.harness.datapath import DATAPATH
from tests.harness.sites import (BLUE, IMAGE, docker_networks, ovsgre_cli,
                                 start_mesh, start_plugin, stop_sites,
                                 tunnels, wait_for)


@pytest.fixture(scope="module")
def mesh():
    cluster = Cluster(n_hosts=3, etcd=True)
    try:
        yield cluster, start_mesh(cluster)
    finally:
        stop_sites(cluster, getattr(cluster, "mesh_sites", []))


@pytest.mark.kernel_datapath
def test_all_pairs_ping_and_tcp_across_hosts(mesh):
    _, sites = mesh
    for i, site in enumerate(sites):
        site.run_bg(f"p{i}", "blue", "sleep", "600")
    ips = [site.ip(f"p{i}", "blue") for i, site in enumerate(sites)]
    assert len(set(ips)) == 3
    for i, site in enumerate(sites):
        for j, ip in enumerate(ips):
            if i != j:
                out = site.out("exec", f"p{i}", "ping", "-c", "2", "-W", "5",
                               ip)
                assert received(out) == (2, 2), (i, j, out)
    expected = start_file_server(sites[2], "far", "blue")
    far_ip = sites[2].ip("far", "blue")
    got = fetch_md5(sites[0], "blue", f"http://{far_ip}:8080/f")
    assert got == expected  # 12 MB over GRE: MTU and offload are right
    for i, site in enumerate(sites):
        site.docker("rm", "-f", f"p{i}")
    sites[2].docker("rm", "-f", "far")


def test_same_network_with_other_subnet_is_refused(mesh):
    _, sites = mesh
    proc = sites[1].docker("network", "create", "-d", "ovsgre",
                           "--ipam-driver", "ovsgre",
                           "--subnet", "198.18.99.0/24",
                           "-o", "ovsgre.network=blue", "blue2", check=False)
    assert proc.returncode != 0
    assert "exists in the cluster with ipv4 subnets 198.19.0.0/16" in \
        proc.stderr, proc.stderr


def test_overlapping_subnets_stay_isolated_across_hosts(mesh):
    _, (s1, s2, _) = mesh
    for site in (s1, s2):
        for name in ("red", "green"):
            site.docker("network", "create", "-d", "ovsgre",
                        "--ipam-driver", "ovsgre",
                        "--ipam-opt", f"ovsgre.network={name}",
                        "--subnet", "198.19.50.0/24",
                        "-o", f"ovsgre.network={name}", name)
    try:
        s1.run_bg("r1", "red", "sleep", "600")
        s1.run_bg("g1", "green", "sleep", "600")
        s2.run_bg("r2", "red", "sleep", "600")
        s2.run_bg("g2", "green", "sleep", "600")
        r2, g2 = s2.ip("r2", "red"), s2.ip("g2", "green")
        assert r2 == g2  # separate address spaces: the same address
        out = s1.out("exec", "r1", "ping", "-c", "2", "-W", "5", r2)
        assert received(out) == (2, 2)
        neigh = s1.out("exec", "r1", "ip", "neigh", "show", r2)
        r2_mac = s2.out("exec", "r2", "cat", "/sys/class/net/eth0/address")
        assert r2_mac in neigh, neigh  # red reached red, not green
        s2.docker("rm", "-f", "r2")
        lonely = s1.docker("exec", "r1", "ping", "-c", "2", "-W", "2", r2,
                           check=False)
        assert received(lonely.stdout)[1] == 0  # green's twin never answers
    finally:
        for site in (s1, s2):
            site.host.docker.remove_all_containers()
            site.docker("network", "rm", "red", "green", check=False)


@pytest.mark.kernel_datapath
def test_layer2_isolation_across_hosts(mesh):
    _, (s1, s2, _) = mesh
    for site in (s1, s2):
        site.docker("network", "create", "-d", "ovsgre", "--ipam-driver",
                    "ovsgre", "--subnet", "198.18.70.0/24",
                    "-o", "ovsgre.network=other", "other")
    try:
        s2.run_bg("target", "blue", "sleep", "600")
        target = s2.ip("target", "blue")
        spoof = f"ip addr add 198.19.255.200/16 dev eth0 && " \
                f"ping -c 3 -W 1 {target}"
        intruder = s1.run_rm("other", "sh", "-c", spoof,
                             extra=("--cap-add", "NET_ADMIN"), check=False)
        assert received(intruder.stdout)[1] == 0, intruder.stdout
        friend = s1.run_rm("blue", "ping", "-c", "2", "-W", "5", target)
        assert received(friend.stdout) == (2, 2)
    finally:
        for site in (s1, s2):
            site.host.docker.remove_all_containers()
            site.docker("network", "rm", "other", check=False)


GRE_OUTER = re.compile(r"(\d+\.\d+\.\d+\.\d+) > (\d+\.\d+\.\d+\.\d+): "
                       r"GRE")


def outer_ips(lines, what):
    """[(outer src, outer dst)] of the captured GRE lines containing
    `what` (tcpdump -e prints the outer IPv4 header, then the frame the
    GRE packet carries)."""
    out = []
    for line in lines:
        if what in line:
            match = GRE_OUTER.search(line)
            assert match, line
            out.append(match.groups())
    return out


@pytest.mark.kernel_datapath
def test_one_broadcast_reaches_each_other_host_exactly_once(mesh):
    cluster, sites = mesh
    ips = [cluster.host_ip(site.host) for site in sites]
    for i, site in enumerate(sites):
        site.run_bg(f"b{i}", "blue", "sleep", "600")
    probe = "198.19.254.254"   # nobody has it: the ARP stays a broadcast
    egress = [Capture(site.host, "eth0", "ip proto 47",
                      extra_args=["-Q", "out"]).start() for site in sites]
    # What each host's underlay NIC takes in, addressed to that host (the
    # switch may flood a frame for another host's MAC while it learns).
    ingress = [Capture(site.host, "eth0", f"ip proto 47 and dst host {ip}",
                       extra_args=["-Q", "in"]).start()
               for site, ip in zip(sites, ips)]
    try:
        sites[0].docker("exec", "b0", "arping", "-c", "1", "-w", "1",
                        "-I", "eth0", probe, check=False)
        time.sleep(1.5)   # a loop would keep multiplying frames meanwhile
    finally:
        sent = [c.stop() for c in egress]
        got = [c.stop() for c in ingress]
    what = f"who-has {probe}"
    sent_pairs = [outer_ips(lines, what) for lines in sent]
    # h1 sent one copy to each peer (never two to one), nothing re-flooded
    assert sorted(sent_pairs[0]) == [(ips[0], ips[1]), (ips[0], ips[2])], \
        sent
    assert sent_pairs[1:] == [[], []], sent
    # and each other host took in exactly one, from h1; h1 none back
    got_pairs = [outer_ips(lines, what) for lines in got]
    assert got_pairs == [[], [(ips[0], ips[1])], [(ips[0], ips[2])]], got
    for i, site in enumerate(sites):
        site.docker("rm", "-f", f"b{i}")


def test_broadcasts_reach_only_the_hosts_that_hold_the_network(mesh):
    """"pair" exists on h1 and h2 only: h3 takes in no frame of it, not
    even a broadcast or an unknown unicast, while h1 and h2 still reach
    each other; "blue" (on every host) still floods to both peers."""
    cluster, (s1, s2, s3) = mesh
    ips = [cluster.host_ip(site.host) for site in (s1, s2, s3)]
    for site in (s1, s2):
        site.docker("network", "create", "-d", "ovsgre",
                    "--ipam-driver", "ovsgre",
                    "--ipam-opt", "ovsgre.network=pair",
                    "--subnet", "198.19.60.0/24",
                    "-o", "ovsgre.network=pair", "pair")
    try:
        s1.run_bg("p1", "pair", "sleep", "600",
                  extra=("--cap-add", "NET_ADMIN"))   # for `arp -s`
        s2.run_bg("p2", "pair", "sleep", "600")
        s1.run_bg("bb1", "blue", "sleep", "600")
        p2 = s2.ip("p2", "pair")
        # h1 learns, through etcd, that h2 holds "pair" (and h3 not)
        assert received(s1.out("exec", "p1", "ping", "-c", "1", "-W", "5",
                               p2)) == (1, 1)
        probe, blue_probe = "198.19.60.254", "198.19.254.253"
        ingress = [Capture(site.host, "eth0",
                           f"ip proto 47 and dst host {ip}",
                           extra_args=["-Q", "in"]).start()
                   for site, ip in zip((s1, s2, s3), ips)]
        try:
            for _ in range(3):
                s1.docker("exec", "p1", "arping", "-c", "1", "-w", "1",
                          "-I", "eth0", probe, check=False)
            # an unknown unicast: a MAC no host has learned
            s1.docker("exec", "p1", "sh", "-c",
                      "arp -s 198.19.60.253 02:00:00:de:ad:01 && "
                      "ping -c 2 -W 1 198.19.60.253", check=False)
            s1.docker("exec", "bb1", "arping", "-c", "1", "-w", "1",
                      "-I", "eth0", blue_probe, check=False)
            time.sleep(1.5)
        finally:
            got = [c.stop() for c in ingress]
        pair_h2 = outer_ips(got[1], f"who-has {probe}")
        assert len(pair_h2) == 3, got[1]          # h2 holds it: all three
        assert outer_ips(got[2], f"who-has {probe}") == [], got[2]
        assert outer_ips(got[1], "02:00:00:de:ad:01") != [], got[1]
        assert outer_ips(got[2], "02:00:00:de:ad:01") == [], got[2]
        assert outer_ips(got[2], "198.19.60.") == [], got[2]
        # blue is on every host: its broadcast still reaches both peers
        assert len(outer_ips(got[1], f"who-has {blue_probe}")) == 1, got[1]
        assert len(outer_ips(got[2], f"who-has {blue_probe}")) == 1, got[2]
    finally:
        for site in (s1, s2):
            site.host.docker.remove_all_containers()
            site.docker("network", "rm", "pair", check=False)


def test_one_tunnel_per_peer_whatever_the_number_of_networks(mesh):
    """GRE ports are per peer host, shared by every network (the key picks
    the network): three networks with endpoints on every host still make
    two tunnels per host, not peers x networks."""
    cluster, sites = mesh
    ips = [cluster.host_ip(site.host) for site in sites]
    extra = {"t1": "198.18.81.0/24", "t2": "198.18.82.0/24"}
    names = ("blue", *extra)
    try:
        for site in sites:
            for name, subnet in extra.items():
                site.docker("network", "create", "-d", "ovsgre",
                            "--ipam-driver", "ovsgre",
                            "--ipam-opt", f"ovsgre.network={name}",
                            "--subnet", subnet,
                            "-o", f"ovsgre.network={name}", name)
        for i, site in enumerate(sites):
            for name in names:
                site.run_bg(f"n{i}{name}", name, "sleep", "600")
        for name in names:   # every network is in use across the tunnels
            far = sites[2].ip(f"n2{name}", name)
            out = sites[0].out("exec", f"n0{name}", "ping", "-c", "1", "-W",
                               "5", far)
            assert received(out) == (1, 1), (name, out)
        for i, site in enumerate(sites):
            peers = sorted(ip for j, ip in enumerate(ips) if j != i)
            assert tunnels(site) == peers, (site.host.hostname,
                                            site.host.ovs.vsctl("show"))
            # and every bridge of every host's OVS has the datapath the
            # harness gave the plugin (datapath.py; not `auto`'s choice)
            assert set(site.host.ovs.datapath_types().values()) == \
                {DATAPATH}, site.host.ovs.datapath_types()
            assert site.plugin.environ().get("OVSGRE_DATAPATH") == DATAPATH
    finally:
        for site in sites:
            site.host.docker.remove_all_containers()
            site.docker("network", "rm", *extra, check=False)


@pytest.mark.reliability("load", "concurrent starts on three hosts: no address twice")
def test_concurrent_starts_on_three_hosts_get_distinct_addresses(mesh):
    _, sites = mesh
    jobs = [(site, f"cc{i}{n}") for i, site in enumerate(sites)
            for n in range(6)]

    def run(job):
        site, name = job
        site.run_bg(name, "blue", "sleep", "600")
        return site.ip(name, "blue")

    with concurrent.futures.ThreadPoolExecutor(len(jobs)) as pool:
        ips = list(pool.map(run, jobs))
    assert len(ips) == 18 and len(set(ips)) == 18, ips
    for site, name in jobs:
        site.docker("rm", "-f", name)


AUX = "198.18.98.9"
AUX_NET = ("--ipam-driver", "ovsgre", "--subnet", "198.18.98.0/28",
           "--aux-address", f"router={AUX}", "-o", "ovsgre.network=auxn")


def _ipam_claims(cluster, ip):
    """The IPAM address records of ip in etcd."""
    out = cluster.etcd.etcdctl("get", "--prefix", "/ovsgre/ipam/addrs/",
                               "-w", "json").stdout
    kvs = json.loads(out).get("kvs", [])
    return [json.loads(base64.b64decode(kv["value"])) for kv in kvs
            if base64.b64decode(kv["key"]).decode().endswith("/" + ip)]


def test_aux_address_on_every_host_with_ovsgre_ipam(mesh):
    """--aux-address on a network of ovsgre's IPAM: every host's create
    succeeds (the second one used to fail: address already in use), no
    container gets the address, and it stays reserved until the last host
    removes the network."""
    cluster, sites = mesh
    made = []
    try:
        for site in sites:
            site.docker("network", "create", "-d", "ovsgre", *AUX_NET,
                        "auxn")
            made.append(site)
        assert [c.get("aux") for c in _ipam_claims(cluster, AUX)] == [True]
        refused = sites[1].docker("run", "--rm", "--network", "auxn",
                                  "--ip", AUX, IMAGE, "true", check=False)
        assert refused.returncode != 0 and \
            "reserved on this network (--aux-address)" in refused.stderr, \
            refused.stderr
        # addresses go in turn from .2: the 8th container would get .9
        names = [(site, f"ax{i}{n}") for i, site in enumerate(sites)
                 for n in range(3)]
        for site, name in names:
            site.run_bg(name, "auxn", "sleep", "600")
        ips = {site.ip(name, "auxn") for site, name in names}
        assert len(ips) == 9 and AUX not in ips, sorted(ips)
        for site, name in names:
            site.docker("rm", "-f", name)
        # two hosts leave; the third still has the network: still reserved
        for site in sites[:2]:
            site.docker("network", "rm", "auxn")
            made.remove(site)
        assert [c.get("aux") for c in _ipam_claims(cluster, AUX)] == [True]
        sites[2].docker("network", "rm", "auxn")
        made.remove(sites[2])
        assert _ipam_claims(cluster, AUX) == []       # with the last holder
    finally:
        for site in made:
            site.host.docker.remove_all_containers()
            site.docker("network", "rm", "auxn", check=False)


class TunnelWatch(threading.Thread):
    """Polls each site's GRE ports; first_seen[i] is the wall-clock time
    (time.time()) at which a tunnel to `ip` was first seen on sites[i]
    (just after the OVSDB read that showed it: an upper bound)."""

    def __init__(self, sites, ip, interval=0.05):
        super().__init__(daemon=True)
        self.sites, self.ip, self.interval = sites, ip, interval
        self.first_seen = [None] * len(sites)
        self.errors = []
        self._halt = threading.Event()

    def run(self):
        while not self._halt.is_set() and None in self.first_seen:
            for i, site in enumerate(self.sites):
                if self.first_seen[i] is None:
                    try:
                        if self.ip in tunnels(site):
                            self.first_seen[i] = time.time()
                    except Exception as exc:  # noqa: BLE001 - reported
                        self.errors.append(exc)
            self._halt.wait(self.interval)

    def stop(self):
        self._halt.set()
        self.join(10)


@pytest.mark.kernel_datapath
@pytest.mark.reliability("fault", "a host dies without leaving: its lease expires, every mesh drops it")
def test_fourth_host_joins_and_leaves(mesh):
    cluster, sites = mesh
    sites[0].run_bg("anchor", "blue", "sleep", "600")
    anchor = sites[0].ip("anchor", "blue")
    host = cluster.add_host()
    new_ip = cluster.host_ip(host)
    import_busybox(host.docker)
    # Watching before the plugin starts: the bound is from the moment the
    # plugin says it registered, not from when the test got to look.
    watch = TunnelWatch(sites, new_ip)
    watch.start()
    site = None
    try:
        site = start_plugin(cluster, host)
        registered = _registered_at(site)
        wait_for(lambda: None not in watch.first_seen, 5,
                 "tunnels to the new host on every host")
        watch.stop()
        assert watch.errors == []
        after = [round(t - registered, 3) for t in watch.first_seen]
        # (a negative value far off would mean the clocks were misread)
        assert all(-1.0 <= a <= 2.0 for a in after), after
        site.docker("network", "create", "-d", "ovsgre", *BLUE, "blue")
        site.run_bg("newbie", "blue", "sleep", "600")
        out = site.out("exec", "newbie", "ping", "-c", "2", "-W", "5",
                       anchor)
        assert received(out) == (2, 2)
    finally:
        watch.stop()
        if site is not None:
            site.host.docker.remove_all_containers()
            site.plugin.kill9()   # dies without leaving: lease must expire
        cluster.stop_host(host)
    wait_for(lambda: all(new_ip not in tunnels(s) for s in sites),
             3 + 5, "the dead host's tunnels to go")
    sites[0].docker("rm", "-f", "anchor")


@pytest.mark.reliability("fault", "a host dies for good with a container: its holds stay until `ovsgre host forget` releases them, then its address is free")
def test_dead_host_is_forgotten(mesh):
    """A host dies with a container on blue: its holds stay (it may come
    back); `ovsgre host forget` releases them and its address is free."""
    cluster, sites = mesh
    host = cluster.add_host()
    dead_ip = cluster.host_ip(host)
    import_busybox(host.docker)
    site = start_plugin(cluster, host)
    try:
        site.docker("network", "create", "-d", "ovsgre", *BLUE, "blue")
        site.run_bg("doomed", "blue", "sleep", "600")
        address = site.ip("doomed", "blue")
        site.plugin.kill9()       # dies: nothing is released
    finally:
        site.plugin.kill9()
        cluster.stop_host(host)
    wait_for(lambda: all(dead_ip not in tunnels(s) for s in sites),
             3 + 5, "the dead host's tunnels to go")
    blue = _ls(sites[0])["blue"]
    assert dead_ip in blue["down_hosts"], blue
    taken = sites[0].docker("run", "--rm", "--network", "blue", "--ip",
                            address, IMAGE, "true", check=False)
    assert taken.returncode != 0, "the dead host's address was free"
    out = ovsgre_cli(sites[0], "host", "forget", dead_ip).stdout
    assert f"forgot {dead_ip}: released 1 network hold(s), 1 pool " \
        "hold(s), 1 address(es)" in out, out
    blue = _ls(sites[0])["blue"]
    assert dead_ip not in blue["hosts"] + blue["down_hosts"], blue
    sites[0].docker("run", "--rm", "--network", "blue", "--ip", address,
                    IMAGE, "true")


def _ls(site):
    return {row["name"]: row for row in json.loads(ovsgre_cli(
        site, "network", "ls", "--json").stdout)}


def test_host_that_leaves_cleanly_is_removed_at_once(mesh):
    cluster, sites = mesh
    host = cluster.add_host()
    new_ip = cluster.host_ip(host)
    site = start_plugin(cluster, host, OVSGRE_LEASE_TTL="60")
    try:
        wait_for(lambda: all(new_ip in tunnels(s) for s in sites), 5,
                 "tunnels to the new host")
        site.plugin.stop()   # SIGTERM: the plugin revokes its lease
        gone = time.monotonic()
        wait_for(lambda: all(new_ip not in tunnels(s) for s in sites), 5,
                 "tunnels to go long before the 60 s lease would expire")
        assert time.monotonic() - gone < 5
    finally:
        site.plugin.stop()
        cluster.stop_host(host)


REGISTERED = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) "
                        r".*: registered /ovsgre/hosts/", re.M)


def _registered_at(site, timeout=10):
    """Wall-clock time (time.time()) the plugin logged its registration in
    etcd at (its log lines start with logging's asctime: local time,
    milliseconds), the first one of this run of the plugin."""
    found = []

    def logged():
        found[:] = REGISTERED.findall(site.plugin.log_tail(400))
        return bool(found)

    wait_for(logged, timeout, "registration")
    stamp, millis = found[0]
    return time.mktime(time.strptime(stamp, "%Y-%m-%d %H:%M:%S")) + \
        int(millis) / 1000.0


@pytest.mark.reliability("fault", "etcd down for 30 s: traffic keeps flowing, calls fail fast, registrations and watches resume")
def test_etcd_outage_keeps_traffic_and_recovers(mesh):
    cluster, (s1, s2, _) = mesh
    s1.run_bg("e1", "blue", "sleep", "600")
    s2.run_bg("e2", "blue", "sleep", "600")
    e2 = s2.ip("e2", "blue")
    pinger = subprocess.Popen(
        ["/usr/bin/docker", "exec", "e1", "ping", "-c", "40", e2],
        stdout=subprocess.PIPE, text=True,
        env=dict(os.environ, **s1.host.docker.cli_env))
    time.sleep(2)
    cluster.etcd.stop()
    down = time.monotonic()
    try:
        start = time.monotonic()
        failed = s1.docker("run", "--rm", "--network", "blue", IMAGE, "true",
                           check=False, timeout=60)
        took = time.monotonic() - start
        assert failed.returncode != 0
        assert "etcd unreachable" in failed.stderr, failed.stderr
        assert took < 15, took
        refused = s1.docker("network", "create", "-d", "ovsgre",
                            "--ipam-driver", "ovsgre", "--subnet",
                            "198.19.80.0/24", "-o", "ovsgre.network=late",
                            "late", check=False, timeout=60)
        assert refused.returncode != 0 and "etcd" in refused.stderr
        time.sleep(max(0.0, 30 - (time.monotonic() - down)))  # 30 s outage
    finally:
        cluster.etcd.start()
    out, _ = pinger.communicate(timeout=90)
    sent, got = received(out)
    assert sent == 40 and got >= 39, out   # traffic never stopped
    # recovery by itself: calls work again, tunnels intact
    wait_for(lambda: s1.docker("run", "--rm", "--network", "blue", IMAGE,
                               "true", check=False).returncode == 0,
             30, "docker run to work again")
    # registrations resumed: past two lease TTLs every host's key is there
    # (a host that had not re-registered would have lost it with its lease)
    time.sleep(2 * int(LEASE_TTL) + 1)
    keys = cluster.etcd.etcdctl("get", "--prefix", "--keys-only",
                                "/ovsgre/hosts/").stdout.split()
    assert sorted(k.rsplit("/", 1)[1] for k in keys) == sorted(
        cluster.host_ip(s.host) for s in mesh[1]), keys
    assert all(len(tunnels(s)) == 2 for s in mesh[1])
    # watches resumed: a host that joins now gets tunnels on every host
    host = cluster.add_host()
    new_ip = cluster.host_ip(host)
    late = start_plugin(cluster, host)
    try:
        wait_for(lambda: all(new_ip in tunnels(s) for s in mesh[1]), 5,
                 "tunnels to a host that joined after the outage")
    finally:
        late.plugin.stop()
        cluster.stop_host(host)
    for site, name in ((s1, "e1"), (s2, "e2")):
        site.docker("rm", "-f", name)


def test_static_peers_without_etcd():
    cluster = Cluster(n_hosts=2, etcd=False)
    sites = []
    try:
        cluster.start()
        ips = [cluster.host_ip(h) for h in cluster.hosts]
        for host in cluster.hosts:
            import_busybox(host.docker)
            # no OVSGRE_LOCAL_IP: detected from the route to the peers
            sites.append(start_plugin(cluster, host, OVSGRE_LOCAL_IP="",
                                      OVSGRE_PEERS=",".join(ips)))
        ranges = ("198.19.60.0/25", "198.19.60.128/25")
        for site, ip_range in zip(sites, ranges):
            wait_for(lambda: len(tunnels(site)) == 1, 10, "the tunnel")
            site.docker("network", "create", "-d", "ovsgre",
                        "--ipam-driver", "ovsgre", "--subnet",
                        "198.19.60.0/24", "--ip-range", ip_range,
                        "-o", "ovsgre.network=static", "static")
        sites[0].run_bg("s0", "static", "sleep", "600")
        sites[1].run_bg("s1", "static", "sleep", "600")
        a, b = sites[0].ip("s0", "static"), sites[1].ip("s1", "static")
        assert re.match(r"198\.19\.60\.\d+$", a) and a != b
        out = sites[0].out("exec", "s0", "ping", "-c", "2", "-W", "5", b)
        assert received(out) == (2, 2)
    finally:
        stop_sites(cluster, sites)


def test_address_reused_on_another_host_is_reachable_at_once(mesh):
    """A container re-created on another host with the same address and
    MAC (pinned by the user, or derived from the IP as newer Docker
    releases do) must be reachable at once: the other hosts must not keep
    sending that MAC to the old host until their learned flow expires."""
    _, (s1, s2, s3) = mesh
    s1.run_bg("caller", "blue", "sleep", "600")
    pinned = ("--ip", "198.19.200.5", "--mac-address", "02:42:c6:13:c8:05")
    s2.run_bg("mover", "blue", "sleep", "600", extra=pinned)
    out = s1.out("exec", "caller", "ping", "-c", "2", "-W", "5",
                 "198.19.200.5")
    assert received(out) == (2, 2)   # s1 has learned: that MAC is on s2
    old_mac = s2.out("exec", "mover", "cat", "/sys/class/net/eth0/address")
    s2.docker("rm", "-f", "mover")
    # The userspace datapath drops a tunnel's packet while it resolves the
    # remote end's underlay MAC: s3 must not have it yet for this to count.
    s3.host.ovs.appctl("ovs-vswitchd", "tnl/neigh/flush")
    s3.run_bg("mover", "blue", "sleep", "600", extra=pinned)
    assert s3.out("exec", "mover", "cat",
                  "/sys/class/net/eth0/address") == old_mac
    out = s1.out("exec", "caller", "ping", "-c", "3", "-W", "2",
                 "198.19.200.5")
    assert received(out)[1] >= 2, out
    s1.docker("rm", "-f", "caller")
    s3.docker("rm", "-f", "mover")


@pytest.mark.reliability("security", "etcd client TLS (CA, certificate, key) against etcd with TLS")
def test_etcd_with_tls():
    cluster = Cluster(n_hosts=2, etcd=True, etcd_tls=True)
    sites = []
    try:
        cluster.start()
        assert cluster.etcd.url.startswith("https://")
        for host in cluster.hosts:
            import_busybox(host.docker)
            sites.append(start_plugin(cluster, host))   # CA, cert and key
        for site in sites:
            wait_for(lambda: len(tunnels(site)) == 1, 10, "the tunnel")
            site.docker("network", "create", "-d", "ovsgre", *BLUE, "blue")
        sites[0].run_bg("t0", "blue", "sleep", "600")
        sites[1].run_bg("t1", "blue", "sleep", "600")
        out = sites[0].out("exec", "t0", "ping", "-c", "2", "-W", "5",
                           sites[1].ip("t1", "blue"))
        assert received(out) == (2, 2)
    finally:
        stop_sites(cluster, sites)


def test_network_declared_once_appears_on_every_host(mesh):
    cluster, sites = mesh
    out = ovsgre_cli(sites[0], "network", "create", "decl",
                     "--subnet", "198.19.210.0/24").stdout
    assert "declared decl" in out
    for site in sites:   # each host's plugin creates it through Docker
        wait_for(lambda: "decl" in docker_networks(site), 30,
                 f"decl on {site.host.hostname}")
    sites[0].run_bg("d0", "decl", "sleep", "600")
    sites[2].run_bg("d2", "decl", "sleep", "600")
    reply = sites[0].out("exec", "d0", "ping", "-c", "2", "-W", "5",
                         sites[2].ip("d2", "decl"))
    assert received(reply) == (2, 2)
    host = cluster.add_host()          # a host that joins later gets it
    late = start_plugin(cluster, host)
    try:
        wait_for(lambda: "decl" in docker_networks(late), 30,
                 "decl on the late host")
        listing = json.loads(ovsgre_cli(sites[1], "network", "ls",
                                        "--json").stdout)
        row = [r for r in listing if r["name"] == "decl"][0]
        assert row["declared"] and row["subnets"] == ["198.19.210.0/24"]
        wait_for(lambda: len([r for r in json.loads(ovsgre_cli(
            sites[1], "network", "ls", "--json").stdout)
            if r["name"] == "decl"][0]["hosts"]) == 4, 10, "4 hosts")
        for site, name in ((sites[0], "d0"), (sites[2], "d2")):
            site.docker("rm", "-f", name)
        ovsgre_cli(sites[0], "network", "rm", "decl")
        for site in sites + [late]:
            wait_for(lambda: "decl" not in docker_networks(site), 30,
                     f"decl gone from {site.host.hostname}")
    finally:
        late.host.docker.remove_all_containers()
        late.plugin.stop()
        cluster.stop_host(host)


@pytest.mark.kernel_datapath
@pytest.mark.reliability("fault", "ovs-vswitchd restarted: tunnel flows reinstalled (3 hosts)")
def test_vswitchd_restart_restores_tunnel_flows(mesh):
    cluster, (s1, s2, _) = mesh
    s1.run_bg("v1", "blue", "sleep", "600")
    s2.run_bg("v2", "blue", "sleep", "600")
    v1 = s1.ip("v1", "blue")
    out = s2.out("exec", "v2", "ping", "-c", "1", "-W", "5", v1)
    assert received(out) == (1, 1)
    s1.host.ovs.restart_vswitchd()   # forgets every flow; ports stay in OVSDB
    restarted = time.monotonic()
    back = wait_for(lambda: s2.docker("exec", "v2", "ping", "-c", "1", "-W",
                                      "1", v1, check=False).returncode == 0,
                    20, "traffic to resume")
    assert back - restarted <= 5, back - restarted   # the bound
    assert "tunnel flows missing" in s1.plugin.log_tail(100)
    for site, name in ((s1, "v1"), (s2, "v2")):
        site.docker("rm", "-f", name)
