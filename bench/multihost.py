"""Multi-host numbers: join time and TCP throughput, same host vs across.

Builds 2 namespace hosts + etcd (the e2e test bed), ovsgre on both, one
network `blue` (ovsgre IPAM), then measures:

- a third host joining: time from its registration in etcd to the first
  successful ping from a container on it to a container on host 1;
- TCP throughput of one HTTP transfer (busybox httpd -> wget) of --mb MB,
  container to container on the same host and across hosts (GRE),
  median of --reps.

    sudo python3 -m bench.multihost [--mb 200] [--reps 3]

Writes bench/results/multihost.{json,md}; removes everything it made.
"""

import argparse
import json
import os
import re
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))

from bench.lifecycle import RESULTS  # noqa: E402
from tests.harness.sites import (BLUE, start_mesh,  # noqa: E402
                                 start_plugin, stop_sites, tunnels, wait_for)
from tests.harness import import_busybox  # noqa: E402
from tests.harness.cluster import Cluster  # noqa: E402

IMAGE = "ovsgre-test/busybox:latest"

def serve_zeros(site, name, mb):
    site.docker("run", "-d", "--init", "--name", name, "--network", "blue",
                "--entrypoint", "sh", IMAGE, "-c",
                f"mkdir -p /srv && dd if=/dev/zero of=/srv/z bs=1M "
                f"count={mb} 2>/dev/null && touch /srv/ready && "
                "exec httpd -f -p 8080 -h /srv")
    wait_for(lambda: site.docker("exec", name, "test", "-f", "/srv/ready",
                                 check=False).returncode == 0, 60,
             "the file to serve")
    return site.ip(name, "blue")


def transfer_gbps(site, ip, mb):
    """Gbit/s of one wget of mb MB, timed inside the client container."""
    script = f"time wget -q -O /dev/null http://{ip}:8080/z 2>&1"
    proc = site.docker("run", "--rm", "--network", "blue", IMAGE, "sh",
                       "-c", script, timeout=300)
    match = re.search(r"real\s+(\d+)m\s*([\d.]+)s",
                      proc.stdout + proc.stderr)
    seconds = int(match.group(1)) * 60 + float(match.group(2))
    return mb * 8 * 1024 * 1024 / seconds / 1e9


def join_time(cluster, sites, anchor_ip):
    host = cluster.add_host()
    import_busybox(host.docker)
    site = start_plugin(cluster, host)
    deadline = time.monotonic() + 10
    while "registered /ovsgre/hosts/" not in site.plugin.log_tail(200):
        if time.monotonic() > deadline:
            raise RuntimeError("no registration")
        time.sleep(0.01)
    registered = time.monotonic()
    site.docker("network", "create", "-d", "ovsgre", *BLUE, "blue")
    site.run_bg("joiner", "blue", "sleep", "600")
    while site.docker("exec", "joiner", "ping", "-c", "1", "-W", "1",
                      anchor_ip, check=False).returncode != 0:
        if time.monotonic() > registered + 30:
            raise RuntimeError("no cross-host ping")
    first_ping = time.monotonic()
    tunnels_up = all(cluster.host_ip(host) in tunnels(s) for s in sites)
    return site, first_ping - registered, tunnels_up


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    cluster = Cluster(n_hosts=2, etcd=True)
    sites = []
    try:
        sites = start_mesh(cluster, BLUE)
        ip = serve_zeros(sites[0], "server", args.mb)
        same = [transfer_gbps(sites[0], ip, args.mb)
                for _ in range(args.reps)]
        across = [transfer_gbps(sites[1], ip, args.mb)
                  for _ in range(args.reps)]
        joined, join_s, tunnels_up = join_time(cluster, sites, ip)
        sites.append(joined)
        result = {
            "mb": args.mb, "reps": args.reps,
            "same_host_gbps": round(statistics.median(same), 3),
            "cross_host_gbps": round(statistics.median(across), 3),
            "same_host_all": [round(x, 3) for x in same],
            "cross_host_all": [round(x, 3) for x in across],
            "registration_to_first_ping_s": round(join_s, 3),
            "tunnels_on_all_hosts_at_first_ping": tunnels_up,
        }
    finally:
        stop_sites(cluster, getattr(cluster, "mesh_sites", sites))
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "multihost.json"), "w") as fh:
        json.dump(result, fh, indent=2)
    text = (f"| measure | value |\n|---|---|\n"
            f"| TCP, container to container, same host | "
            f"{result['same_host_gbps']} Gbit/s |\n"
            f"| TCP, container to container, across hosts (GRE) | "
            f"{result['cross_host_gbps']} Gbit/s |\n"
            f"| new host: registration to first cross-host ping | "
            f"{result['registration_to_first_ping_s']} s |\n")
    with open(os.path.join(RESULTS, "multihost.md"), "w") as fh:
        fh.write(text)
    print(text)


if __name__ == "__main__":
    main()
