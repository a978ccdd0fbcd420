"""What each OVS port type costs ovs-vswitchd: resident memory and the time
of `ovs-vsctl add-port` as ports pile up on one userspace (netdev) bridge.

- "system": a plain AF_PACKET port (OVS Interface type "");
- "afxdp-nonpmd": AF_XDP, whose UMEM (~70 MB a port) lives in vswitchd.

Each type gets a fresh OVS in its own network namespace (the test
harness's OvsInstance, one netdev bridge) and veth host ends as ports.  At
each count: wait until every port has an ofport, sleep, read VmRSS of
ovs-vswitchd and its idle CPU, then time a few more add-ports (waiting for
vswitchd; each sample port is removed again).  afxdp ports are added only
while MemAvailable stays above 6 GiB, so 500 of them (~35 GB) are never
tried on a small machine: their figure is an extrapolation, labelled so.

    sudo .venv/bin/python -m bench.density [--quick]

Writes bench/results/density.{json,md} (density-quick.* with --quick);
removes the namespaces, veths and OVS processes it made, even on failure.
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))

from bench.stats import summary, write_results  # noqa: E402
from tests.harness import OvsInstance  # noqa: E402
from tests.harness.fixtures import scratch_netns  # noqa: E402

BRIDGE = "br0"
MB = 10 ** 6                  # decimal MB, as in "~70 MB per afxdp port"
GIB = 2 ** 30
MIN_AVAILABLE = 6 * GIB       # never take the shared machine below this
EXTRAPOLATE_TO = 500
# OVS Interface type of each port type ("" = AF_PACKET on netdev).
OVS_TYPE = {"system": "", "afxdp-nonpmd": "afxdp-nonpmd"}
# Cost assumed before any port was measured (the guard must not start
# optimistic); the measured slope replaces it once it is larger.
NOMINAL_BYTES = {"system": 1 * MB, "afxdp-nonpmd": 80 * MB}
# Ports per ovs-vsctl transaction while filling: afxdp ports come in small
# steps so the memory guard looks again before every ~0.8 GB.
CHUNK = {"system": 100, "afxdp-nonpmd": 10}
COUNTS = {"system": (0, 100, 500), "afxdp-nonpmd": (0, 10, 50, 100)}
QUICK_COUNTS = {"system": (0, 20, 100), "afxdp-nonpmd": (0, 5, 10)}
SETTLE_SLEEP = 1.0
CPU_WINDOW = 2.0


# -- reading the machine and the daemon -------------------------------------

def meminfo(key):
    """A /proc/meminfo field in bytes."""
    with open("/proc/meminfo", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def rss_kb(pid):
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid):
    """utime + stime of the whole process (all threads)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def idle_cpu_pct(pid, window=CPU_WINDOW):
    """Share of one core vswitchd uses while nothing changes: afxdp-nonpmd
    ports are polled by its main thread, system ports wait on sockets."""
    before = cpu_seconds(pid)
    time.sleep(window)
    return round(100 * (cpu_seconds(pid) - before) / window, 2)


# -- building ports -----------------------------------------------------------

def make_veths(ns, names):
    """Veth pairs NAME / NAMEp, both up, in one `ip -batch` (one process
    instead of one per link)."""
    lines = []
    for name in names:
        lines += [f"link add {name} type veth peer name {name}p",
                  f"link set {name} up", f"link set {name}p up"]
    ns.run(["ip", "-batch", "-"], input="\n".join(lines) + "\n",
           timeout=300)


def quiet_ipv6(ns):
    """No IPv6 on new links in this namespace: every link-local address and
    DAD event makes userspace vswitchd re-read routes, which would land in
    the add-port timings.  Per-namespace sysctls: the host's are untouched."""
    for scope in ("default", "all"):
        ns.run(["sysctl", "-q", "-w",
                f"net.ipv6.conf.{scope}.disable_ipv6=1"])


def add_port_args(names, ovs_type):
    """One ovs-vsctl transaction adding every name as a port."""
    args = []
    for name in names:
        args += ["--", "add-port", BRIDGE, name]
        if ovs_type:
            args += ["--", "set", "Interface", name, f"type={ovs_type}"]
    return args[1:]


def interfaces(ovs):
    """{name: (ofport or None, error)} of the bridge's interfaces."""
    out = ovs.vsctl("--format=json", "--columns=name,ofport,error",
                    "list", "Interface", timeout=60)
    rows = {}
    for name, ofport, error in json.loads(out)["data"]:
        ofport = ofport if isinstance(ofport, int) else None
        error = error if isinstance(error, str) else ""
        rows[name] = (ofport, error)
    return rows


def settle(ovs, expected, timeout=300):
    """Wait until vswitchd gave every interface an ofport (all `expected`
    ports plus the bridge's own), then SETTLE_SLEEP more; raise on a port
    it refused (ofport -1) instead of measuring a broken bridge."""
    deadline = time.monotonic() + timeout
    while True:
        rows = interfaces(ovs)
        refused = {n: e for n, (p, e) in rows.items() if p == -1}
        if refused:
            name = sorted(refused)[0]
            raise RuntimeError(f"ovs-vswitchd refused {len(refused)} ports, "
                               f"e.g. {name}: {refused[name] or 'ofport -1'}")
        ready = sum(1 for p, _ in rows.values() if p)
        if len(rows) == expected + 1 and ready == len(rows):
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"ovs-vswitchd did not settle: {ready} of "
                               f"{len(rows)} interfaces have an ofport, "
                               f"{expected + 1} expected")
        time.sleep(0.1)
    time.sleep(SETTLE_SLEEP)


# -- measuring ------------------------------------------------------------------

def time_add_ports(ovs, names, ovs_type, count):
    """ms of each `ovs-vsctl add-port` (it waits until vswitchd applied it);
    each sample port is deleted again (untimed) so the count stays put."""
    times = []
    for name in names:
        start = time.monotonic()
        ovs.vsctl(*add_port_args([name], ovs_type), timeout=120)
        times.append((time.monotonic() - start) * 1000)
        ovs.vsctl("del-port", BRIDGE, name, timeout=120)
    settle(ovs, count)
    return times


def measure(ovs, count, samples, ovs_type):
    """One row: RSS, idle CPU and add-port times with `count` ports."""
    pid = ovs.vswitchd_pid
    if not pid:
        raise RuntimeError("ovs-vswitchd is gone:\n" +
                           ovs.log_tail("ovs-vswitchd"))
    settle(ovs, count)
    cpu = idle_cpu_pct(pid)
    rss = rss_kb(pid)
    times = time_add_ports(ovs, samples, ovs_type, count)
    return {"ports": count, "rss_kb": rss, "rss_mb": round(rss * 1024 / MB, 1),
            "idle_cpu_pct": cpu, "add_port_ms": summary(times),
            "mem_available_mb": round(meminfo("MemAvailable") / MB)}


def room_for(per_port_bytes, reserve=1):
    """How many more ports fit before MemAvailable would fall below
    MIN_AVAILABLE, keeping `reserve` ports' worth for the timed samples."""
    spare = meminfo("MemAvailable") - MIN_AVAILABLE
    return max(0, int(spare // per_port_bytes) - reserve)


def per_port_cost(ovs, have, base_kb, port_type):
    """Bytes one more port is assumed to take: the nominal figure, or what
    the ports so far took each if that is more."""
    seen = (rss_kb(ovs.vswitchd_pid) - base_kb) * 1024 / have if have else 0
    return max(NOMINAL_BYTES[port_type], seen)


def fill(ovs, names, have, target, port_type, base_kb):
    """Add ports have..target in chunks, each only if memory allows (looked
    at again after vswitchd took the previous chunk).  Returns how many
    ports the bridge has now."""
    ovs_type = OVS_TYPE[port_type]
    while have < target:
        cost = per_port_cost(ovs, have, base_kb, port_type)
        chunk = min(target - have, CHUNK[port_type], room_for(cost))
        if chunk <= 0:
            break
        ovs.vsctl(*add_port_args(names[have:have + chunk], ovs_type),
                  timeout=300)
        have += chunk
        settle(ovs, have)
    return have


def slope_mb(points):
    """Least-squares MB per port over the measured rows (None below two)."""
    if len(points) < 2:
        return None
    xs = [p["ports"] for p in points]
    ys = [p["rss_kb"] * 1024 / MB for p in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    if not var:
        return None
    return round(sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / var, 3)


# -- one port type --------------------------------------------------------------

def run_type(port_type, counts, samples, log=print):
    """Fresh namespace + OVS + netdev bridge; rows at each count."""
    suffix = "dn-" + ("sys" if port_type == "system" else "xdp")
    with scratch_netns(suffix) as (ns, work):
        ovs = OvsInstance(ns, os.path.join(work, "ovs"))
        try:
            quiet_ipv6(ns)
            names = [f"dp{i:04d}" for i in range(max(counts))]
            spares = [f"ds{i}" for i in range(samples)]
            start = time.monotonic()
            make_veths(ns, names + spares)
            log(f"  {port_type}: {len(names) + len(spares)} veth pairs in "
                f"{time.monotonic() - start:.1f} s")
            ovs.start()
            ovs.vsctl("add-br", BRIDGE, "--", "set", "Bridge", BRIDGE,
                      "datapath_type=netdev")
            return walk_counts(ovs, port_type, counts, spares, names, log)
        finally:
            # vswitchd first, so it lets go of the XDP sockets before the
            # namespace (and its veths) goes.
            ovs.stop()


def walk_counts(ovs, port_type, counts, spares, names, log):
    ovs_type = OVS_TYPE[port_type]
    points, have, base_kb, capped = [], 0, None, False
    for target in sorted(counts):
        if target and base_kb is not None:
            have = fill(ovs, names, have, target, port_type, base_kb)
        capped = have < target
        if capped and (not points or points[-1]["ports"] == have):
            break
        if room_for(per_port_cost(ovs, have, base_kb or 0, port_type),
                    reserve=0) < 1:
            capped = True     # not even the timed sample ports would fit
            break
        row = measure(ovs, have, spares, ovs_type)
        if base_kb is None:
            base_kb = row["rss_kb"]
        row["mb_per_port"] = (round((row["rss_kb"] - base_kb) * 1024 / MB
                                    / have, 3) if have else None)
        points.append(row)
        log(f"  {port_type} {have} ports: RSS {row['rss_mb']} MB, "
            f"{row['mb_per_port']} MB/port, add-port p50 "
            f"{row['add_port_ms']['p50']} ms, idle CPU "
            f"{row['idle_cpu_pct']} %, MemAvailable "
            f"{row['mem_available_mb']} MB")
        if capped:
            break
    return {"ovs_type": ovs_type, "targets": list(counts), "points": points,
            "reached": have, "capped_by_memory": capped,
            "slope_mb_per_port": slope_mb(points)}


def extrapolation(entry, quick):
    """What EXTRAPOLATE_TO ports would cost, from the slope, when the run
    stopped short of it, and why it stopped short (None if it did not)."""
    points, slope = entry["points"], entry["slope_mb_per_port"]
    if entry["reached"] >= EXTRAPOLATE_TO or not points or slope is None:
        return None
    rss = points[0]["rss_kb"] * 1024 / MB + EXTRAPOLATE_TO * slope
    usable = (meminfo("MemTotal") - MIN_AVAILABLE) / MB
    if EXTRAPOLATE_TO * slope > usable:
        why = (f"{EXTRAPOLATE_TO} ports at {slope} MB/port need "
               f"~{EXTRAPOLATE_TO * slope / 1000:.1f} GB in ovs-vswitchd; "
               f"this machine has {meminfo('MemTotal') / GIB:.1f} GiB and the "
               f"benchmark keeps {MIN_AVAILABLE // GIB} GiB available")
    elif entry["capped_by_memory"]:
        why = (f"MemAvailable would have dropped below "
               f"{MIN_AVAILABLE // GIB} GiB (others share this machine)")
    else:
        why = "quick run" if quick else "not among the counts asked for"
    return {"ports": EXTRAPOLATE_TO, "rss_mb": round(rss, 1),
            "measured": False,
            "note": f"EXTRAPOLATION, not measured: {why}; "
                    f"RSS at 0 + {EXTRAPOLATE_TO} x slope"}


def run(log=print, quick=False):
    """Both port types, one after the other (never side by side: the
    afxdp memory guard must see only this benchmark's own ports)."""
    counts = QUICK_COUNTS if quick else COUNTS
    samples = 3 if quick else 5
    result = {"quick": quick, "samples_per_count": samples,
              "min_available_gib": MIN_AVAILABLE // GIB,
              "mem_total_gib": round(meminfo("MemTotal") / GIB, 1),
              "mb": "10^6 bytes", "types": {}}
    for port_type in ("system", "afxdp-nonpmd"):
        log(f"== {port_type}: ports {', '.join(map(str, counts[port_type]))}")
        start = time.monotonic()
        entry = run_type(port_type, counts[port_type], samples, log)
        entry["seconds"] = round(time.monotonic() - start, 1)
        entry["extrapolated"] = extrapolation(entry, quick)
        if entry["extrapolated"]:
            log(f"  {port_type}: {entry['extrapolated']['note']}")
        result["types"][port_type] = entry
    return result


def markdown(result):
    lines = ["| port type | ports | vswitchd RSS MB | MB per port | "
             "add-port p50 ms |", "|---|---|---|---|---|"]
    notes = []
    for port_type, entry in result["types"].items():
        for row in entry["points"]:
            per = "–" if row["mb_per_port"] is None else row["mb_per_port"]
            lines.append(f"| {port_type} | {row['ports']} | {row['rss_mb']} "
                         f"| {per} | {row['add_port_ms']['p50']} |")
        extra = entry.get("extrapolated")
        if extra:
            lines.append(f"| {port_type} | {extra['ports']} (extrapolated, "
                         f"not measured) | ~{extra['rss_mb']:.0f} | "
                         f"{entry['slope_mb_per_port']} (slope) | – |")
            notes.append(f"{port_type}: {extra['note']}.")
        if entry["capped_by_memory"]:
            notes.append(f"{port_type}: stopped at {entry['reached']} ports "
                         f"of {max(entry['targets'])}: MemAvailable would "
                         f"have dropped below "
                         f"{result['min_available_gib']} GiB.")
        cpu = ", ".join(f"{r['idle_cpu_pct']} % at {r['ports']}"
                        for r in entry["points"])
        notes.append(f"{port_type}: slope {entry['slope_mb_per_port']} "
                     f"MB/port (least squares); idle vswitchd CPU {cpu}.")
    lines += ["", f"MB = 10^6 bytes; RSS = VmRSS of ovs-vswitchd once every "
              f"port has an ofport; add-port p50 over "
              f"{result['samples_per_count']} `ovs-vsctl add-port` (waiting "
              f"for ovs-vswitchd) at each count; one OVS per type, netdev "
              f"bridge, veth host ends as ports."]
    lines += [""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="smaller counts (a smoke run, not numbers to "
                        "quote)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        parser.error("run as root: the benchmark builds network namespaces")
    result = run(lambda msg: print(msg, flush=True), quick=args.quick)
    # a smoke run never replaces the published numbers
    write_results("density-quick" if args.quick else "density", result,
                  markdown(result))


if __name__ == "__main__":
    main()
