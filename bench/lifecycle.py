"""Container lifecycle cost: ovsgre next to Docker's own bridge networks.

Builds one namespace host (OVS + dockerd + ovsgre, as the e2e tests do),
whose dockerd also has a default `bridge` network (docker0 in the host's
namespace, 198.18.63.0/24), then times `docker run --rm --network N
busybox true` on three networks, interleaved and in an order that rotates
every round so no network always goes first:

- ovsgre   an ovsgre network (Docker's embedded DNS, as on every
           user-defined network);
- user_bridge     a user-defined bridge network (embedded DNS too: the
           like-for-like reference; "ratio_p50" is ovsgre / this);
- default_bridge  Docker's default `bridge` network (no embedded DNS:
           the harder reference; "ratio_p50_default_bridge").

Each ratio of medians comes with a bootstrap 95% interval (runs resampled
with replacement, 2,000 resamples, fixed seed).  The plugin's own per-call
durations are read from its log (one line per call) for the plugin-side
time of each container lifecycle (CreateEndpoint ... DeleteEndpoint);
Join, which waits for ovs-vswitchd to put the port in service, is also
reported on its own.

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

from bench.stats import bootstrap_ratio_ci, summary, write_results  # noqa
from tests.harness.sites import IMAGE, start_site  # noqa: E402
from tests.harness import TestHost  # noqa: E402

CALL_LINE = re.compile(r"ovsgre\.calls: (\w+) network=\w+ endpoint=(\w+) "
                       r"ok in ([\d.]+) ms")
CALL_ERROR = re.compile(r"ovsgre\.calls: \w+.* (?:rejected|failed|crashed) "
                        r"in [\d.]+ ms")
PORT_TYPE = re.compile(r"ready: .*port type (\S+)")

# (key in the results, docker network name, what it is)
NETWORKS = (
    ("ovsgre", "ovnet", "ovsgre"),
    ("user_bridge", "brnet", "user-defined bridge (embedded DNS)"),
    ("default_bridge", "bridge", "Docker's default bridge (no embedded DNS)"),
)
CREATE = (("-d", "ovsgre", "--subnet", "198.18.61.0/24", "ovnet"),
          ("-d", "bridge", "--subnet", "198.18.62.0/24", "brnet"))
# The harness starts dockerd with --bridge=none; flags given after it win:
# an empty --bridge means the default docker0, created by dockerd inside
# the host's network namespace with --bip; the pool only matters for a
# network created without --subnet (none here).  No iptables, as before.
DEFAULT_BRIDGE_ARGS = ("--bridge=", "--bip=198.18.63.1/24",
                       "--default-address-pool",
                       "base=198.18.64.0/18,size=24")
RESAMPLES = 2000
SEED = 20240601


def time_run(site, network):
    """One `docker run --rm --network NETWORK busybox true`, in ms."""
    start = time.monotonic()
    site.docker("run", "--rm", "--network", network, IMAGE, "true")
    return (time.monotonic() - start) * 1000


def time_rounds(site, runs, log=print):
    """runs rounds, one container per network each; the order rotates by
    one network per round.  Returns {key: [ms, ...]} in run order."""
    times = {key: [] for key, _, _ in NETWORKS}
    for i in range(runs):
        shift = i % len(NETWORKS)
        for key, network, _ in NETWORKS[shift:] + NETWORKS[:shift]:
            times[key].append(time_run(site, network))
        if (i + 1) % 10 == 0:
            log(f"  {i + 1}/{runs} rounds")
    return times


def plugin_calls(log_path, since_offset):
    """Per endpoint, {call: ms} of its successful calls logged after
    since_offset, and how many calls failed there."""
    endpoints = collections.defaultdict(dict)
    errors = 0
    with open(log_path, errors="replace") as fh:
        fh.seek(since_offset)
        for line in fh:
            match = CALL_LINE.search(line)
            if match:
                calls = endpoints[match.group(2)]
                calls[match.group(1)] = calls.get(match.group(1), 0.0) + \
                    float(match.group(3))
            elif CALL_ERROR.search(line):
                errors += 1
    return endpoints, errors


def port_type(log_path, until_offset):
    with open(log_path, errors="replace") as fh:
        match = PORT_TYPE.search(fh.read(until_offset))
    return match.group(1) if match else "unknown"


def lifecycle_stats(endpoints):
    """Plugin-side time per container (complete lifecycles only: both
    CreateEndpoint and DeleteEndpoint seen), with and without Join, and
    per call."""
    complete = [c for c in endpoints.values()
                if "CreateEndpoint" in c and "DeleteEndpoint" in c]
    per_call = collections.defaultdict(list)
    for calls in complete:
        for call, ms in calls.items():
            per_call[call].append(ms)
    return {
        "plugin_lifecycles": len(complete),
        "plugin_incomplete_lifecycles": len(endpoints) - len(complete),
        "plugin_lifecycle_ms": summary([sum(c.values()) for c in complete]),
        "plugin_lifecycle_excl_join_ms": summary(
            [sum(ms for call, ms in c.items() if call != "Join")
             for c in complete]),
        "plugin_join_ms": summary(per_call.get("Join", [])),
        "plugin_call_ms": {k: summary(v) for k, v in
                           sorted(per_call.items())},
    }


def measure(runs, log):
    """Build the host, time the runs, read the plugin's log; everything
    is removed again, whatever happens."""
    host = TestHost("bench", extra_args=list(DEFAULT_BRIDGE_ARGS))
    site = None
    try:
        site = start_site(host)
        for args in CREATE:
            site.docker("network", "create", *args)
        for _, network, _ in NETWORKS:   # warm-up: image cache, plugin
            for _ in range(3):
                time_run(site, network)
        offset = os.path.getsize(site.plugin.log_path)
        times = time_rounds(site, runs, log)
        endpoints, errors = plugin_calls(site.plugin.log_path, offset)
        return times, endpoints, errors, port_type(site.plugin.log_path,
                                                   offset)
    finally:
        try:
            if host.docker:
                host.docker.remove_all_containers()
            if site:
                site.plugin.stop()
        finally:
            host.stop()


def ratios(times):
    """Ratios of medians, ovsgre over each bridge, with bootstrap CIs."""
    out = {}
    for key, name in (("user_bridge", "ratio_p50"),
                      ("default_bridge", "ratio_p50_default_bridge")):
        out[name] = round(statistics.median(times["ovsgre"])
                          / statistics.median(times[key]), 3)
        out[name + "_ci95"] = bootstrap_ratio_ci(
            times["ovsgre"], times[key], resamples=RESAMPLES, seed=SEED)
    return out


def run(runs=30, log=print):
    times, endpoints, errors, ptype = measure(runs, log)
    docker_run = {key: summary(times[key]) for key, _, _ in NETWORKS}
    docker_run["bridge"] = docker_run["user_bridge"]   # the key before
    result = {
        "runs": runs,
        "port_type": ptype,
        "networks": {key: {"name": name, "what": what}
                     for key, name, what in NETWORKS},
        "docker_run_ms": docker_run,
        **ratios(times),
        "bootstrap": {"resamples": RESAMPLES, "seed": SEED,
                      "method": "percentile, each network's runs "
                                "resampled with replacement"},
        **lifecycle_stats(endpoints),
        "plugin_call_errors": errors,
        "docker_run_samples_ms": {k: [round(v, 1) for v in vals]
                                  for k, vals in times.items()},
    }
    log(f"  docker run ratio vs user bridge {result['ratio_p50']} "
        f"{result['ratio_p50_ci95']}, vs default bridge "
        f"{result['ratio_p50_default_bridge']} "
        f"{result['ratio_p50_default_bridge_ci95']}; lifecycle "
        f"{result['plugin_lifecycle_ms']}, Join {result['plugin_join_ms']}")
    return result


def markdown(result):
    run_ms = result["docker_run_ms"]
    rows = [(f"`docker run --rm … true`, {what}", run_ms[key])
            for key, what in (("ovsgre", "ovsgre"),
                              ("user_bridge", "user-defined bridge"),
                              ("default_bridge", "default `bridge`"))
            if key in run_ms]
    rows += [("plugin-side, one lifecycle (all calls)",
              result["plugin_lifecycle_ms"])]
    if "plugin_join_ms" in result:
        rows += [("plugin-side, one lifecycle without Join",
                  result["plugin_lifecycle_excl_join_ms"]),
                 ("plugin Join (incl. wait for ovs-vswitchd)",
                  result["plugin_join_ms"])]
    rows += [(f"plugin {call}", stats) for call, stats in
             result["plugin_call_ms"].items() if call != "Join"]
    lines = ["| measure | p50 ms | p99 ms |", "|---|---|---|"]
    lines += [f"| {name} | {s['p50']} | {s['p99']} |" for name, s in rows]
    lines += ["", "| ratio of `docker run` medians | value | 95% CI |",
              "|---|---|---|"]
    for name, key in (("ovsgre / user-defined bridge", "ratio_p50"),
                      ("ovsgre / default bridge",
                       "ratio_p50_default_bridge")):
        if key in result:
            ci = result.get(key + "_ci95")
            ci_text = f"{ci[0]}–{ci[1]}" if ci else "–"
            lines.append(f"| {name} | {result[key]} | {ci_text} |")
    return "\n".join(lines) + \
        f"\n\n{result['runs']} runs per network, interleaved, order " \
        f"rotated each round; port type {result['port_type']}; CIs: " \
        f"bootstrap, runs resampled with replacement " \
        f"({result.get('bootstrap', {}).get('resamples', '?')} resamples, " \
        f"fixed seed).\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    result = run(args.runs)
    write_results("lifecycle", result, markdown(result))


if __name__ == "__main__":
    main()
