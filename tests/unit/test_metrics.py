"""Prometheus metrics: calls counted and timed by name, errors by reason,
janitor removals, and what is read at scrape time (networks, endpoints and
their traffic, tunnels, etcd) labelled with the names people know."""

import urllib.request

import pytest

from ovsgre import config
from ovsgre.definitions import (OWNER, OWNER_KEY, PEER_KEY, ROLE_KEY,
                                ROLE_TUNNEL, tunnel_port_name)
from ovsgre.driver import Driver
from ovsgre.janitor import Janitor
from ovsgre.metrics import Metrics, StateCollector
from ovsgre.protocol import create_app
from ovsgre.records import HostRecords

from .conftest import DEFAULT_MTU, Api, make_id
from .fakes import FakeDataplane

NET, EP, OTHER = make_id("net"), make_id("ep"), make_id("other")
PEER = "198.18.0.2"


def value(metrics, name, **labels):
    return metrics.registry.get_sample_value(name, labels)


@pytest.fixture
def metrics():
    return Metrics()


@pytest.fixture
def mapi(store, fake, metrics):
    return Api(create_app(Driver(store, fake, DEFAULT_MTU),
                          metrics=metrics).test_client())


# -- --metrics-address ------------------------------------------------------
@pytest.mark.parametrize("given,listen", [
    ("", ""), ("9490", "127.0.0.1:9490"), (":9490", "127.0.0.1:9490"),
    ("0.0.0.0:9490", "0.0.0.0:9490"), ("[::1]:9490", "[::1]:9490")])
def test_metrics_address_only_a_port_is_loopback(given, listen):
    settings = config.from_env({"OVSGRE_METRICS_ADDRESS": given})
    assert settings.metrics_address == listen


@pytest.mark.parametrize("given,reason", [
    ("http", "must be PORT"), ("70000", "must be PORT"),
    ("web:9490", "not an IP address"), ("::1:9490", "in brackets")])
def test_metrics_address_mistakes_are_named(given, reason):
    with pytest.raises(SystemExit, match=reason):
        config.from_env({"OVSGRE_METRICS_ADDRESS": given})


def test_nothing_listens_unless_asked():
    assert config.from_env({}).metrics_address == ""


# -- calls ------------------------------------------------------------------
def test_calls_are_counted_and_timed_by_name(mapi, metrics):
    mapi.create_network(NET)
    mapi.create_endpoint(NET, EP)
    mapi.create_endpoint(NET, OTHER, address="10.10.0.3/24")
    call = "NetworkDriver.CreateEndpoint"
    assert value(metrics, "ovsgre_requests_total", call=call) == 2
    assert value(metrics, "ovsgre_request_duration_seconds_count",
                 call=call) == 2
    assert value(metrics, "ovsgre_request_duration_seconds_sum",
                 call=call) > 0
    assert value(metrics, "ovsgre_requests_total",
                 call="NetworkDriver.CreateNetwork") == 1
    assert value(metrics, "ovsgre_request_errors_total", call=call,
                 reason="invalid") is None


def test_errors_are_counted_by_call_and_reason(mapi, metrics, fake):
    mapi.create_network(NET)
    assert mapi.call("CreateEndpoint", {"NetworkID": NET,
                                        "EndpointID": "x y"})[0] == 400
    assert mapi.join(NET, make_id("nobody"))[0] == 404
    fake.fail("plug", RuntimeError("boom"))
    assert mapi.create_endpoint(NET, EP)[0] == 500
    assert value(metrics, "ovsgre_request_errors_total",
                 call="NetworkDriver.CreateEndpoint", reason="invalid") == 1
    assert value(metrics, "ovsgre_request_errors_total",
                 call="NetworkDriver.Join", reason="not_found") == 1
    assert value(metrics, "ovsgre_request_errors_total",
                 call="NetworkDriver.CreateEndpoint", reason="internal") == 1


def test_unknown_paths_share_one_label(mapi, metrics):
    for name in ("Bogus1", "Bogus2"):
        assert mapi.call(name, {})[0] == 404
    assert value(metrics, "ovsgre_requests_total", call="unknown") == 2
    assert value(metrics, "ovsgre_request_errors_total", call="unknown",
                 reason="unknown_call") == 2


def test_janitor_removals_are_counted(store, fake, metrics):
    driver = Driver(store, fake, DEFAULT_MTU)
    api = Api(create_app(driver).test_client())
    api.create_network(NET)
    api.create_endpoint(NET, EP)
    fake.fail("unplug", RuntimeError("busy"))
    assert api.delete_endpoint(NET, EP)[0] == 500     # left "deleting"
    Janitor(driver, stale_after=3600, metrics=metrics).run_once()
    assert value(metrics, "ovsgre_janitor_removed_total",
                 kind="finished_delete") == 1


# -- what is read at scrape time --------------------------------------------
class Sources:
    def __init__(self):
        self.names_asked = 0
        self.counters_fail = None

    def names(self):
        self.names_asked += 1
        return {"networks": {NET: "web"}, "endpoints": {EP: "frontend"}}

    def counters(self, endpoint_port):
        if self.counters_fail:
            raise self.counters_fail
        owned = {OWNER_KEY: OWNER}
        return {
            endpoint_port: {"external_ids": owned, "ofport": 3,
                            "error": None, "statistics": {
                                "rx_packets": 11, "rx_bytes": 1100,
                                "tx_packets": 7, "tx_bytes": 700,
                                "rx_dropped": 0, "tx_dropped": 2}},
            tunnel_port_name(PEER): {
                "external_ids": dict(owned, **{ROLE_KEY: ROLE_TUNNEL,
                                               PEER_KEY: PEER}),
                "ofport": -1, "error": "could not add network device",
                "statistics": {"tx_packets": 5}}}


class Sync:
    peers = {PEER}
    last_error = "tunnel sync failed"


@pytest.fixture
def scraped(store, fake, metrics):
    api = Api(create_app(Driver(store, fake, DEFAULT_MTU)).test_client())
    api.create_network(NET)
    api.create_endpoint(NET, EP)
    api.join(NET, EP)
    api.create_endpoint(NET, OTHER, address="10.10.0.3/24")
    sources = Sources()
    host_if = HostRecords(store).endpoint(EP).host_if
    metrics.watch(StateCollector(
        HostRecords(store), lambda: sources.counters(host_if),
        sources.names, tunnel_sync=Sync(), etcd_up=lambda: True))
    return sources


def test_endpoint_traffic_is_labelled_with_names(scraped, metrics):
    labels = {"network": "web", "container": "frontend",
              "endpoint": EP[:12]}
    assert value(metrics, "ovsgre_endpoint_transmit_packets_total",
                 **labels) == 11
    assert value(metrics, "ovsgre_endpoint_receive_bytes_total",
                 **labels) == 700
    assert value(metrics, "ovsgre_endpoint_receive_drops_total",
                 **labels) == 2
    assert value(metrics, "ovsgre_endpoint_port_up", **labels) == 1


def test_networks_and_endpoints_by_state(scraped, metrics):
    assert value(metrics, "ovsgre_endpoints", network="web",
                 state="joined") == 1
    assert value(metrics, "ovsgre_endpoints", network="web",
                 state="created") == 1
    assert value(metrics, "ovsgre_endpoints", network="web",
                 state="deleting") == 0
    assert value(metrics, "ovsgre_network_info", network="web",
                 network_id=NET[:12], cluster_name="", vlan="1", key="") == 1


def test_peers_tunnels_and_etcd(scraped, metrics):
    assert value(metrics, "ovsgre_peers") == 1
    assert value(metrics, "ovsgre_tunnel_up", peer=PEER) == 0
    assert value(metrics, "ovsgre_tunnel_transmit_packets_total",
                 peer=PEER) == 5
    assert value(metrics, "ovsgre_tunnel_sync_ok") == 0
    assert value(metrics, "ovsgre_etcd_up") == 1
    assert value(metrics, "ovsgre_ovsdb_up") == 1


def test_ovsdb_down_leaves_the_rest(scraped, metrics):
    scraped.counters_fail = OSError("no ovsdb")
    assert value(metrics, "ovsgre_ovsdb_up") == 0
    assert value(metrics, "ovsgre_endpoints", network="web",
                 state="joined") == 1
    assert value(metrics, "ovsgre_endpoint_transmit_packets_total",
                 network="web", container="frontend",
                 endpoint=EP[:12]) is None


def test_docker_is_asked_for_names_at_most_every_30_s(scraped, metrics):
    for _ in range(3):
        value(metrics, "ovsgre_peers")
    assert scraped.names_asked == 1


def test_without_docker_ids_stand_in(store, metrics):
    records = HostRecords(store)
    api = Api(create_app(Driver(store, FakeDataplane(), DEFAULT_MTU))
              .test_client())
    api.create_network(NET)

    def no_docker():
        raise OSError("dockerd down")
    metrics.watch(StateCollector(records, lambda: {}, no_docker))
    assert value(metrics, "ovsgre_endpoints", network=NET[:12],
                 state="joined") == 0
    assert value(metrics, "ovsgre_peers") is None     # single host
    assert value(metrics, "ovsgre_etcd_up") is None


def test_served_over_http_and_stopped(metrics):
    metrics.requests.labels("Plugin.Activate").inc()
    metrics.serve("127.0.0.1:0")
    port = metrics._server.server_port
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics",
                                timeout=5) as reply:
        text = reply.read().decode()
    assert 'ovsgre_requests_total{call="Plugin.Activate"} 1.0' in text
    metrics.stop()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics",
                               timeout=2)



def test_a_new_endpoint_gets_its_name_soon(store, metrics):
    api = Api(create_app(Driver(store, FakeDataplane(), DEFAULT_MTU))
              .test_client())
    api.create_network(NET)
    asked = []

    def names():
        asked.append(1)     # Docker knows the container from now on
        return {"networks": {NET: "web"}, "endpoints": {EP: "frontend"}}
    metrics.watch(StateCollector(HostRecords(store), lambda: {}, names,
                                 names_new=0))
    value(metrics, "ovsgre_endpoints", network="web", state="created")
    assert len(asked) == 1
    api.create_endpoint(NET, make_id("unnamed"), address="10.10.0.9/24")
    value(metrics, "ovsgre_endpoints", network="web", state="created")
    assert len(asked) == 2    # asked again: an endpoint without a name
    api.create_endpoint(NET, EP)
    value(metrics, "ovsgre_endpoints", network="web", state="created")
    assert len(asked) == 3
