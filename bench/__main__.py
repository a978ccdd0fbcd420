"""The whole benchmark suite in one run: ovsgre next to the hand-built OVS
GRE setup, kernel VXLAN, a raw veth and Docker's bridge, plus its own
control-plane costs, checked against the project's targets.

    sudo ./scripts/bench.sh            # sets up, then runs this
    sudo .venv/bin/python -m bench [--quick] [--only dataplane,control]

Writes bench/results/report.{md,json,png} (report-quick.* with --quick);
everything it builds lives in network namespaces it removes afterwards.
Only ratios from one run mean something on a shared machine.
"""

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))

from bench import (control, dataplane, density, forwarding,  # noqa: E402
                   kernel, lifecycle, multihost)
from bench.stats import RESULTS, write_results  # noqa: E402

PARTS = ("lifecycle", "forwarding", "density", "dataplane", "control",
         "multihost", "kernel")


def machine():
    def out(argv):
        try:
            return subprocess.run(argv, capture_output=True, text=True,
                                  timeout=10).stdout.strip()
        except OSError:
            return ""
    with open("/proc/meminfo") as fh:
        mem_kb = int(fh.readline().split()[1])
    model = ""
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"cpu": model, "cores": os.cpu_count(),
            "memory_gib": round(mem_kb / 2 ** 20, 1),
            "kernel": platform.release(),
            "ovs": out(["ovs-vswitchd", "--version"]).splitlines()[0:1],
            "docker": out(["dockerd", "--version"]),
            "date": datetime.datetime.now(datetime.timezone.utc)
            .strftime("%Y-%m-%d %H:%M UTC")}


def run_parts(parts, quick, log):
    results = {}
    if "lifecycle" in parts:
        log("== lifecycle: plugin calls and docker run vs bridge")
        results["lifecycle"] = lifecycle.run(10 if quick else 30, log)
    if "forwarding" in parts:
        log("== Join to forwarding: 1 and 32 containers at once")
        results["forwarding"] = forwarding.run(log=log, quick=quick)
    if "density" in parts:
        log("== ovs-vswitchd memory and add-port time per port type")
        results["density"] = density.run(log=log, quick=quick)
    if "dataplane" in parts:
        log("== dataplane: iperf3 and ping across the alternatives")
        results["dataplane"] = dataplane.run(
            seconds=5, reps=1 if quick else 3, log=log)
    if "control" in parts:
        log("== control plane: scaling, concurrency, mesh bring-up")
        results["control"] = control.run(
            samples=30 if quick else 100,
            counts=(10, 100) if quick else (10, 100, 1000),
            rounds=1 if quick else 3, mesh_hosts=4 if quick else 8,
            log=log)
    if "kernel" in parts:
        log("== the kernel datapath, in a guest under qemu")
        results["kernel"] = kernel.run(
            seconds=5, reps=2 if quick else 5, runs=5 if quick else 10,
            log=log)
    if "multihost" in parts:
        log("== a new host joins")
        results["multihost"] = multihost.run(1 if quick else 3, log)
    return results


def targets(results):
    """[(target, measured, holds)] for what this run measured."""
    rows = []
    for part, check in (("lifecycle", _lifecycle_targets),
                        ("forwarding", _forwarding_targets),
                        ("density", _density_targets),
                        ("control", _control_targets),
                        ("dataplane", _dataplane_targets),
                        ("multihost", _multihost_targets),
                        ("kernel", _kernel_targets)):
        if results.get(part):
            rows += check(results[part])
    return rows


def _kernel_targets(result):
    return [(f"kernel datapath, cross-host TCP: ovsgre ≥ {goal} × "
             f"{kernel.LABELS[x]} (one guest boot, emulated)",
             f"{result['ratios'][x]['gbps']} × "
             f"({result['configs']['a']['gbps']} vs "
             f"{result['configs'][x]['gbps']} Gbit/s)",
             result["ratios"][x]["gbps"] >= goal)
            for x, goal in kernel.TARGETS.items()]


def _lifecycle_targets(life):
    ci = life.get("ratio_p50_ci95") or [None, None]
    rows = [("`docker run` median ≤ 1.05 × a user-defined bridge network",
             f"{life['ratio_p50']} × (95% CI {ci[0]}–{ci[1]})",
             life["ratio_p50"] <= 1.05)]
    if life.get("ratio_p50_default_bridge") is not None:
        dci = life.get("ratio_p50_default_bridge_ci95") or [None, None]
        rows.append(("`docker run` against Docker's default `bridge` (no "
                     "embedded DNS; reported, no target)",
                     f"{life['ratio_p50_default_bridge']} × (95% CI "
                     f"{dci[0]}–{dci[1]})", None))
    p50 = life["plugin_lifecycle_ms"]["p50"]
    rows.append(("plugin-side lifecycle p50 ≤ 10 ms, including Join's wait "
                 "for forwarding (system ports)", f"{p50} ms", p50 <= 10))
    return rows


def _forwarding_targets(fwd):
    rows = []
    for key, label in (("one_at_a_time", "1 container"),
                       ("together", "32 at once")):
        part = fwd.get(key)
        if not part:
            continue
        ret = part["return_to_answer_ms"]
        lost = part["first_probe_unanswered"]
        rows.append((f"Join → forwarding, {label}: first probe after Join "
                     "answered in every sample",
                     f"Join p50/p99 {part['plugin_join_ms']['p50']}/"
                     f"{part['plugin_join_ms']['p99']} ms; Join return → "
                     f"first reply p50/p99 {ret['p50']}/{ret['p99']} ms; "
                     f"{lost} of {part['samples']} first probes unanswered",
                     lost == 0))
    return rows


def _density_targets(dens):
    rows = []
    for name, info in dens["types"].items():
        last = info["points"][-1]
        add = [pt["add_port_ms"]["p50"] for pt in info["points"]
               if pt["ports"] <= 100]
        text = (f"{info['slope_mb_per_port']} MB per port (RSS "
                f"{info['points'][0]['rss_mb']} → {last['rss_mb']} MB at "
                f"{last['ports']} ports); add-port p50 "
                f"{'/'.join(str(a) for a in add)} ms")
        if name == "system":
            rows.append(("default (system) container ports: vswitchd memory "
                         "per port near zero, add-port near 10 ms", text,
                         info["slope_mb_per_port"] < 1))
        else:
            rows.append((f"{name} ports (by choice; reported)", text, None))
    return rows


def _control_targets(ctl):
    counts = [c for c in ctl["join_scaling"] if c.isdigit()]
    lo, hi = ctl["join_scaling"][counts[0]], ctl["join_scaling"][counts[-1]]
    rows = []
    if "join_settled_p99_ratio" in ctl:
        ratio = ctl["join_settled_p99_ratio"]
        rows.append((f"Join p99 at {counts[-1]} endpoints ≤ 2 × at "
                     f"{counts[0]}, once ovs-vswitchd has the port (Join's "
                     f"own work)", f"{ratio} ×", ratio <= 2))
    text = (f"{ctl['join_p99_ratio']} × (p99 {lo['join_ms']['p99']} → "
            f"{hi['join_ms']['p99']} ms")
    if "add_port_ms" in hi:
        text += (f"; `ovs-vsctl add-port` p99 {lo['add_port_ms']['p99']} → "
                 f"{hi['add_port_ms']['p99']} ms")
    flood = (ctl.get("mesh") or {}).get("broadcast_copies")
    if flood:
        n = flood["hosts_holding"]["blue"]
        rows.append((f"copies of one broadcast that a host sends, {n} "
                     "hosts: network held by 2 of them vs by all "
                     "(reported)", f"{flood['pair']} vs {flood['blue']}",
                     None))
    rows.append((f"Join p99 right after CreateEndpoint, {counts[-1]} vs "
                 f"{counts[0]} endpoints (includes ovs-vswitchd's "
                 f"reconfiguration; reported)", text + ")", None))
    return rows


def _dataplane_targets(data):
    rows = []
    ratios = data.get("ratios", {})
    if ratios.get("cross-host a/b system") is not None:
        value = ratios["cross-host a/b system"]
        rows.append(("cross-host TCP ≥ 1.0 × the hand-built setup (system "
                     "ports)", f"{value} ×", value >= 1.0))
    pairs = data.get("same_host_pairs")
    if pairs:
        lo, hi = pairs["ci95"]
        rows.append((f"same-host TCP against the hand-built setup as built "
                     f"({pairs['pairs']} interleaved pairs; reported)",
                     f"{pairs['ratio_median']} × (95% CI {lo}–{hi})", None))
        fair = pairs.get("variants", {}).get("b-docker-nat")
        if fair:
            lo, hi = fair["ci95"]
            rows.append(("same-host TCP: no gap once the hand-built "
                         "containers carry the NAT rules Docker puts in every "
                         "container for its DNS (95% CI includes or exceeds "
                         "1.0)", f"{fair['ratio_median']} × (95% CI "
                         f"{lo}–{hi})", hi >= 1.0))
    return rows


def _multihost_targets(hosts):
    worst = hosts["registration_to_first_ping_s"]["max"]
    return [("new host to first cross-host ping ≤ 2 s",
             f"{worst} s (worst of {hosts['joins']})", worst <= 2)]


def _updated(name, fresh):
    """The existing report with fresh's parts replaced."""
    with open(os.path.join(RESULTS, name + ".json")) as fh:
        report = json.load(fh)
    report["results"].update(fresh["results"])
    report.setdefault("rerun", {}).update(
        {part: fresh["machine"]["date"] for part in fresh["results"]})
    return report


def markdown(report):
    lines = [f"Run {report['machine']['date']} on {report['machine']['cores']}"
             f" cores ({report['machine']['cpu']}), "
             f"{report['machine']['memory_gib']} GiB, kernel "
             f"{report['machine']['kernel']}; took "
             f"{report['seconds'] / 60:.1f} min."
             + "".join(f" Re-run alone {when}: {part}."
                       for part, when in report.get("rerun", {}).items()),
             "",
             "| target | measured | holds |", "|---|---|---|"]
    for text, value, holds in report["targets"]:
        verdict = "–" if holds is None else ("yes" if holds else "NO")
        lines.append(f"| {text} | {value} | {verdict} |")
    results = report["results"]
    for part, title in (("dataplane", "Data plane"),
                        ("lifecycle", "Container lifecycle"),
                        ("forwarding", "Join to forwarding"),
                        ("density", "ovs-vswitchd memory per port type"),
                        ("control", "Control plane"),
                        ("multihost", "Hosts joining"),
                        ("kernel", "Kernel datapath (in a VM)")):
        if part in results:
            module = globals()[part]
            lines += ["", f"### {title}", "", module.markdown(results[part])]
    return "\n".join(lines) + "\n"


def plot(report, path):
    """Throughput per configuration and the lifecycle's call costs."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing: no PNG (scripts/bench.sh installs it)")
        return False
    results = report["results"]
    panels = [p for p in ("dataplane", "lifecycle") if p in results]
    if not panels:
        return False
    fig, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels), 5),
                             squeeze=False)
    for ax, part in zip(axes[0], panels):
        if part == "dataplane":
            configs = results["dataplane"]["configs"]
            names = [f"{c['name']}" for c in configs]
            values = [c["gbps"] or 0 for c in configs]
            colors = ["tab:blue" if c["family"] == "ovsgre" else "tab:gray"
                      for c in configs]
            ax.barh(names, values, color=colors)
            ax.set_xscale("log")
            ax.set_xlabel("TCP Gbit/s (iperf3, median; log scale)")
            ax.set_title("Data plane (ovsgre in blue)")
            ax.invert_yaxis()
        else:
            calls = results["lifecycle"]["plugin_call_ms"]
            ax.bar(list(calls), [c["p50"] for c in calls.values()],
                   label="p50")
            ax.bar(list(calls), [c["p99"] - c["p50"] for c in
                                 calls.values()],
                   bottom=[c["p50"] for c in calls.values()], alpha=0.4,
                   label="p99")
            ax.set_ylabel("ms, plugin-side")
            ax.set_title("Plugin time per call")
            ax.legend()
            ax.tick_params(axis="x", labelrotation=20)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    return True


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="fewer repetitions (a smoke run, not numbers "
                        "to quote)")
    parser.add_argument("--only", default=",".join(PARTS),
                        help="comma-separated parts: " + ", ".join(PARTS))
    parser.add_argument("--update", action="store_true",
                        help="replace only these parts in the existing "
                        "report (the report says which were re-run, when)")
    args = parser.parse_args()
    parts = [p for p in args.only.split(",") if p]
    unknown = set(parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown parts: {', '.join(sorted(unknown))}")
    if os.geteuid() != 0:
        parser.error("run as root: the benchmarks build network namespaces")
    start = time.monotonic()
    results = run_parts(parts, args.quick, lambda msg: print(msg,
                                                             flush=True))
    report = {"machine": machine(), "quick": args.quick,
              "seconds": round(time.monotonic() - start),
              "results": results}
    # a smoke run never replaces the published report
    name = "report-quick" if args.quick else "report"
    if args.update:
        report = _updated(name, report)
    report["targets"] = targets(report["results"])
    write_results(name, report, markdown(report))
    plot(report, os.path.join(RESULTS, name + ".png"))


if __name__ == "__main__":
    main()
