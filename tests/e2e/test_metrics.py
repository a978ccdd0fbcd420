"""Prometheus metrics scraped from a live plugin: two hosts with etcd, real
containers and real traffic.  Each host's plugin runs in its own network
namespace, so `--metrics-address 9490` listens on that namespace's
loopback; the scrape runs there too, like Prometheus on the same host."""

import json
import sys
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.harness.cluster import Cluster
from tests.harness.sites import (BLUE, import_busybox, received,
                                 start_plugin, stop_sites, tunnels, wait_for)

PORT = 9490
SCRAPE = ("import sys, urllib.request; sys.stdout.write(urllib.request."
          "urlopen(sys.argv[1], timeout=10).read().decode())")



@pytest.fixture(scope="module")
def pair():
    """Host 0 serves metrics; host 1 does not ask for them."""
    cluster = Cluster(n_hosts=2, etcd=True)
    sites = []
    cluster.mesh_sites = sites
    try:
        cluster.start()
        for i, host in enumerate(cluster.hosts):
            import_busybox(host.docker)
            extra = {"OVSGRE_METRICS_ADDRESS": str(PORT)} if i == 0 else {}
            sites.append(start_plugin(cluster, host, **extra))
        for site in sites:
            wait_for(lambda: len(tunnels(site)) == 1, 10, "a full mesh")
            site.docker("network", "create", "-d", "ovsgre", *BLUE, "blue")
        yield cluster, sites
    finally:
        stop_sites(cluster, sites)


def scrape(site):
    """{(name, sorted label items): value} of one scrape."""
    proc = site.host.netns.run(
        [sys.executable, "-c", SCRAPE, f"http://127.0.0.1:{PORT}/metrics"],
        timeout=30)
    samples = {}
    for family in text_string_to_metric_families(proc.stdout):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def sample(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))))


def test_state_and_calls_are_served(pair):
    cluster, (site, other) = pair
    site.run_bg("metrics-a", "blue", "sleep", "600")
    got, labels = _scrape_with(site, "metrics-a")
    assert sample(got, "ovsgre_endpoints", network="blue",
                  state="joined") == 1
    assert sample(got, "ovsgre_network_info", network="blue",
                  network_id=_network_id(site)[:12], cluster_name="blue",
                  vlan="1", key=str(_stored_key(site))) == 1
    peer = cluster.host_ip(other.host)
    assert sample(got, "ovsgre_peers") == 1
    assert sample(got, "ovsgre_tunnel_up", peer=peer) == 1
    assert sample(got, "ovsgre_etcd_up") == 1
    assert sample(got, "ovsgre_ovsdb_up") == 1
    assert sample(got, "ovsgre_requests_total",
                  call="NetworkDriver.Join") >= 1
    assert sample(got, "ovsgre_request_duration_seconds_count",
                  call="NetworkDriver.Join") >= 1
    assert sample(got, "ovsgre_request_errors_total",
                  call="NetworkDriver.Join", reason="not_found") is None
    assert sample(got, "ovsgre_endpoint_port_up", **labels) == 1


def test_errors_are_counted_by_reason(pair):
    _, (site, _) = pair
    status, _ = site.plugin.call("NetworkDriver.Join", {
        "NetworkID": "0" * 64, "EndpointID": "1" * 64,
        "SandboxKey": "/var/run/docker/netns/x"})
    assert status == 404
    got = scrape(site)
    assert sample(got, "ovsgre_request_errors_total",
                  call="NetworkDriver.Join", reason="not_found") >= 1


def test_counters_move_with_traffic(pair):
    cluster, (site, other) = pair
    site.run_bg("metrics-s", "blue", "sleep", "600")
    other.run_bg("metrics-r", "blue", "sleep", "600")
    target = other.ip("metrics-r", "blue")
    peer = cluster.host_ip(other.host)
    before, labels = _scrape_with(site, "metrics-s")
    ping = site.docker("exec", "metrics-s", "ping", "-c", "30", "-i", "0.05",
                       target)
    assert received(ping.stdout) == (30, 30)
    names = ("ovsgre_endpoint_transmit_packets_total",
             "ovsgre_endpoint_receive_packets_total",
             "ovsgre_endpoint_transmit_bytes_total")
    # ovs-vswitchd refreshes interface statistics every 5 s
    deadline = time.monotonic() + 20
    while True:
        after = scrape(site)
        grown = {n: sample(after, n, **labels) - sample(before, n, **labels)
                 for n in names}
        sent = sample(after, "ovsgre_tunnel_transmit_packets_total",
                      peer=peer) - sample(
            before, "ovsgre_tunnel_transmit_packets_total", peer=peer)
        if all(v >= 30 for v in grown.values()) and sent >= 30 or \
                time.monotonic() > deadline:
            break
        time.sleep(1)
    assert grown["ovsgre_endpoint_transmit_packets_total"] >= 30, grown
    assert grown["ovsgre_endpoint_receive_packets_total"] >= 30, grown
    assert grown["ovsgre_endpoint_transmit_bytes_total"] >= 30 * 84, grown
    assert sent >= 30


def test_nothing_listens_unless_asked(pair):
    _, (_, other) = pair
    listening = other.host.netns.run(["ss", "-Htlnp"]).stdout
    pids = {str(p) for p in other.plugin.pids()}
    mine = [line for line in listening.splitlines()
            if any(f"pid={p}," in line for p in pids)]
    assert mine == [], listening
    refused = other.host.netns.run(
        [sys.executable, "-c", SCRAPE, f"http://127.0.0.1:{PORT}/metrics"],
        check=False, timeout=30)
    assert refused.returncode != 0 and "refused" in refused.stderr


def _scrape_with(site, container, timeout=10):
    """A scrape that has the container's endpoint series, and their labels
    (the name comes from Docker, asked again when an endpoint is new)."""
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(site)
        for (name, labels), _ in samples.items():
            found = dict(labels)
            if name == "ovsgre_endpoint_port_up" and \
                    found.get("container") == container:
                assert found["network"] == "blue"
                return samples, found
        if time.monotonic() > deadline:
            raise AssertionError(
                f"no endpoint series of {container}: "
                f"{sorted(k for k in samples if 'endpoint_port' in k[0])}")
        time.sleep(0.5)


def _stored_key(site):
    """The GRE key the plugin recorded for blue (the cluster's)."""
    path = f"{site.plugin.state_dir}/networks/{_network_id(site)}.json"
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)["key"]


def _network_id(site):
    return site.out("network", "inspect", "-f", "{{.Id}}", "blue")
