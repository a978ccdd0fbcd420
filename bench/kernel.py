"""The kernel datapath, measured in one guest boot (tests/harness/vm.py).

This machine has no openvswitch module, so the bench boots Debian's kernel
under qemu and measures, on two namespace hosts inside it whose underlay
is an ordinary kernel interface (eth0, through a Linux bridge):

  (a) ovsgre with the kernel datapath (dockerd + the plugin, as the tests
      run it): container -> kernel OVS -> kernel GRE -> eth0;
  (b) the hand-built OVS kernel GRE: one kernel bridge `br-hand` per host,
      one GRE port to the peer (fixed key), NORMAL forwarding, each
      "container" a plain netns whose veth host end is an OVS port;
  (c) a Linux bridge + kernel VXLAN over the same eth0 (Docker overlay's
      dataplane);

cross-host TCP throughput (iperf3) and ping RTT, the three built side by
side and measured interleaved (a, b, c, a, b, c, ...), and the container
start cost (`docker run --rm … true` on ovsgre and on a user-defined
bridge network, interleaved; plugin-side time per call).  The guest is
emulated (TCG, no KVM): absolute numbers say nothing about a real host,
only the ratios within this one boot mean something.

    sudo python3 -m bench.kernel [--seconds 5] [--reps 5] [--runs 10]

Writes bench/results/kernel.{json,md}; everything it builds lives and
dies in the guest.
"""

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))

from bench.dataplane import (GRE_MTU, HAND_BRIDGE, HAND_KEY,  # noqa: E402
                             HAND_NET, VNI, Endpoint, _clean_up,
                             delete_ns, ipn, make_container_ns,
                             measure_interleaved, remover, two_hosts,
                             vxlan_container, wait_port)
from bench.stats import (bootstrap_paired_ratio_ci,  # noqa: E402
                         write_results)
from tests.harness import vm  # noqa: E402

LABELS = {"a": "ovsgre (kernel datapath)",
          "b": "hand-built OVS kernel GRE",
          "c": "Linux bridge + kernel VXLAN"}
TARGETS = {"b": 1.0, "c": 0.95}   # ovsgre's throughput at least this x


def build_hand_kernel(cluster, names, hosts):
    """(b) on the kernel datapath; returns (client, server, cleanup, {})."""
    made_ns, made_links = [], []

    def cleanup():
        for host in hosts:
            host.ovs.vsctl("--if-exists", "del-br", HAND_BRIDGE, check=False)
        for host, link in made_links:
            ipn(host.netns.name, "link", "del", link, check=False)
        for ns in made_ns:
            delete_ns(ns)

    try:
        for host, peer in ((hosts[0], hosts[1]), (hosts[1], hosts[0])):
            host.ovs.vsctl(
                "add-br", HAND_BRIDGE, "--", "set", "bridge", HAND_BRIDGE,
                "datapath_type=system", "--", "add-port", HAND_BRIDGE,
                "gre-hand", "--", "set", "Interface", "gre-hand", "type=gre",
                f"options:remote_ip={cluster.host_ip(peer)}",
                f"options:key={HAND_KEY}")
        eps = []
        for i, host in enumerate(hosts, start=1):
            link = names("hd")
            ns = make_container_ns(cluster, host, names, link,
                                   f"{HAND_NET}{i}", GRE_MTU, tx_off=False)
            made_ns.append(ns)
            made_links.append((host, link))
            ipn(host.netns.name, "link", "set", link, "up")
            host.ovs.vsctl("add-port", HAND_BRIDGE, link)
            wait_port(host, link)
            eps.append(Endpoint(f"{host.hostname}/{ns.name}",
                                f"{HAND_NET}{i}", netns=ns.name))
        return eps[1], eps[0], cleanup, {}
    except BaseException:
        cleanup()
        raise


def build_vxlan_eth0(cluster, names, hosts):
    """(c) over each host's eth0, the same underlay as (a) and (b)."""
    made_ns, made_links = [], []
    cleanup = remover(made_links, made_ns)
    try:
        eps = []
        for i, (host, peer) in enumerate(((hosts[0], hosts[1]),
                                          (hosts[1], hosts[0])), start=1):
            hns = host.netns.name
            ipn(hns, "link", "add", "vxbr", "type", "bridge", "stp_state", 0,
                "forward_delay", 0)
            made_links.append((host, "vxbr"))
            ipn(hns, "link", "add", "vx42", "type", "vxlan", "id", VNI,
                "local", cluster.host_ip(host), "remote",
                cluster.host_ip(peer), "dstport", 4789, "dev", "eth0")
            made_links.append((host, "vx42"))
            ipn(hns, "link", "set", "vxbr", "up")
            ipn(hns, "link", "set", "vx42", "master", "vxbr", "up")
            eps.append(vxlan_container(cluster, names, host, i, made_ns,
                                       made_links))
        return eps[1], eps[0], cleanup, {}
    except BaseException:
        cleanup()
        raise


def dataplane(seconds, reps, log):
    """(a), (b), (c) across two hosts, interleaved; one dict per letter."""
    built = []
    with two_hosts(log) as (names, cluster, ovsgre):
        try:
            hosts = cluster.hosts
            built.append(ovsgre.build(names, "cross-host"))
            built.append(build_hand_kernel(cluster, names, hosts))
            built.append(build_vxlan_eth0(cluster, names, hosts))
            dps = {host.hostname: host.ovs.datapath_types()
                   for host in hosts}
            pairs = [(x, client, server) for x, (client, server, _, _)
                     in zip("abc", built)]
            got = measure_interleaved(pairs, seconds, reps, log)
            return dict(zip("abc", got)), dps
        finally:
            _clean_up(built, log)


def in_guest(seconds, reps, runs, out):
    """Runs inside the guest: the measurements, as JSON into out."""
    from bench import lifecycle
    from tests.harness.datapath import DATAPATH
    assert DATAPATH == "system", "bench.kernel runs with the kernel datapath"
    t0 = time.monotonic()
    result = {"seconds": seconds, "reps": reps, "uname": os.uname().release}
    result["configs"], result["datapath_types"] = dataplane(seconds, reps,
                                                            print)
    result["lifecycle"] = lifecycle.run(runs=runs, log=print)
    result["guest_s"] = round(time.monotonic() - t0, 1)
    with open(out, "w") as fh:
        json.dump(result, fh, indent=2)


def ratios(configs):
    """ovsgre over (b) and (c): the ratio of the medians, and the median
    of the per-round ratios (round i of each was measured back to back)
    with its 95 % bootstrap interval."""
    a = configs["a"]
    out = {}
    for x in "bc":
        other = configs[x]
        paired = [n / d for n, d in zip(a["gbps_all"], other["gbps_all"])
                  if d]
        out[x] = {"gbps": round(a["gbps"] / other["gbps"], 3),
                  "rtt_p50": round(a["rtt_p50_ms"] / other["rtt_p50_ms"],
                                   3),
                  "paired_median": round(statistics.median(paired), 3),
                  "paired_ci95": bootstrap_paired_ratio_ci(
                      a["gbps_all"], other["gbps_all"])}
    return out


def markdown(result):
    c, r, life = result["configs"], result["ratios"], result["lifecycle"]
    lines = [
        f"Debian kernel {result['uname']} under qemu TCG (software "
        "emulation, 2 vCPUs on the 2-core development VM), two namespace "
        f"hosts, {result['reps']} x {result['seconds']} s iperf3 each, "
        "interleaved. Ratios only: emulation divides every absolute "
        "figure.", "",
        "| configuration | Gbit/s (median) | all runs | RTT p50 / p99 ms |",
        "|---|---|---|---|"]
    for x in "abc":
        lines.append(f"| ({x}) {LABELS[x]} | {c[x]['gbps']} | "
                     f"{c[x]['gbps_all']} | {c[x]['rtt_p50_ms']} / "
                     f"{c[x]['rtt_p99_ms']} |")
    lines += ["", "| target | measured | holds |", "|---|---|---|"]
    for x in "bc":
        lines.append(f"| ovsgre ≥ {TARGETS[x]} × {LABELS[x]} (throughput, "
                     f"ratio of medians) | {r[x]['gbps']} × (per-round "
                     f"ratios: median {r[x]['paired_median']}, 95 % CI "
                     f"{r[x]['paired_ci95']}; RTT {r[x]['rtt_p50']} ×) | "
                     f"{'yes' if r[x]['gbps'] >= TARGETS[x] else 'no'} |")
    run = life["docker_run_ms"]
    lines += [
        "", f"`docker run --rm … true`, {life['runs']} interleaved runs: "
        f"ovsgre p50 {run['ovsgre']['p50']} ms, user-defined bridge "
        f"{run['user_bridge']['p50']} ms (ratio {life['ratio_p50']}, 95 % "
        f"CI {life['ratio_p50_ci95']}); plugin-side lifecycle p50 "
        f"{life['plugin_lifecycle_ms']['p50']} ms "
        f"(Join {life['plugin_join_ms']['p50']} ms).", "",
        f"Guest time {result['guest_s']} s, boot to power-off "
        f"{result['boot_s']} s."]
    return "\n".join(lines) + "\n"


def run(seconds=5, reps=5, runs=10, log=print):
    """Boot the guest, measure inside, return the result (ratios added)."""
    why = vm.available()
    if why:
        raise RuntimeError(f"the guest cannot boot: {why}")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    guest = vm.Guest()
    log(f"  booting {guest.kernel.version} under qemu (TCG) ...")
    res = guest.run([sys.executable, "-m", "bench.kernel",
                     "--seconds", str(seconds), "--reps", str(reps),
                     "--runs", str(runs), "--in-guest",
                     os.path.join(vm.GUEST_OUT, "kernel.json")],
                    env={"OVSGRE_TEST_DATAPATH": "system"}, cwd=repo,
                    timeout=3600)
    path = os.path.join(res.outdir, "kernel.json")
    if res.returncode != 0 or not os.path.exists(path):
        raise RuntimeError(f"the guest run failed (exit {res.returncode}); "
                           f"files in {res.outdir}:\n{res.output[-3000:]}")
    with open(path) as fh:
        result = json.load(fh)
    result["ratios"] = ratios(result["configs"])
    result["boot_s"] = round(res.seconds, 1)
    result["kernel_package"] = "linux-image-" + guest.kernel.version
    for x in "abc":
        log(f"  ({x}) {LABELS[x]}: {result['configs'][x]['gbps']} Gbit/s")
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--in-guest", metavar="OUT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.in_guest:
        in_guest(args.seconds, args.reps, args.runs, args.in_guest)
        return 0
    try:
        result = run(args.seconds, args.reps, args.runs)
    except RuntimeError as exc:
        print(f"bench.kernel: {exc}", file=sys.stderr)
        return 1
    write_results("kernel", result, "# Kernel datapath (one guest boot)\n\n"
                  + markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
