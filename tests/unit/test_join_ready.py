"""Join answers only once the container's port forwards.

Docker starts the container's process as soon as Join returns; a port that
ovs-vswitchd has not taken yet drops the process's first packets.  These
tests model vswitchd's side with the fake dataplane (wait_forwarding) and
the fake tunnel_sync (wait_installed)."""

import threading
import time

from ovsgre.driver import Driver
from ovsgre.errors import DataplaneError
from ovsgre.protocol import create_app

from .conftest import DEFAULT_MTU, Api, make_id
from .fakes import FakeDataplane, FakeRegistry, FakeTunnelSync

NET = make_id("ready-net")
EP = make_id("ready-ep")
OTHER = make_id("ready-other")


def _api(store, fake, tunnel_sync=None, ready_timeout=3.0):
    registry = FakeRegistry() if tunnel_sync is not None else None
    driver = Driver(store, fake, DEFAULT_MTU, registry, tunnel_sync,
                    ready_timeout=ready_timeout)
    return Api(create_app(driver).test_client())


def test_join_waits_for_the_port_with_the_configured_timeout(store):
    fake = FakeDataplane()
    api = _api(store, fake, ready_timeout=7.5)
    api.create_network(NET)
    api.create_endpoint(NET, EP)
    assert api.join(NET, EP)[0] == 200
    waits = [c for c in fake.calls if c[0] == "wait_forwarding"]
    assert waits == [("wait_forwarding", EP, 7.5)]
    # the wait came before the endpoint was recorded as joined
    order = [c[0] for c in fake.calls]
    assert order.index("wait_forwarding") > order.index("has_host_link")


def test_refused_port_fails_join_with_ovs_words_and_stays_created(store):
    fake = FakeDataplane()
    api = _api(store, fake)
    api.create_network(NET)
    api.create_endpoint(NET, EP)
    host_if = store.get("endpoints", EP)["host_if"]
    fake.fail("wait_forwarding", DataplaneError(
        f"ovs-vswitchd refused port {host_if} (type system): could not "
        "open network device"))
    status, reply, _ = api.join(NET, EP)
    assert status == 500
    assert host_if in reply["Err"] and "could not open" in reply["Err"]
    ep = store.get("endpoints", EP)
    assert ep["state"] == "created" and ep["sandbox"] == ""
    # Docker follows a failed Join with DeleteEndpoint: nothing stays
    assert api.delete_endpoint(NET, EP)[0] == 200
    assert fake.ports == {} and store.list("endpoints") == {}


def test_other_calls_proceed_while_a_join_waits(store):
    """The wait happens outside the driver lock: one slow port must not
    hold up every other container's calls."""
    fake = FakeDataplane()
    release = threading.Event()
    waiting = threading.Event()
    real_wait = fake.wait_forwarding

    def slow_wait(ep, timeout):
        if ep.endpoint_id == EP:
            waiting.set()
            assert release.wait(5)
        return real_wait(ep, timeout)

    fake.wait_forwarding = slow_wait
    api = _api(store, fake)
    api.create_network(NET)
    api.create_endpoint(NET, EP)
    result = {}
    joiner = threading.Thread(
        target=lambda: result.update(join=api.join(NET, EP)[0]))
    joiner.start()
    try:
        assert waiting.wait(5)
        start = time.monotonic()
        assert api.create_endpoint(NET, OTHER, address="10.10.0.3/24")[0] \
            == 200
        assert api.join(NET, OTHER)[0] == 200
        assert time.monotonic() - start < 2
        assert store.get("endpoints", EP)["state"] == "created"
    finally:
        release.set()
        joiner.join(5)
    assert result == {"join": 200}
    assert store.get("endpoints", EP)["state"] == "joined"


def test_endpoint_deleted_while_join_waited_is_404(store):
    fake = FakeDataplane()
    api = _api(store, fake)
    real_wait = fake.wait_forwarding

    def wait_then_lose(ep, timeout):
        info = real_wait(ep, timeout)
        store.delete("endpoints", ep.endpoint_id)
        return info

    fake.wait_forwarding = wait_then_lose
    api.create_network(NET)
    api.create_endpoint(NET, EP)
    assert api.join(NET, EP)[0] == 404
    assert store.list("endpoints") == {}   # not written back


def test_cross_host_network_also_waits_for_the_tunnel_table(store):
    fake, tunnel_sync = FakeDataplane(), FakeTunnelSync()
    api = _api(store, fake, tunnel_sync, ready_timeout=4.0)
    api.create_network(NET, {"ovsgre.network": "blue"})
    api.create_endpoint(NET, EP)
    assert api.join(NET, EP)[0] == 200
    assert tunnel_sync.waits == [4.0]
    host_if = store.get("endpoints", EP)["host_if"]
    assert tunnel_sync.announced == [(host_if, store.get("endpoints",
                                                      EP)["mac"])]


def test_local_network_does_not_wait_for_tunnels(store):
    fake, tunnel_sync = FakeDataplane(), FakeTunnelSync()
    api = _api(store, fake, tunnel_sync)
    api.create_network(NET)                 # no ovsgre.network: no key
    api.create_endpoint(NET, EP)
    assert api.join(NET, EP)[0] == 200
    assert tunnel_sync.waits == [] and tunnel_sync.announced == []


def test_tunnel_table_not_back_fails_join(store):
    fake, tunnel_sync = FakeDataplane(), FakeTunnelSync()
    tunnel_sync.wait_error = DataplaneError(
        "the tunnel flows are not back in ovs-vswitchd (pid 200) after "
        "4 s: ovs-ofctl replace-flows failed")
    api = _api(store, fake, tunnel_sync)
    api.create_network(NET, {"ovsgre.network": "blue"})
    api.create_endpoint(NET, EP)
    status, reply, _ = api.join(NET, EP)
    assert status == 500 and "tunnel flows are not back" in reply["Err"]
    assert store.get("endpoints", EP)["state"] == "created"
    assert tunnel_sync.announced == []
