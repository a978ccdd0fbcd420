"""ovsgre on three hosts, on one machine: what a newcomer runs after install.

Builds three simulated hosts (network namespaces, each with its own Open
vSwitch, dockerd and ovsgre) on one underlay with etcd, declares a network
once, starts a container on each host, shows ping and a TCP transfer across
hosts and `ovsgre status`, then tears everything down, also when
interrupted (Ctrl-C, SIGTERM, or SIGHUP when the terminal goes away), and
checks that nothing of its own is left.  Nothing outside its own
namespaces is touched; addresses come from 198.18.0.0/15.

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

from tests.harness import image  # noqa: E402
from tests.harness import import_busybox  # noqa: E402
from tests.harness.cluster import Cluster  # noqa: E402
from tests.harness.host import BASE_ROOT  # noqa: E402
from tests.harness.netns import NETNS_DIR  # noqa: E402
from tests.harness.sites import (IMAGE, docker_networks,  # noqa: E402
                                 ovsgre_cli, start_plugin, stop_sites,
                                 tunnels, wait_for)


# Signals that end the demo early: Ctrl-C, kill, and the terminal going
# away (SIGHUP, sent to the whole foreground process group).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_caught = []


def emit(text):
    """print(), but a terminal that hung up (EIO) must not stop teardown."""
    try:
        print(text, flush=True)
    except OSError:
        sys.stdout = open(os.devnull, "w")


def say(text):
    emit(f"\n== {text}")


def show(proc_or_text):
    text = getattr(proc_or_text, "stdout", proc_or_text)
    emit("   " + text.strip().replace("\n", "\n   "))


def ignore_signals():
    """From now on nothing interrupts us: teardown must run to the end.
    Children started later (docker rm, ip netns del ...) inherit SIG_IGN."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


def interrupted(signum, _frame):
    # Ignore further signals before raising, so a second Ctrl-C arriving
    # before teardown has even started cannot abort it either.
    ignore_signals()
    _caught.append(signum)
    raise KeyboardInterrupt(f"signal {signum}")


def _mentions(pid, prefix):
    """Does process pid belong to the demo: prefix in its command line,
    environment (the plugin's OVSGRE_* paths) or cgroup (containers run
    under dockerd's --cgroup-parent /<prefix>-hN)?"""
    for name in ("cmdline", "environ", "cgroup"):
        try:
            with open(f"/proc/{pid}/{name}", "rb") as fh:
                if prefix.encode() in fh.read():
                    return True
        except OSError:
            pass
    return False


def leftovers(prefix):
    """Namespaces, directories and processes of this demo still there."""
    tag = prefix + "-"
    left = []
    if os.path.isdir(NETNS_DIR):
        left += [f"netns {n}" for n in os.listdir(NETNS_DIR)
                 if n.startswith(tag)]
    if os.path.isdir(BASE_ROOT):
        left += [f"dir {os.path.join(BASE_ROOT, n)}"
                 for n in os.listdir(BASE_ROOT) if n.startswith(tag)]
    if image._cache_dir and os.path.exists(image._cache_dir):
        left.append(f"dir {image._cache_dir}")
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != me and _mentions(entry, tag):
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as fh:
                    cmd = fh.read().replace(b"\0", b" ").decode(
                        errors="replace").strip()
            except OSError:
                continue      # gone meanwhile
            left.append(f"process {entry}: {cmd[:100]}")
    return left


def teardown(cluster, sites):
    """Stop everything, then look: returns what is still left."""
    try:
        stop_sites(cluster, sites)
    except Exception as e:  # noqa: BLE001 - report, then still look
        emit(f"   teardown error: {e!r}")
    image._cleanup_cache()     # the busybox image tarball in /tmp
    deadline = time.monotonic() + 5   # exiting processes: give them a moment
    while True:
        left = leftovers(cluster.prefix)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.2)


def run_demo(cluster, sites, pause):
    say(f"3 hosts on underlay 198.18.0.0/24, etcd at {cluster.etcd.url}")
    for site in sites:
        wait_for(lambda: len(tunnels(site)) == 2, 20, "the mesh")
        emit(f"   {site.host.hostname} {cluster.host_ip(site.host)}: GRE "
             f"tunnels to {', '.join(tunnels(site))}")
    say("ovsgre network create demo --subnet 198.19.0.0/16  (once, on h1)")
    show(ovsgre_cli(sites[0], "network", "create", "demo", "--subnet",
                    "198.19.0.0/16"))
    for site in sites:
        wait_for(lambda: "demo" in docker_networks(site), 30,
                 "the declared network")
    emit("   every host's ovsgre created Docker network 'demo' by itself")
    say("one container per host: docker run -d --network demo ...")
    ips = []
    for i, site in enumerate(sites, 1):
        site.docker("run", "-d", "--init", "--name", f"c{i}", "--network",
                    "demo", "--entrypoint", "sh", IMAGE, "-c",
                    "mkdir -p /srv && dd if=/dev/zero of=/srv/f bs=1M "
                    "count=50 2>/dev/null && exec httpd -f -p 80 -h /srv")
        ips.append(site.ip(f"c{i}", "demo"))
        emit(f"   c{i} on {site.host.hostname}: {ips[-1]}")
    say("ping across hosts")
    for i, site in enumerate(sites):
        target = ips[(i + 1) % 3]
        out = site.out("exec", f"c{i + 1}", "ping", "-c", "3", "-W", "5",
                       target)
        summary = [line for line in out.splitlines() if "packets" in line
                   or "round-trip" in line]
        emit(f"   c{i + 1} -> {target}: " + "; ".join(summary))
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
        emit(f"   50 MB in {seconds:.2f} s = "
             f"{50 * 8 / seconds / 1000:.2f} Gbit/s")
    else:
        show(proc.stdout + proc.stderr)
    say("ovsgre status on h1")
    show(ovsgre_cli(sites[0], "status", check=False))
    say("ovsgre network ls")
    show(ovsgre_cli(sites[0], "network", "ls"))
    if pause:
        try:
            input("\n   press Enter to tear everything down ")
        except EOFError:      # no terminal (any more): tear down now
            pass


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pause", action="store_true",
                        help="wait for Enter before tearing down")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("demo: run as root (it creates network namespaces)")
    # SIGINT too: a shell starts background jobs with SIGINT ignored, and
    # Python then leaves it ignored; Ctrl-C must always tear down.
    for sig in STOP_SIGNALS:
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
        signum = _caught[0] if _caught else signal.SIGINT
        emit(f"\n   interrupted ({signal.Signals(signum).name})")
        status = 128 + signum
    finally:
        ignore_signals()
        say("tearing down")
        left = teardown(cluster, sites)
        if left:
            emit(f"   done in {time.monotonic() - start:.1f} s; LEFT "
                 "BEHIND:\n     " + "\n     ".join(left))
            status = 1
        else:
            emit(f"   done in {time.monotonic() - start:.1f} s; nothing "
                 "left behind")
    return status


if __name__ == "__main__":
    sys.exit(main())
