"""Control-plane numbers: how long ovsgre makes Docker wait, and how that
scales with endpoints, concurrency and hosts.

- Join p50/p99 (plugin-side) with 10, 100 and 1,000 endpoints on one host:
  one plugin driven over its socket with the calls dockerd sends (no
  containers: 1,000 busybox containers would not fit a small machine);
- 32 concurrent `docker run --rm` on ovsgre and on Docker's bridge;
- bring-up of an 8-host mesh: ovsgre started on 8 namespace hosts at once,
  until every host has a tunnel to each of the 7 others and a container on
  host 1 pings one on every other host.

    sudo python3 -m bench.control [--samples 100] [--counts 10,100,1000]
    sudo python3 -m bench.control --only-mesh [--mesh-hosts 8]

Writes bench/results/control.{json,md}; removes everything it made.
"""

import argparse
import concurrent.futures
import os
import re
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))

from bench.stats import summary, write_results  # noqa: E402
from tests.harness import TestHost  # noqa: E402
from tests.harness.cluster import Capture, Cluster  # noqa: E402
from tests.harness.plugin import PluginProcess  # noqa: E402
from tests.harness.sites import (BLUE, IMAGE,  # noqa: E402
                                 start_site, stop_sites, tunnels, wait_for)

CALL_LINE = re.compile(r"ovsgre\.calls: (\w+) network=\w+ endpoint=(\w+) "
                       r"ok in ([\d.]+) ms")
NET = "b" * 64


def plugin_times(log_path, offset, call):
    """Plugin-side durations (ms) of `call` logged after offset."""
    with open(log_path, errors="replace") as fh:
        fh.seek(offset)
        return [float(m.group(3)) for m in map(CALL_LINE.search, fh)
                if m and m.group(1) == call]


# -- Join with many endpoints --------------------------------------------------

class FakeDocker:
    """Sends what dockerd sends for one container, in the same order."""

    def __init__(self, plugin):
        self.plugin = plugin
        self.next_ip = 1

    def create_network(self):
        self.plugin.ok("NetworkDriver.CreateNetwork", {
            "NetworkID": NET, "Options": {"com.docker.network.generic": {}},
            "IPv4Data": [{"AddressSpace": "", "Pool": "198.18.0.0/15",
                          "Gateway": "198.18.0.1/15"}],
            "IPv6Data": []})

    def start(self, between=None):
        """CreateEndpoint + Join (calling between() in between); returns
        the endpoint ID."""
        eid = uuid.uuid4().hex + uuid.uuid4().hex
        self.next_ip += 1
        ip = f"198.18.{self.next_ip // 250}.{self.next_ip % 250 + 2}/15"
        self.plugin.ok("NetworkDriver.CreateEndpoint", {
            "NetworkID": NET, "EndpointID": eid, "Options": {},
            "Interface": {"Address": ip, "AddressIPv6": "",
                          "MacAddress": ""}})
        if between:
            between()
        self.plugin.ok("NetworkDriver.Join", {
            "NetworkID": NET, "EndpointID": eid,
            "SandboxKey": "/var/run/docker/netns/" + eid[:12],
            "Options": {}})
        return eid

    def stop(self, eid):
        body = {"NetworkID": NET, "EndpointID": eid}
        self.plugin.ok("NetworkDriver.Leave", body)
        self.plugin.ok("NetworkDriver.DeleteEndpoint", body)


def join_scaling(counts, samples, log=print):
    """Join p50/p99 after filling the host up to each count, two ways:
    Join right after CreateEndpoint (it waits for ovs-vswitchd to take the
    port, whose reconfiguration grows with the ports on the bridge), and
    Join once ovs-vswitchd has taken the port (Join's own work)."""
    host = TestHost("scale", with_docker=False)
    plugin = None
    out = {}
    try:
        host.start()
        # system ports: an afxdp port costs ovs-vswitchd ~77 MB (its UMEM),
        # 1,000 of them would not fit.
        plugin = PluginProcess(host.netns, os.path.join(host.run_dir, "p"),
                               host.ovs.db_remote,
                               extra_env={"OVSGRE_PORT_TYPE": "system"})
        plugin.start()
        docker = FakeDocker(plugin)
        docker.create_network()
        standing = []
        for count in sorted(counts):
            start = time.monotonic()
            while len(standing) < count:
                standing.append(docker.start())
            log(f"  {count} endpoints standing "
                f"(filled in {time.monotonic() - start:.0f} s)")
            settle(host, len(standing))
            out[str(count)] = _join_samples(host, plugin, docker, samples,
                                            len(standing))
            out[str(count)]["add_port_ms"] = summary(
                _add_port_times(host, 5))
            log(f"  Join at {count}: {out[str(count)]}")
        out["port_type"] = _port_type(plugin)
    finally:
        if plugin:
            plugin.stop()
        host.stop()
    return out


def _join_samples(host, plugin, docker, samples, standing):
    offset = os.path.getsize(plugin.log_path)
    for _ in range(samples):
        docker.stop(docker.start())
        settle(host, standing)
    joins = plugin_times(plugin.log_path, offset, "Join")
    creates = plugin_times(plugin.log_path, offset, "CreateEndpoint")
    offset = os.path.getsize(plugin.log_path)
    for _ in range(samples):
        docker.stop(docker.start(
            between=lambda: settle(host, standing + 1)))
        settle(host, standing)
    own = plugin_times(plugin.log_path, offset, "Join")
    return {"join_ms": summary(joins), "create_endpoint_ms": summary(creates),
            "join_settled_ms": summary(own)}


def _add_port_times(host, runs):
    """`ovs-vsctl add-port` of a fresh veth (it waits for ovs-vswitchd):
    what one port costs vswitchd with the bridge this full."""
    times = []
    for i in range(runs):
        name = f"ovgbench{i}"
        host.run(["ip", "link", "add", name, "type", "veth",
                  "peer", "name", name + "p"])
        try:
            start = time.monotonic()
            host.ovs.vsctl("add-port", "br-ovsgre", name)
            times.append((time.monotonic() - start) * 1000)
        finally:
            host.ovs.vsctl("--if-exists", "del-port", "br-ovsgre", name)
            host.run(["ip", "link", "del", name], check=False)
    return times


def settle(host, ports=None, timeout=600):
    """Wait until ovs-vswitchd has taken every port (each one has an
    ofport) and dropped the deleted ones, and, given the number of
    endpoints that should exist, until the plugin's background removal
    has deleted the others' ports and veths: one container start at a
    time, as on a host that is not saturated; otherwise the numbers would
    show vswitchd's backlog competing for this machine's two cores."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pending = host.ovs.vsctl("--bare", "--columns=name", "find",
                                 "Interface", "ofport=[]").split()
        listed = set(host.ovs.vsctl("list-ports", "br-ovsgre").split())
        shown = host.ovs.appctl("ovs-vswitchd", "dpif/show")
        in_dp = set(re.findall(r"\b(ovgh\w+) \d+/", shown))
        links = re.findall(r"^\d+: (ovgh\w+)[@:]", host.run(
            ["ip", "-o", "link", "show"]).stdout, re.M)
        ours = {p for p in listed if p.startswith("ovgh")}
        if not pending and in_dp <= listed and (
                ports is None or len(ours) == len(links) == ports):
            return
        time.sleep(0.05)
    raise RuntimeError("ovs-vswitchd did not settle")


def _port_type(plugin):
    with open(plugin.log_path, errors="replace") as fh:
        match = re.search(r"port type (\S+)", fh.read())
    return match.group(1) if match else "unknown"


# -- 32 concurrent docker run -------------------------------------------------

def concurrent_runs(parallel, rounds, log=print):
    host = TestHost("conc")
    site = None
    out = {}
    try:
        site = start_site(host)
        site.docker("network", "create", "-d", "ovsgre", "--subnet",
                    "198.18.64.0/22", "ovnet")
        site.docker("network", "create", "-d", "bridge", "--subnet",
                    "198.18.68.0/22", "brnet")
        for net in ("ovnet", "brnet"):
            site.docker("run", "--rm", "--network", net, IMAGE, "true")
        for net, name in (("ovnet", "ovsgre"), ("brnet", "bridge")):
            walls, failures = [], 0
            for _ in range(rounds):
                wall, failed = _burst(site, net, parallel)
                walls.append(wall)
                failures += failed
            out[name] = {"wall_s": summary(walls), "failures": failures,
                         "runs": parallel * rounds}
            log(f"  {parallel} concurrent docker run on {name}: "
                f"{out[name]}")
        out["leftover_ports"] = [p for p in host.ovs.vsctl(
            "list-ports", "br-ovsgre").split() if p]
    finally:
        if host.docker:
            host.docker.remove_all_containers()
        if site:
            site.plugin.stop()
        host.stop()
    out["ratio_wall_p50"] = round(out["ovsgre"]["wall_s"]["p50"] /
                                  out["bridge"]["wall_s"]["p50"], 3)
    return out


def _burst(site, network, parallel):
    def one(_):
        return site.docker("run", "--rm", "--network", network, IMAGE,
                           "true", check=False, timeout=300).returncode
    start = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
        codes = list(pool.map(one, range(parallel)))
    return time.monotonic() - start, sum(1 for c in codes if c != 0)


# -- 8-host mesh ----------------------------------------------------------------

def mesh_bringup(n_hosts, log=print):
    cluster = Cluster(n_hosts=n_hosts, etcd=True)
    sites = []
    try:
        cluster.start()
        log(f"  {n_hosts} hosts up in {cluster.timings['start']:.1f} s; "
            "starting ovsgre on all of them")
        from tests.harness import import_busybox
        from tests.harness.sites import start_plugin
        for host in cluster.hosts:
            import_busybox(host.docker)
        start = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(n_hosts) as pool:
            sites[:] = pool.map(lambda h: start_plugin(cluster, h),
                                cluster.hosts)
        plugins_up = time.monotonic()
        peers = n_hosts - 1
        for site in sites:
            wait_for(lambda: len(tunnels(site)) == peers, 60, "a full mesh")
        mesh_up = time.monotonic()
        for site in sites:
            site.docker("network", "create", "-d", "ovsgre", *BLUE, "blue")
        for i, site in enumerate(sites):
            site.run_bg(f"m{i}", "blue", "sleep", "600")
        ips = [s.ip(f"m{i}", "blue") for i, s in enumerate(sites)]
        reached = sum(
            sites[0].docker("exec", "m0", "ping", "-c", "1", "-W", "2", ip,
                            check=False).returncode == 0 for ip in ips[1:])
        return {"hosts": n_hosts,
                "plugins_started_s": round(plugins_up - start, 2),
                "full_mesh_s": round(mesh_up - start, 2),
                "tunnels_per_host": peers,
                "pinged_from_host1": f"{reached}/{peers}",
                "broadcast_copies": flood_copies(sites, log)}
    finally:
        stop_sites(cluster, sites)


PAIR = ("--ipam-driver", "ovsgre", "--ipam-opt", "ovsgre.network=pair",
        "--subnet", "198.19.60.0/24", "-o", "ovsgre.network=pair")


def flood_copies(sites, log, broadcasts=10):
    """Copies of one broadcast that host 1 sends on its underlay, for
    "blue" (held by every host) and "pair" (held by hosts 1 and 2 only):
    what flooding only to the hosts that hold a network saves."""
    for site in sites[:2]:
        site.docker("network", "create", "-d", "ovsgre", *PAIR, "pair")
    sites[0].run_bg("p0", "pair", "sleep", "600")
    sites[1].run_bg("p1", "pair", "sleep", "600")
    peer = sites[1].ip("p1", "pair")
    sites[0].docker("exec", "p0", "ping", "-c", "1", "-W", "5", peer)
    out = {}
    for net, container, probe in (("blue", "m0", "198.19.254.250"),
                                  ("pair", "p0", "198.19.60.250")):
        capture = Capture(sites[0].host, "eth0", "ip proto 47",
                          extra_args=["-Q", "out"]).start()
        try:
            for _ in range(broadcasts):
                sites[0].docker("exec", container, "arping", "-c", "1",
                                "-w", "1", "-I", "eth0", probe, check=False)
            time.sleep(1)
        finally:
            lines = capture.stop()
        copies = sum(f"who-has {probe}" in line for line in lines)
        out[net] = round(copies / broadcasts, 2)
        log(f"  one broadcast on {net}: {out[net]} copies on the underlay")
    out["hosts_holding"] = {"blue": len(sites), "pair": 2}
    return out


def run(samples=100, counts=(10, 100, 1000), parallel=32, rounds=3,
        mesh_hosts=8, log=print):
    log("Join with many endpoints")
    result = {"join_scaling": join_scaling(counts, samples, log)}
    lo, hi = str(min(counts)), str(max(counts))
    for key in ("join_ms", "join_settled_ms"):
        result[key.replace("_ms", "_p99_ratio")] = round(
            result["join_scaling"][hi][key]["p99"] /
            result["join_scaling"][lo][key]["p99"], 2)
    log("Concurrent docker run")
    result["concurrent"] = concurrent_runs(parallel, rounds, log)
    result["concurrent"]["parallel"] = parallel
    log(f"{mesh_hosts}-host mesh bring-up")
    result["mesh"] = mesh_bringup(mesh_hosts, log)
    return result


def markdown(result):
    scaling = result["join_scaling"]
    lines = ["| endpoints on the host | Join right after CreateEndpoint "
             "p50 / p99 ms | Join once vswitchd has the port p50 / p99 ms | "
             "`ovs-vsctl add-port` p50 / p99 ms | CreateEndpoint p50 ms |",
             "|---|---|---|---|---|"]
    for count, row in scaling.items():
        if count.isdigit():
            cells = [f"{row[k]['p50']} / {row[k]['p99']}" if k in row
                     else "–" for k in ("join_ms", "join_settled_ms",
                                        "add_port_ms")]
            lines.append(f"| {count} | {' | '.join(cells)} | "
                         f"{row['create_endpoint_ms']['p50']} |")
    lines.append(
        f"\nJoin p99 at the largest count / at the smallest: "
        f"{result.get('join_settled_p99_ratio', '–')} once ovs-vswitchd has "
        f"the port (Join's own work), {result['join_p99_ratio']} right "
        f"after CreateEndpoint (Join waits for ovs-vswitchd to take the "
        f"port, and its reconfiguration grows with the ports on the "
        f"bridge, like `add-port`); port type {scaling.get('port_type')}; "
        f"one container start at a time, vswitchd settled in between.\n")
    conc = result["concurrent"]
    lines += ["| {} concurrent `docker run --rm … true` | wall p50 s | "
              "failures |".format(conc["parallel"]), "|---|---|---|"]
    for name in ("ovsgre", "bridge"):
        lines.append(f"| {name} | {conc[name]['wall_s']['p50']} | "
                     f"{conc[name]['failures']} of {conc[name]['runs']} |")
    return "\n".join(lines + [""] + mesh_lines(result["mesh"])) + "\n"


def mesh_lines(mesh):
    lines = ["| mesh bring-up | value |", "|---|---|",
              f"| hosts | {mesh['hosts']} |",
              f"| all plugins answering | {mesh['plugins_started_s']} s |",
              f"| full mesh ({mesh['tunnels_per_host']} tunnels on every "
              f"host) | {mesh['full_mesh_s']} s |",
              f"| host 1 pings every other host | "
              f"{mesh['pinged_from_host1']} |"]
    flood = mesh.get("broadcast_copies")
    if flood:
        lines += [
            f"| copies of one broadcast on the underlay, network on all "
            f"{flood['hosts_holding']['blue']} hosts | {flood['blue']} |",
            f"| copies of one broadcast on the underlay, network on 2 of "
            f"{flood['hosts_holding']['blue']} hosts (flooded only to the "
            f"hosts that hold it) | {flood['pair']} |"]
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--counts", default="10,100,1000")
    parser.add_argument("--parallel", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mesh-hosts", type=int, default=8)
    parser.add_argument("--only-mesh", action="store_true",
                        help="only the mesh bring-up and broadcast copies "
                             "(bench/results/control-mesh.*)")
    args = parser.parse_args()
    if args.only_mesh:
        result = {"mesh": mesh_bringup(args.mesh_hosts)}
        write_results("control-mesh", result,
                      "\n".join(mesh_lines(result["mesh"])) + "\n")
        return
    counts = tuple(int(c) for c in args.counts.split(","))
    result = run(args.samples, counts, args.parallel, args.rounds,
                 args.mesh_hosts)
    write_results("control", result, markdown(result))


if __name__ == "__main__":
    main()
