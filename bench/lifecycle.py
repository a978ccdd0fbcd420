"""Container lifecycle cost: ovsgre next to Docker's built-in bridge.

Builds one namespace host (OVS + dockerd + ovsgre, as the e2e tests do),
then times `docker run --rm --network N busybox true` alternately on an
ovsgre network and a bridge network, and reads the plugin's own per-call
durations from its log (one line per call) to get the plugin-side time of
each container lifecycle (CreateEndpoint ... DeleteEndpoint).

    sudo python3 -m bench.lifecycle [--runs 30]

Writes bench/results/lifecycle.{json,md}; removes everything it made.
"""

import argparse
import collections
import os
import re
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))

from bench.stats import summary, write_results  # noqa: E402
from tests.harness.sites import IMAGE, start_site  # noqa: E402
from tests.harness import TestHost  # noqa: E402

CALL_LINE = re.compile(r"ovsgre\.calls: (\w+) network=\w+ endpoint=(\w+) "
                       r"ok in ([\d.]+) ms")


def time_runs(site, network, runs):
    times = []
    for _ in range(runs):
        start = time.monotonic()
        site.docker("run", "--rm", "--network", network, IMAGE, "true")
        times.append((time.monotonic() - start) * 1000)
    return times


def plugin_calls(log_path, since_offset):
    per_endpoint = collections.defaultdict(float)
    per_call = collections.defaultdict(list)
    with open(log_path, errors="replace") as fh:
        fh.seek(since_offset)
        for line in fh:
            match = CALL_LINE.search(line)
            if match:
                call, endpoint, ms = match.group(1), match.group(2), \
                    float(match.group(3))
                per_endpoint[endpoint] += ms
                per_call[call].append(ms)
    return list(per_endpoint.values()), per_call


def run(runs=30, log=print):
    host = TestHost("bench")
    site = None
    try:
        site = start_site(host)
        site.docker("network", "create", "-d", "ovsgre", "--subnet",
                    "198.18.61.0/24", "ovnet")
        site.docker("network", "create", "-d", "bridge", "--subnet",
                    "198.18.62.0/24", "brnet")
        time_runs(site, "ovnet", 3)   # warm-up: image cache, plugin
        time_runs(site, "brnet", 3)
        offset = os.path.getsize(site.plugin.log_path)
        ovs_times, bridge_times = [], []
        for _ in range(runs):   # interleaved: same noise for both
            ovs_times += time_runs(site, "ovnet", 1)
            bridge_times += time_runs(site, "brnet", 1)
        lifecycles, per_call = plugin_calls(site.plugin.log_path, offset)
        match = re.search(r"port type (\S+)", site.plugin.log_tail(400))
    finally:
        if host.docker:
            host.docker.remove_all_containers()
        if site:
            site.plugin.stop()
        host.stop()
    result = {
        "runs": runs,
        "port_type": match.group(1) if match else "unknown",
        "docker_run_ms": {"ovsgre": summary(ovs_times),
                          "bridge": summary(bridge_times)},
        "ratio_p50": round(statistics.median(ovs_times)
                           / statistics.median(bridge_times), 3),
        "plugin_lifecycle_ms": summary(lifecycles),
        "plugin_call_ms": {k: summary(v) for k, v in
                           sorted(per_call.items())},
    }
    log(f"  docker run ratio {result['ratio_p50']}, lifecycle "
        f"{result['plugin_lifecycle_ms']}")
    return result


def markdown(result):
    lines = ["| measure | p50 ms | p99 ms |", "|---|---|---|"]
    for name, stats in (
            ("`docker run --rm … true`, ovsgre",
             result["docker_run_ms"]["ovsgre"]),
            ("`docker run --rm … true`, bridge",
             result["docker_run_ms"]["bridge"]),
            ("plugin-side, one lifecycle (all calls)",
             result["plugin_lifecycle_ms"])):
        lines.append(f"| {name} | {stats['p50']} | {stats['p99']} |")
    for call, stats in result["plugin_call_ms"].items():
        lines.append(f"| plugin {call} | {stats['p50']} | {stats['p99']} |")
    return "\n".join(lines) + f"\n\nratio of medians ovsgre/bridge: " \
        f"{result['ratio_p50']} ({result['runs']} runs each, port type " \
        f"{result['port_type']})\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    result = run(args.runs)
    write_results("lifecycle", result, markdown(result))


if __name__ == "__main__":
    main()
