"""ovsgre on three hosts, on one machine: what a newcomer runs after install.

Builds three simulated hosts (network namespaces, each with its own Open
vSwitch, dockerd and ovsgre) on one underlay with etcd, declares a network
once, starts a container on each host, shows ping and a TCP transfer across
hosts and `ovsgre status`, then tears everything down, also when
interrupted (Ctrl-C).  Nothing outside its own namespaces is touched;
addresses come from 198.18.0.0/15.

    sudo ./scripts/demo.sh            # installs what it needs, then runs this
"""

import argparse
import os
import re
import signal
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from tests.harness import import_busybox  # noqa: E402
from tests.harness.cluster import Cluster  # noqa: E402
from tests.harness.sites import (IMAGE, docker_networks,  # noqa: E402
                                 ovsgre_cli, start_plugin, stop_sites,
                                 tunnels, wait_for)


def say(text):
    print(f"\n== {text}", flush=True)


def show(proc_or_text):
    text = getattr(proc_or_text, "stdout", proc_or_text)
    print("   " + text.strip().replace("\n", "\n   "), flush=True)


def interrupted(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


def run_demo(cluster, sites, pause):
    say(f"3 hosts on underlay 198.18.0.0/24, etcd at {cluster.etcd.url}")
    for site in sites:
        wait_for(lambda: len(tunnels(site)) == 2, 20, "the mesh")
        print(f"   {site.host.hostname} {cluster.host_ip(site.host)}: GRE "
              f"tunnels to {', '.join(tunnels(site))}")
    say("ovsgre network create demo --subnet 198.19.0.0/16  (once, on h1)")
    show(ovsgre_cli(sites[0], "network", "create", "demo", "--subnet",
                    "198.19.0.0/16"))
    for site in sites:
        wait_for(lambda: "demo" in docker_networks(site), 30,
                 "the declared network")
    print("   every host's ovsgre created Docker network 'demo' by itself")
    say("one container per host: docker run -d --network demo ...")
    ips = []
    for i, site in enumerate(sites, 1):
        site.docker("run", "-d", "--init", "--name", f"c{i}", "--network",
                    "demo", "--entrypoint", "sh", IMAGE, "-c",
                    "mkdir -p /srv && dd if=/dev/zero of=/srv/f bs=1M "
                    "count=50 2>/dev/null && exec httpd -f -p 80 -h /srv")
        ips.append(site.ip(f"c{i}", "demo"))
        print(f"   c{i} on {site.host.hostname}: {ips[-1]}")
    say("ping across hosts")
    for i, site in enumerate(sites):
        target = ips[(i + 1) % 3]
        out = site.out("exec", f"c{i + 1}", "ping", "-c", "3", "-W", "5",
                       target)
        summary = [line for line in out.splitlines() if "packets" in line
                   or "round-trip" in line]
        print(f"   c{i + 1} -> {target}: " + "; ".join(summary))
    say("TCP: 50 MB from c3 (h3) to a container on h1, through GRE")
    wait_for(lambda: sites[2].docker("exec", "c3", "test", "-s", "/srv/f",
                                     check=False).returncode == 0, 30,
             "the file")
    proc = sites[0].docker("exec", "c1", "sh", "-c",
                           f"time wget -q -O /dev/null http://{ips[2]}/f "
                           "2>&1", check=False)
    match = re.search(r"real\s+(\d+)m\s*([\d.]+)s", proc.stdout +
                      proc.stderr)
    if match:
        seconds = int(match.group(1)) * 60 + float(match.group(2))
        print(f"   50 MB in {seconds:.2f} s = "
              f"{50 * 8 / seconds / 1000:.2f} Gbit/s")
    else:
        show(proc.stdout + proc.stderr)
    say("ovsgre status on h1")
    show(ovsgre_cli(sites[0], "status", check=False))
    say("ovsgre network ls")
    show(ovsgre_cli(sites[0], "network", "ls"))
    if pause:
        input("\n   press Enter to tear everything down ")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pause", action="store_true",
                        help="wait for Enter before tearing down")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("demo: run as root (it creates network namespaces)")
    # SIGINT too: a shell starts background jobs with SIGINT ignored, and
    # Python then leaves it ignored; Ctrl-C must always tear down.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, interrupted)
    cluster = Cluster(n_hosts=3, etcd=True)
    sites = []
    start = time.monotonic()
    try:
        say(f"starting 3 hosts (OVS + dockerd each) and etcd, in network "
            f"namespaces {cluster.prefix}-*")
        cluster.start()
        for host in cluster.hosts:
            import_busybox(host.docker)
            sites.append(start_plugin(cluster, host))
        run_demo(cluster, sites, args.pause)
        status = 0
    except KeyboardInterrupt:
        print("\n   interrupted", flush=True)
        status = 130
    finally:
        say("tearing down")
        stop_sites(cluster, sites)
        print(f"   done in {time.monotonic() - start:.1f} s; nothing left "
              "behind", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
