"""A new host joining a running mesh: time from its registration in etcd to
the first successful ping from a container on it to a container on host 1.

Builds 2 namespace hosts + etcd (the e2e test bed), ovsgre on both, one
network `blue` (ovsgre IPAM), then adds --joins hosts one after another.

    sudo python3 -m bench.multihost [--joins 3]

Writes bench/results/multihost.{json,md}; removes everything it made.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))

from bench.stats import summary, write_results  # noqa: E402
from tests.harness import import_busybox  # noqa: E402
from tests.harness.cluster import Cluster  # noqa: E402
from tests.harness.sites import (BLUE, start_mesh,  # noqa: E402
                                 start_plugin, stop_sites, tunnels)


def join_time(cluster, sites, anchor_ip, name):
    host = cluster.add_host()
    import_busybox(host.docker)
    site = start_plugin(cluster, host)
    sites.append(site)
    deadline = time.monotonic() + 10
    while "registered /ovsgre/hosts/" not in site.plugin.log_tail(200):
        if time.monotonic() > deadline:
            raise RuntimeError("no registration")
        time.sleep(0.01)
    registered = time.monotonic()
    site.docker("network", "create", "-d", "ovsgre", *BLUE, "blue")
    site.run_bg(name, "blue", "sleep", "600")
    while site.docker("exec", name, "ping", "-c", "1", "-W", "1",
                      anchor_ip, check=False).returncode != 0:
        if time.monotonic() > registered + 30:
            raise RuntimeError("no cross-host ping")
    first_ping = time.monotonic()
    tunnels_up = all(cluster.host_ip(host) in tunnels(s) for s in sites
                     if s is not site)
    return first_ping - registered, tunnels_up


def run(joins=3, log=print):
    cluster = Cluster(n_hosts=2, etcd=True)
    sites = []
    try:
        sites = start_mesh(cluster, BLUE)
        sites[0].run_bg("anchor", "blue", "sleep", "600")
        anchor = sites[0].ip("anchor", "blue")
        times, all_up = [], True
        for i in range(joins):
            seconds, up = join_time(cluster, sites, anchor, f"joiner{i}")
            times.append(seconds)
            all_up = all_up and up
            log(f"  host {i + 3}: first cross-host ping {seconds:.2f} s "
                "after registering")
    finally:
        stop_sites(cluster, getattr(cluster, "mesh_sites", sites))
    return {"joins": joins,
            "registration_to_first_ping_s": summary(times),
            "tunnels_on_all_hosts_at_first_ping": all_up}


def markdown(result):
    s = result["registration_to_first_ping_s"]
    return ("| new host joins a running mesh | p50 s | max s |\n"
            "|---|---|---|\n"
            f"| registration to first cross-host ping ({result['joins']} "
            f"joins) | {s['p50']} | {s['max']} |\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--joins", type=int, default=3)
    args = parser.parse_args()
    result = run(args.joins)
    write_results("multihost", result, markdown(result))


if __name__ == "__main__":
    main()
