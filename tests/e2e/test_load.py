"""Load: bursts of 32 parallel `docker run`, round after round, on one host
and spread over three.

First packets: 32 parallel `docker run --rm … ping -c 1 -W 1 PEER`, where
PEER is a container already running (on another host, over three hosts),
as a program that connects at start-up would: on a fresh host, right after
the plugin restarted, and right after ovs-vswitchd restarted.  Each phase
begins with one container alone, whose first ping must be answered; in
the bursts every container must reach its peer, and the first pings must
be answered within 1 s but for what the kernel loses under such churn on
this test bed (ONE_HOST_FIRST_ANSWERED, MIN_FIRST_ANSWERED say how much
and why).

Bookkeeping: every start must succeed; while a burst runs, no two
containers may share an address or a MAC (cluster-wide) and no two
endpoints an interface name (per host), and what Docker, the plugin's
records, OVS and the kernel say must agree.  After each round's `docker rm
-f` and at the end nothing may be left: no veth, no OVS port, no endpoint
record, and (three hosts) no address allocated in etcd beyond the network's
gateway.

Timings are printed (run with -s to see them).
"""

import base64
import concurrent.futures
import json
import os
import re
import statistics
import time

import pytest

from tests.harness.cluster import Cluster
from tests.harness.netns import link_json
from tests.harness.sites import (IMAGE, received, remove_network,
                                 start_mesh, stop_sites, wait_for)

PARALLEL = 32
ROUNDS = 10
# Three hosts: 10 rounds as well.  One round costs about as much as on one
# host (the 32 starts are spread over three dockerds competing for the same
# two cores), so the whole file stays within ~6 minutes here.
MESH_ROUNDS = 10
SUBNET = "198.18.88.0/22"      # used by no other test
FIRST_SUBNET = "198.18.92.0/22"
# One host: a frame sent towards a container in the instant its eth0 comes
# up can be dropped by the kernel (the veth's other end transmits only once
# a deferred carrier event has run; Docker's bridge has the same race).
# Seen here: 1 late first ping in about 2,000 under the 32-container burst.
ONE_HOST_FIRST_ANSWERED = 0.99
# Rounds of first pings right after each restart: the moments a port or a
# flow could be missing.
AFTER_RESTART_ROUNDS = 3
PATCH_PORT = "ovgp-tun"        # br-ovsgre's patch to the tunnel bridge
IPAM_PREFIX = "/ovsgre/ipam/"


# -- helpers ------------------------------------------------------------------

def burst(jobs, network):
    """`docker run -d` for every (site, name) at once; (seconds, failures)."""
    def run(job):
        site, name = job
        return site.docker("run", "-d", "--init", "--name", name,
                           "--network", network, IMAGE, "sleep", "600",
                           check=False, timeout=300)

    start = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(len(jobs)) as pool:
        done = list(pool.map(run, jobs))
    failed = [(name, cp.returncode, cp.stderr.strip()[-400:])
              for (_, name), cp in zip(jobs, done) if cp.returncode != 0]
    return time.monotonic() - start, failed


def remove(jobs):
    """`docker rm -f` for every (site, name) at once; (seconds, failures)."""
    def rm(job):
        site, name = job
        return site.docker("rm", "-f", name, check=False, timeout=300)

    start = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(len(jobs)) as pool:
        done = list(pool.map(rm, jobs))
    failed = [(name, cp.returncode, cp.stderr.strip()[-400:])
              for (_, name), cp in zip(jobs, done) if cp.returncode != 0]
    return time.monotonic() - start, failed


def inspect(site, names, network):
    """{name: {ip, mac, eid, running}} from one `docker inspect`."""
    out = {}
    for c in json.loads(site.out("inspect", *names)):
        net = c["NetworkSettings"]["Networks"][network]
        out[c["Name"].lstrip("/")] = {
            "ip": net["IPAddress"], "mac": net["MacAddress"],
            "eid": net["EndpointID"], "running": c["State"]["Running"]}
    return out


def endpoint_records(site):
    folder = os.path.join(site.plugin.state_dir, "endpoints")
    records = {}
    for name in os.listdir(folder):
        if name.endswith(".json"):
            with open(os.path.join(folder, name)) as fh:
                rec = json.load(fh)
            records[rec["endpoint_id"]] = rec
    return records


def ovs_ports(site):
    return sorted(p for p in site.host.ovs.vsctl(
        "list-ports", "br-ovsgre").split() if p and p != PATCH_PORT)


def ovg_links(site):
    return sorted(l["ifname"] for l in link_json(site.host.netns)
                  if l["ifname"].startswith("ovg"))


def leftovers(site):
    """ovsgre's endpoint resources still on the host (networks aside)."""
    return {"links": ovg_links(site), "ports": ovs_ports(site),
            "endpoints": sorted(endpoint_records(site))}


def wait_clean(site, timeout=15):
    """The veth pairs go in the background after DeleteEndpoint."""
    deadline = time.monotonic() + timeout
    while True:
        left = leftovers(site)
        if not any(left.values()) or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


def check_host(site, containers):
    """Docker, the plugin's records, OVS and the kernel agree about this
    host's running containers; interface names are distinct.  Returns the
    host veth names."""
    host = site.host.hostname
    records = endpoint_records(site)
    eids = {c["eid"] for c in containers.values()}
    assert len(eids) == len(containers), (host, containers)
    assert set(records) == eids, (host, sorted(records), sorted(eids))
    host_ifs = [r["host_if"] for r in records.values()]
    peer_ifs = [r["peer_if"] for r in records.values()]
    assert len(set(host_ifs)) == len(containers), (host, host_ifs)
    assert len(set(peer_ifs)) == len(containers), (host, peer_ifs)
    assert all(r["state"] == "joined" for r in records.values()), records
    by_eid = {c["eid"]: c for c in containers.values()}
    for eid, rec in records.items():
        assert rec["mac"] == by_eid[eid]["mac"], (host, rec, by_eid[eid])
    # each host end is an OVS port and a kernel link; the container ends
    # are inside the containers (as eth0), none is left on the host
    assert ovs_ports(site) == sorted(host_ifs), host
    assert ovg_links(site) == sorted(host_ifs), host
    return host_ifs


def check_cluster(containers, n):
    """Over all hosts: n running containers, n distinct IPs and MACs."""
    assert len(containers) == n
    assert all(c["running"] for c in containers.values()), containers
    ips = [c["ip"] for c in containers.values()]
    macs = [c["mac"] for c in containers.values()]
    assert all(ips) and len(set(ips)) == n, sorted(ips)
    assert all(macs) and len(set(macs)) == n, sorted(macs)


def p50(values):
    return statistics.median(values) if values else 0.0


def port_type(site):
    with open(site.plugin.log_path, errors="replace") as fh:
        match = re.search(r"port type (\S+)", fh.read())
    return match.group(1) if match else "unknown"


def report(title, timings):
    print(f"\n{title}")
    for row in timings:
        print("  round {round:2d}: run {run:5.1f} s  inspect {inspect:4.1f} s"
              "  rm {rm:5.1f} s  clean {clean:4.1f} s".format(**row))
    for key in ("run", "rm"):
        vals = [row[key] for row in timings]
        print(f"  docker {key} x{PARALLEL}: p50 {p50(vals):.1f} s, "
              f"max {max(vals):.1f} s")


FIRST, LATE, UNREACHED = "first", "late", "unreached"
# A first ping that is lost is followed by more, one a second for 5 s
# (busybox's `ping -c 1 -w 5` sends only one: with 2-7 % background loss,
# a container whose first two pings were both lost, about one in 500, was
# taken for cut off): exit 0 when the first was answered, 3 when only a
# later one was.  A container that reaches nothing says what it saw.
SECOND_CHANCE = (
    "ping -c 1 -W 1 {peer} && exit 0; "
    "for i in 1 2 3 4 5; do "
    "ping -c 1 -W 1 {peer} >/dev/null 2>&1 && exit 3; done; "
    "ip -o -4 addr show eth0; ip neigh; "
    "echo tx $(cat /sys/class/net/eth0/statistics/tx_packets) "
    "rx $(cat /sys/class/net/eth0/statistics/rx_packets); exit 1")


def first_pings(jobs, network, second_chance=False):
    """`docker run --rm … ping -c 1 -W 1 PEER` for every (site, peer) at
    once; returns (seconds, [(host, peer, outcome, output)]) with outcome
    FIRST (the first ping answered), LATE (second_chance: lost, but the
    peer answered a second ping) or UNREACHED."""
    def run(job):
        site, peer = job
        cmd = ["sh", "-c", SECOND_CHANCE.format(peer=peer)] \
            if second_chance else ["ping", "-c", "1", "-W", "1", peer]
        return site.docker("run", "--rm", "--network", network, IMAGE,
                           *cmd, check=False, timeout=300)

    start = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(len(jobs)) as pool:
        done = list(pool.map(run, jobs))
    results = []
    for (site, peer), cp in zip(jobs, done):
        answered = re.search(r"1 packets transmitted, 1 packets received",
                             cp.stdout)
        outcome = FIRST if cp.returncode == 0 and answered else \
            LATE if cp.returncode == 3 else UNREACHED
        results.append((site.host.hostname, peer, outcome,
                        (cp.stdout + cp.stderr).strip()[-600:]))
    return time.monotonic() - start, results


def ping_phases(jobs, network, restart_plugins, restart_vswitchds,
                check_phase, second_chance=False):
    """ROUNDS of first pings, then AFTER_RESTART_ROUNDS after restarting
    the plugins, then as many after restarting ovs-vswitchd, each phase
    begun by one container alone whose first ping must be answered;
    check_phase(phase, results of all its rounds) asserts.  Returns the
    lines to print."""
    lines = []
    for phase, rounds, restart in (
            ("fresh", ROUNDS, None),
            ("plugin restarted", AFTER_RESTART_ROUNDS, restart_plugins),
            ("ovs-vswitchd restarted", AFTER_RESTART_ROUNDS,
             restart_vswitchds)):
        if restart is not None:
            restart()
        # One container alone first: no load to blame, its first ping
        # must be answered (tunnel flows back, peers' underlay MACs known).
        _, alone = first_pings(jobs[:1], network)
        assert alone[0][2] == FIRST, (phase, "alone", alone)
        phase_results = []
        for r in range(rounds):
            took, results = first_pings(jobs, network, second_chance)
            phase_results += results
            answered = sum(res[2] == FIRST for res in results)
            lines.append(f"  {phase:22s} round {r + 1:2d}: {answered} of "
                         f"{len(jobs)} first pings answered within 1 s "
                         f"({took:.1f} s)")
        check_phase(phase, phase_results)
    return lines


def first_pings_check(share):
    """check_phase for ping_phases: every container reaches its peer, and
    at least `share` of the first pings are answered within 1 s (one may
    be late in any phase)."""
    def check(phase, results):
        unreached = [res for res in results if res[2] == UNREACHED]
        assert unreached == [], (phase, len(unreached), unreached[:4])
        late = [res for res in results if res[2] != FIRST]
        allowed = max(1, int((1 - share) * len(results)))
        assert len(late) <= allowed, (phase, len(late), len(results),
                                      late[:4])
    return check


def tunnel_table_installed(site):
    """The plugin's tunnel flows (its cookie) are in ovs-vswitchd."""
    flows = site.host.ovs.ofctl("dump-flows", "br-ovsgre-tun", check=False)
    return "cookie=0x6f7667" in flows


def restart_plugin(site):
    site.plugin.stop()
    site.plugin.start()


# -- one host ----------------------------------------------------------------

@pytest.mark.reliability("load", "first packet: 32 parallel docker run --rm … ping -c 1 -W 1 x 10 rounds on one host, then after a plugin and an ovs-vswitchd restart: every container reaches its peer, ≥ 99 % of first pings answered within 1 s (at most 1 late per phase)")
def test_first_ping_of_every_container_on_one_host(site):
    network = "first"
    site.docker("network", "create", "-d", "ovsgre", "--subnet",
                FIRST_SUBNET, network)
    try:
        site.run_bg("fp-peer", network, "sleep", "600")
        peer = site.ip("fp-peer", network)
        lines = ping_phases(
            [(site, peer)] * PARALLEL, network,
            lambda: restart_plugin(site),
            lambda: site.host.ovs.restart_vswitchd(),
            first_pings_check(ONE_HOST_FIRST_ANSWERED), second_chance=True)
        print(f"\none host, first pings (port type {port_type(site)})")
        print("\n".join(lines))
    finally:
        site.host.docker.remove_all_containers()
        remove_network(site, network)
    assert site.wait_no_leftovers() == {"links": [], "ports": [],
                                        "records": []}


@pytest.mark.reliability("load", "32 parallel docker run x 10 rounds on one host: no failure, duplicate or leak")
def test_parallel_runs_on_one_host(site):
    network = "load"
    site.docker("network", "create", "-d", "ovsgre", "--subnet", SUBNET,
                network)
    try:
        assert not any(wait_clean(site).values())
        timings = []
        for r in range(ROUNDS):
            jobs = [(site, f"ld{r}-{i:02d}") for i in range(PARALLEL)]
            row = {"round": r + 1}
            row["run"], failed = burst(jobs, network)
            assert failed == [], failed
            t0 = time.monotonic()
            containers = inspect(site, [n for _, n in jobs], network)
            check_cluster(containers, PARALLEL)
            assert len(check_host(site, containers)) == PARALLEL
            row["inspect"] = time.monotonic() - t0
            row["rm"], failed = remove(jobs)
            assert failed == [], failed
            t0 = time.monotonic()
            left = wait_clean(site)
            row["clean"] = time.monotonic() - t0
            assert not any(left.values()), (r, left)
            timings.append(row)
        report(f"one host, {PARALLEL} parallel docker run x {ROUNDS} "
               f"(port type {port_type(site)})", timings)
    finally:
        site.host.docker.remove_all_containers()
        remove_network(site, network)
    assert site.wait_no_leftovers() == {"links": [], "ports": [],
                                        "records": []}


# -- three hosts -------------------------------------------------------------

@pytest.fixture(scope="module")
def mesh3():
    cluster = Cluster(n_hosts=3, etcd=True)
    try:
        start = time.monotonic()
        sites = start_mesh(cluster)
        print(f"\n3-host mesh up in {time.monotonic() - start:.1f} s")
        yield cluster, sites
    finally:
        stop_sites(cluster, getattr(cluster, "mesh_sites", []))


def etcd_ipam(cluster):
    """{key: value} under /ovsgre/ipam/ in etcd."""
    out = cluster.etcd.etcdctl("get", "--prefix", IPAM_PREFIX,
                               "-w", "json").stdout
    kvs = json.loads(out).get("kvs", [])
    return {base64.b64decode(kv["key"]).decode():
            json.loads(base64.b64decode(kv["value"])) for kv in kvs}


def allocated(cluster):
    """Address keys in etcd that are not a network's gateway."""
    return sorted(k for k, v in etcd_ipam(cluster).items()
                  if "/addrs/" in k and not v.get("gateway"))


FIRST_NET = ("--ipam-driver", "ovsgre", "--subnet", FIRST_SUBNET,
             "-o", "ovsgre.network=first")
# Three namespace hosts share one kernel, and so its network lock (RTNL):
# every link and namespace change of three dockerds holds up each
# userspace ovs-vswitchd's main thread (which forwards every packet) and
# the kernel's activation of a just-started container's veth (frames sent
# towards it before that are dropped).  Measured here: 2-7 % of first pings
# across hosts were lost or later than 1 s while 32 containers started and
# stopped at once, the same fraction as a steady ping between two running
# containers lost meanwhile; on one host, none.  What ovsgre must
# guarantee, it is held to: every container reaches its peer on another
# host (a lost first ping is followed by a second one), and the first
# pings are answered within 1 s but for that background loss; a missing
# tunnel flow, an unresolved tunnel neighbour or a Join that answers too
# early lose whole rounds and fail this.
MIN_FIRST_ANSWERED = 0.85


@pytest.mark.reliability("load", "first packet across hosts: 32 parallel docker run --rm … ping -c 1 -W 1 over 3 hosts, each to a container on another host, x 10 rounds, then after plugin and ovs-vswitchd restarts on every host: every container reaches its peer, ≥ 85 % of first pings answered within 1 s (shared-kernel test bed, see MIN_FIRST_ANSWERED)")
def test_first_ping_of_every_container_across_hosts(mesh3):
    cluster, sites = mesh3
    network = "first"
    for site in sites:
        site.docker("network", "create", "-d", "ovsgre", *FIRST_NET,
                    network)
    try:
        peers = []
        for i, site in enumerate(sites):
            site.run_bg(f"fp-peer{i}", network, "sleep", "600")
            peers.append(site.ip(f"fp-peer{i}", network))
        n = len(sites)
        # container i runs on host i % n and pings the peer on the next host
        jobs = [(sites[i % n], peers[(i + 1) % n]) for i in range(PARALLEL)]

        def restart_vswitchds():
            """Restart every host's ovs-vswitchd; a restarted one has no
            flows, and each plugin must put its tunnel table back on its
            own, promptly: containers on other hosts cannot reach its
            containers until then."""
            start = time.monotonic()
            for site in sites:
                site.host.ovs.restart_vswitchd()
            for site in sites:
                wait_for(lambda: tunnel_table_installed(site), 5,
                         f"{site.host.hostname}'s tunnel flows back")
            took = time.monotonic() - start
            print(f"\nvswitchd restarted on {len(sites)} hosts, tunnel "
                  f"flows back on all in {took:.1f} s")

        lines = ping_phases(
            jobs, network, lambda: [restart_plugin(s) for s in sites],
            restart_vswitchds, first_pings_check(MIN_FIRST_ANSWERED),
            second_chance=True)
        print(f"\n3 hosts, first pings to other hosts (port type "
              f"{port_type(sites[0])})")
        print("\n".join(lines))
    finally:
        for i, site in enumerate(sites):
            site.docker("rm", "-f", f"fp-peer{i}", check=False)
        for site in sites:
            remove_network(site, network)
    for site in sites:
        left = wait_clean(site)
        assert not any(left.values()), (site.host.hostname, left)


@pytest.mark.reliability("load", "32 parallel docker run x 10 rounds over 3 hosts: no failure, duplicate or leak")
def test_parallel_runs_over_three_hosts(mesh3):
    cluster, sites = mesh3
    network = "blue"
    n_sites = len(sites)
    assert allocated(cluster) == []
    timings = []
    for r in range(MESH_ROUNDS):
        jobs = [(sites[i % n_sites], f"lm{r}-{i:02d}")
                for i in range(PARALLEL)]
        row = {"round": r + 1}
        row["run"], failed = burst(jobs, network)
        assert failed == [], failed
        t0 = time.monotonic()
        containers = {}
        for site in sites:
            names = [n for s, n in jobs if s is site]
            mine = inspect(site, names, network)
            assert len(check_host(site, mine)) == len(names)
            containers.update(mine)
        check_cluster(containers, PARALLEL)
        # IPAM in etcd holds exactly the running containers' addresses
        ips = sorted(c["ip"] for c in containers.values())
        assert sorted(k.rsplit("/", 1)[1] for k in allocated(cluster)) \
            == ips
        row["inspect"] = time.monotonic() - t0
        # spot check: host 1 reaches host 3 through the tunnel
        src = jobs[0][1]                   # sites[0]
        dst = containers[jobs[2][1]]["ip"]  # sites[2]
        out = sites[0].docker("exec", src, "ping", "-c", "2", "-W", "5",
                              dst, check=False).stdout
        assert received(out) == (2, 2), (r, src, dst, out)
        row["rm"], failed = remove(jobs)
        assert failed == [], failed
        t0 = time.monotonic()
        for site in sites:
            left = wait_clean(site)
            assert not any(left.values()), (r, site.host.hostname, left)
        row["clean"] = time.monotonic() - t0
        assert allocated(cluster) == [], r
        timings.append(row)
    report(f"3 hosts, {PARALLEL} parallel docker run (round-robin) x "
           f"{MESH_ROUNDS} (port type {port_type(sites[0])})", timings)

    # the network removed everywhere: nothing of it stays, in etcd neither
    for site in sites:
        remove_network(site, network)
    for site in sites:
        left = wait_clean(site)
        nets = os.listdir(os.path.join(site.plugin.state_dir, "networks"))
        assert not any(left.values()) and nets == [], \
            (site.host.hostname, left, nets)
    wait_for(lambda: etcd_ipam(cluster) == {}, 10,
             "the pool and its gateway to leave etcd")
