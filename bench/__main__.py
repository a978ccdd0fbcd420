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
import os
import platform
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))

from bench import control, dataplane, lifecycle, multihost  # noqa: E402
from bench.stats import RESULTS, write_results  # noqa: E402

PARTS = ("lifecycle", "dataplane", "control", "multihost")


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
    if "multihost" in parts:
        log("== a new host joins")
        results["multihost"] = multihost.run(1 if quick else 3, log)
    return results


def targets(results):
    """[(target, measured, holds)] for what this run measured."""
    rows = []
    life = results.get("lifecycle")
    if life:
        rows.append(("`docker run` median ≤ 1.10 × Docker's bridge",
                     f"{life['ratio_p50']} ×", life["ratio_p50"] <= 1.10))
        p50 = life["plugin_lifecycle_ms"]["p50"]
        rows.append(("plugin-side time per container lifecycle p50 ≤ 15 ms",
                     f"{p50} ms", p50 <= 15))
    ctl = results.get("control")
    if ctl:
        ratio = ctl["join_p99_ratio"]
        counts = [c for c in ctl["join_scaling"] if c.isdigit()]
        rows.append((f"Join p99 at {counts[-1]} endpoints ≤ 2 × at "
                     f"{counts[0]}", f"{ratio} ×", ratio <= 2))
    data = results.get("dataplane")
    if data:
        ratios = data["ratios"]
        for key, limit, text in (
                ("cross-host a/b system", 1.0,
                 "cross-host ≥ 1.0 × hand-built, system ports"),
                ("cross-host a/b afxdp-nonpmd", 1.0,
                 "cross-host ≥ 1.0 × hand-built, afxdp-nonpmd ports"),
                ("cross-host a(auto)/b(system)", 1.5,
                 "cross-host, ovsgre's choice ≥ 1.5 × hand-built default")):
            if ratios.get(key) is not None:
                rows.append((text, f"{ratios[key]} ×", ratios[key] >= limit))
    hosts = results.get("multihost")
    if hosts:
        worst = hosts["registration_to_first_ping_s"]["max"]
        rows.append(("new host to first cross-host ping ≤ 2 s",
                     f"{worst} s (worst of {hosts['joins']})", worst <= 2))
    return rows


def markdown(report):
    lines = [f"Run {report['machine']['date']} on {report['machine']['cores']}"
             f" cores ({report['machine']['cpu']}), "
             f"{report['machine']['memory_gib']} GiB, kernel "
             f"{report['machine']['kernel']}; took "
             f"{report['seconds'] / 60:.1f} min.", "",
             "| target | measured | holds |", "|---|---|---|"]
    for text, value, holds in report["targets"]:
        lines.append(f"| {text} | {value} | {'yes' if holds else 'NO'} |")
    results = report["results"]
    for part, title in (("dataplane", "Data plane"),
                        ("lifecycle", "Container lifecycle"),
                        ("control", "Control plane"),
                        ("multihost", "Hosts joining")):
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
    report["targets"] = targets(results)
    # a smoke run never replaces the published report
    name = "report-quick" if args.quick else "report"
    write_results(name, report, markdown(report))
    plot(report, os.path.join(RESULTS, name + ".png"))


if __name__ == "__main__":
    main()
