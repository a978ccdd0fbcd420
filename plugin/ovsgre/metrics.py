"""Prometheus metrics, served only when asked for (--metrics-address).

Two kinds: what happens (calls, their latency and errors, janitor
removals) is counted as it happens; what is (networks, endpoints, peers,
tunnels, per-endpoint traffic from OVS's interface statistics, etcd) is
read when Prometheus scrapes, from the same store, OVSDB and Docker readers
as the plugin and `ovsgre status`.  Every series is labelled with names a
person knows (the Docker network's name, the container's), not IDs alone.
Docker is asked for names at most every NAMES_EVERY seconds, from the
scrape's thread: never inside a call dockerd waits for.
"""

import logging
import threading
import time

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client import disable_created_metrics, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from .definitions import ENDPOINT_STATES, PEER_KEY, ROLE_KEY, ROLE_TUNNEL

LOG = logging.getLogger(__name__)

NAMES_EVERY = 30.0   # seconds Docker's names are reused for
NAMES_NEW = 2.0      # ... or, when an endpoint has none yet, this long
# Docker's calls take ms; Join waits for the port and the tunnel flows.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
           2.5, 5.0, 10.0, 30.0)

# OVS counts on the host end of the veth pair: what it receives the
# container sent.  The metrics take the container's point of view.
ENDPOINT_COUNTERS = (
    ("transmit_packets", "rx_packets", "packets the container sent"),
    ("transmit_bytes", "rx_bytes", "bytes the container sent"),
    ("receive_packets", "tx_packets", "packets delivered to the container"),
    ("receive_bytes", "tx_bytes", "bytes delivered to the container"),
    ("transmit_drops", "rx_dropped",
     "packets from the container OVS dropped"),
    ("receive_drops", "tx_dropped",
     "packets for the container OVS could not deliver"),
)
TUNNEL_COUNTERS = (
    ("transmit_packets", "tx_packets", "packets sent to the peer"),
    ("transmit_bytes", "tx_bytes", "bytes sent to the peer"),
    ("receive_packets", "rx_packets", "packets received from the peer"),
    ("receive_bytes", "rx_bytes", "bytes received from the peer"),
)


class Metrics:
    """The plugin's registry: call and janitor counters, and the scrape
    time collector added by watch()."""

    def __init__(self):
        # no *_created series: counters reset with the plugin anyway
        disable_created_metrics()
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "ovsgre_requests", "Calls from Docker, by call",
            ["call"], registry=self.registry)
        self.latency = Histogram(
            "ovsgre_request_duration_seconds",
            "Time to answer a call from Docker, by call", ["call"],
            buckets=BUCKETS, registry=self.registry)
        self.errors = Counter(
            "ovsgre_request_errors", "Calls answered with an error, by "
            "call and reason", ["call", "reason"], registry=self.registry)
        self.removed = Counter(
            "ovsgre_janitor_removed", "What the janitor removed, by kind",
            ["kind"], registry=self.registry)
        self._server = None

    def observe_call(self, call, seconds, reason=None):
        self.requests.labels(call).inc()
        self.latency.labels(call).observe(seconds)
        if reason:
            self.errors.labels(call, reason).inc()

    def janitor_removed(self, counts):
        """counts: {kind: number} from one janitor run."""
        for kind, number in counts.items():
            if number:
                self.removed.labels(kind).inc(number)

    def watch(self, state):
        """Serve `state` (a StateCollector) with every scrape."""
        self.registry.register(state)

    def serve(self, address):
        host, _, port = address.rpartition(":")
        self._server, _thread = start_http_server(
            int(port), host.strip("[]"), registry=self.registry)
        LOG.info("metrics on http://%s/metrics", address)

    def stop(self):
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class StateCollector:
    """What is, read at scrape time.  records: records.HostRecords;
    counters(): dataplane.ovsdb.read_counters; names(): the hoststate
    Docker reader's names(); tunnel_sync and etcd_up() only on hosts with
    peers and etcd."""

    def __init__(self, records, counters, names, tunnel_sync=None,
                 etcd_up=None, names_every=NAMES_EVERY, names_new=NAMES_NEW):
        self.records = records
        self.counters = counters
        self.names = names
        self.tunnel_sync = tunnel_sync
        self.etcd_up = etcd_up
        self.names_every = names_every
        self.names_new = names_new
        self._names = ({}, 0.0)   # (names, monotonic time read)
        self._lock = threading.Lock()

    def describe(self):
        return []   # series depend on the host's state

    def collect(self):
        networks = self.records.networks()
        endpoints = self.records.endpoints()
        names = self._docker_names(set(endpoints))
        label = {nid: names.get("networks", {}).get(nid) or net.name or
                 nid[:12] for nid, net in networks.items()}
        yield from _network_families(networks, endpoints, label)
        try:
            counters = self.counters()
        except Exception as exc:   # OVSDB down: the rest still serves
            LOG.warning("metrics: OVSDB counters: %s", exc)
            counters = None
        yield _gauge("ovsgre_ovsdb_up", "1 when OVSDB answered this scrape",
                     [], [((), int(counters is not None))])
        if counters is not None:
            containers = names.get("endpoints", {})
            yield from _endpoint_families(endpoints, counters, label,
                                          containers)
            yield from _tunnel_families(counters)
        yield from self._cluster_families()

    def _docker_names(self, endpoint_ids):
        """Docker's names, read again after names_every seconds, or after
        names_new when an endpoint has none (a container just started)."""
        with self._lock:
            names, read_at = self._names
            age = time.monotonic() - read_at
            unnamed = endpoint_ids - set(names.get("endpoints", {}))
            if read_at and age < (self.names_new if unnamed
                                  else self.names_every):
                return names
            try:
                names = self.names()
            except Exception as exc:   # dockerd down: IDs stand in
                LOG.info("metrics: Docker names: %s", exc)
                names = {}
            self._names = (names, time.monotonic())
            return names

    def _cluster_families(self):
        sync = self.tunnel_sync
        if sync is not None:
            if sync.peers is not None:
                yield _gauge("ovsgre_peers", "Peers this host keeps "
                             "tunnels to", [], [((), len(sync.peers))])
            yield _gauge("ovsgre_tunnel_sync_ok", "1 when the last tunnel "
                         "and flow sync succeeded", [],
                         [((), int(sync.last_error is None))])
        if self.etcd_up is not None:
            yield _gauge("ovsgre_etcd_up", "1 while this host's "
                         "registration in etcd is alive", [],
                         [((), int(bool(self.etcd_up())))])


def _gauge(name, doc, labels, samples):
    family = GaugeMetricFamily(name, doc, labels=labels)
    for values, value in samples:
        family.add_metric(list(values), value)
    return family


def _network_families(networks, endpoints, label):
    yield _gauge(
        "ovsgre_network_info", "This host's ovsgre networks (value 1)",
        ["network", "network_id", "cluster_name", "vlan", "key"],
        [((label[nid], nid[:12], net.name, str(net.vlan),
           str(net.key or "")), 1) for nid, net in sorted(networks.items())])
    counts = {(nid, state): 0 for nid in networks
              for state in ENDPOINT_STATES}
    for ep in endpoints.values():
        if ep.network_id in networks:
            counts[(ep.network_id, ep.state)] += 1
    yield _gauge(
        "ovsgre_endpoints", "Endpoints on this host, by network and state",
        ["network", "state"],
        [((label[nid], state), n) for (nid, state), n in
         sorted(counts.items())])


def _endpoint_families(endpoints, counters, label, containers):
    families = {
        metric: CounterMetricFamily(
            f"ovsgre_endpoint_{metric}", doc,
            labels=["network", "container", "endpoint"])
        for metric, _, doc in ENDPOINT_COUNTERS}
    up = GaugeMetricFamily(
        "ovsgre_endpoint_port_up", "1 when the endpoint's OVS port is in "
        "service (has an OpenFlow port number, no error)",
        labels=["network", "container", "endpoint"])
    for eid, ep in sorted(endpoints.items()):
        port = counters.get(ep.host_if)
        if port is None or ep.network_id not in label:
            continue
        labels = [label[ep.network_id], containers.get(eid, ""), eid[:12]]
        stats = port["statistics"] or {}
        for metric, key, _ in ENDPOINT_COUNTERS:
            if key in stats:
                families[metric].add_metric(labels, stats[key])
        up.add_metric(labels, int(_in_service(port)))
    yield from families.values()
    yield up


def _tunnel_families(counters):
    tunnels = {port["external_ids"].get(PEER_KEY): port
               for port in counters.values()
               if port["external_ids"].get(ROLE_KEY) == ROLE_TUNNEL}
    tunnels.pop(None, None)
    yield _gauge("ovsgre_tunnel_up", "1 when the GRE port to the peer is "
                 "in service", ["peer"],
                 [((peer,), int(_in_service(port)))
                  for peer, port in sorted(tunnels.items())])
    for metric, key, doc in TUNNEL_COUNTERS:
        family = CounterMetricFamily(f"ovsgre_tunnel_{metric}", doc,
                                     labels=["peer"])
        for peer, port in sorted(tunnels.items()):
            value = (port["statistics"] or {}).get(key)
            if value is not None:
                family.add_metric([peer], value)
        yield family


def _in_service(port):
    return bool(port["ofport"] and port["ofport"] > 0 and not port["error"])
