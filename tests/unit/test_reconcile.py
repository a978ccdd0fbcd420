"""Start-up reconciliation: the store is the truth, the dataplane follows."""

import pytest

from ovsgre import OWNER
from ovsgre.reconcile import reconcile
from ovsgre.records import ENDPOINTS, from_json

from .conftest import make_id
from .fakes import FakeDataplane

NET = make_id("net")
VLAN = 7


def _net(store, nid=NET, vlan=VLAN):
    store.put("networks", nid, {"network_id": nid, "vlan": vlan, "mtu": 1450,
                                "gwbridge": False, "ipv4": [], "ipv6": []})


def _ep(store, label, state="created", nid=NET):
    eid = make_id(label)
    rec = {"network_id": nid, "endpoint_id": eid,
           "host_if": "ovgh" + eid[:11], "peer_if": "ovgc" + eid[:11],
           "mac": "02:00:00:00:00:01", "mtu": 1450, "address": "10.0.0.2/24",
           "address6": "", "state": state,
           "sandbox": "/var/run/docker/netns/x" if state == "joined" else ""}
    store.put("endpoints", eid, rec)
    return rec


def _plugged(fake, ep, tag=VLAN):
    """The pair and port as the driver would have left them."""
    fake.plug(from_json(ENDPOINTS, ep), tag)
    fake.calls.clear()


def _owner(eid="x", nid=NET):
    return {"owner": OWNER, "ovsgre_network": nid, "ovsgre_endpoint": eid}


def _mutations(fake):
    return [c[0] for c in fake.calls
            if c[0] in ("plug", "ensure_port", "unplug",
                        "remove_port", "remove_link")]


def test_ensure_bridge_first(store, fake):
    _net(store)
    _ep(store, "a")
    reconcile(store, fake)
    assert fake.calls[0] == ("ensure_bridge",)
    assert fake.bridge_ensured == 1


def test_empty_everything(store, fake):
    assert reconcile(store, fake) == {"restored": 0, "finished_delete": 0,
                                      "orphans": 0}
    assert _mutations(fake) == []


def test_consistent_state_is_left_alone(store, fake):
    _net(store)
    created = _ep(store, "a")
    joined = _ep(store, "b", "joined")
    _plugged(fake, created)
    _plugged(fake, joined)
    fake.move_to_sandbox(joined["peer_if"])
    before = (dict(fake.links), {k: dict(v) for k, v in fake.ports.items()})
    counts = reconcile(store, fake)
    assert counts == {"restored": 0, "finished_delete": 0, "orphans": 0}
    assert _mutations(fake) == []
    assert (fake.links, fake.ports) == before


# -- endpoints being deleted ----------------------------------------------

def test_deleting_endpoint_is_finished(store, fake):
    _net(store)
    ep = _ep(store, "a", "deleting")
    _plugged(fake, ep)
    counts = reconcile(store, fake)
    assert counts["finished_delete"] == 1
    assert store.list("endpoints") == {}
    assert fake.links == {} and fake.ports == {}


def test_deleting_endpoint_with_nothing_left_is_finished(store, fake):
    _net(store)
    _ep(store, "a", "deleting")
    assert reconcile(store, fake)["finished_delete"] == 1
    assert store.list("endpoints") == {}


def test_endpoint_of_a_vanished_network_is_deleted(store, fake):
    ep = _ep(store, "a", "joined", nid=make_id("gone"))
    _plugged(fake, ep)
    assert reconcile(store, fake)["finished_delete"] == 1
    assert store.list("endpoints") == {}
    assert fake.links == {} and fake.ports == {}


# -- created endpoints ----------------------------------------------------

@pytest.mark.parametrize("lost", ["both", "port", "link"])
def test_created_endpoint_is_replugged(store, fake, lost):
    _net(store)
    ep = _ep(store, "a")
    _plugged(fake, ep)
    if lost in ("both", "link"):
        fake._delete_link(ep["host_if"])        # e.g. a reboot
    if lost in ("both", "port"):
        fake.ports.clear()                      # e.g. OVS db reset
    counts = reconcile(store, fake)
    assert counts["restored"] == 1
    assert set(fake.links) == {ep["host_if"], ep["peer_if"]}
    assert fake.links[ep["peer_if"]]["address"] == ep["mac"]
    assert fake.ports == {ep["host_if"]: {
        "tag": VLAN, "external_ids": _owner(ep["endpoint_id"]),
        "ofport": fake.ports[ep["host_if"]]["ofport"]}}
    assert store.get("endpoints", ep["endpoint_id"]) == ep


def test_created_endpoint_with_wrong_tag_is_fixed(store, fake):
    _net(store)
    ep = _ep(store, "a")
    _plugged(fake, ep, tag=99)
    assert reconcile(store, fake)["restored"] == 1
    assert fake.ports[ep["host_if"]]["tag"] == VLAN
    assert len(fake.links) == 2


# -- joined endpoints -----------------------------------------------------

def test_joined_endpoint_whose_link_is_gone_loses_port_keeps_record(store,
                                                                    fake):
    _net(store)
    ep = _ep(store, "a", "joined")
    _plugged(fake, ep)
    fake.move_to_sandbox(ep["peer_if"])
    fake.kill_sandbox(ep["peer_if"])          # the container died
    assert ep["host_if"] not in fake.links
    assert ep["host_if"] in fake.ports
    reconcile(store, fake)
    assert fake.ports == {}
    assert fake.all_links() == set()
    assert store.get("endpoints", ep["endpoint_id"]) == ep
    assert fake.count("plug") == 0


def test_joined_endpoint_whose_link_and_port_are_gone(store, fake):
    _net(store)
    ep = _ep(store, "a", "joined")
    reconcile(store, fake)
    assert fake.ports == {} and fake.links == {}
    assert store.get("endpoints", ep["endpoint_id"])["state"] == "joined"


def test_joined_endpoint_with_link_gets_port_back_without_new_veth(store,
                                                                   fake):
    _net(store)
    ep = _ep(store, "a", "joined")
    _plugged(fake, ep)
    fake.move_to_sandbox(ep["peer_if"])
    fake.ports.clear()                        # ovsdb lost the port
    assert reconcile(store, fake)["restored"] == 1
    assert fake.ports[ep["host_if"]]["tag"] == VLAN
    assert fake.ports[ep["host_if"]]["external_ids"] == \
        _owner(ep["endpoint_id"])
    # The container's end was not touched (no plug, which would recreate).
    assert fake.count("plug") == 0
    assert ep["peer_if"] in fake.sandboxed


def test_joined_endpoint_port_with_wrong_tag_is_fixed(store, fake):
    _net(store)
    ep = _ep(store, "a", "joined")
    _plugged(fake, ep, tag=1234)
    fake.move_to_sandbox(ep["peer_if"])
    assert reconcile(store, fake)["restored"] == 1
    assert fake.ports[ep["host_if"]]["tag"] == VLAN
    assert fake.count("plug") == 0 and ep["peer_if"] in fake.sandboxed


@pytest.mark.parametrize("state", ["created", "joined"])
@pytest.mark.parametrize("ids", [{}, {"owner": OWNER},
                                 {"owner": "someone-else"}])
def test_port_with_lost_external_ids_is_fixed(store, fake, state, ids):
    """A port with the right tag but external_ids cleared or changed (by
    hand, or an old version) would no longer be found as ovsgre's own."""
    _net(store)
    ep = _ep(store, "a", state)
    _plugged(fake, ep)
    if state == "joined":
        fake.move_to_sandbox(ep["peer_if"])
    fake.ports[ep["host_if"]]["external_ids"] = dict(ids)
    assert reconcile(store, fake)["restored"] == 1
    assert fake.ports[ep["host_if"]]["external_ids"] == \
        _owner(ep["endpoint_id"])
    assert fake.ports[ep["host_if"]]["tag"] == VLAN
    if state == "joined":
        assert fake.count("plug") == 0 and ep["peer_if"] in fake.sandboxed


# -- orphans --------------------------------------------------------------

def test_orphan_owned_ports_are_removed(store, fake):
    _net(store)
    kept = _ep(store, "kept")
    _plugged(fake, kept)
    # A port (and pair) of an endpoint the store no longer knows.
    fake.add_veth("ovgh" + "a" * 11, "ovgc" + "a" * 11)
    fake.add_port_raw("ovgh" + "a" * 11, 5, _owner("gone"))
    # An owned port whose link is long gone, with a non-ovsgre name.
    fake.add_port_raw("stale0", 5, _owner("gone2"))
    counts = reconcile(store, fake)
    assert counts["orphans"] >= 2
    assert set(fake.ports) == {kept["host_if"]}
    assert set(fake.links) == {kept["host_if"], kept["peer_if"]}


def test_orphan_ovsgre_links_are_removed(store, fake):
    _net(store)
    kept = _ep(store, "kept")
    _plugged(fake, kept)
    fake.add_veth("ovgh" + "b" * 11, "ovgc" + "b" * 11)
    fake.add_veth("ovgh" + "c" * 11, "veth0000")    # odd peer name
    counts = reconcile(store, fake)
    assert counts["orphans"] >= 2
    assert set(fake.links) == {kept["host_if"], kept["peer_if"]}


def test_foreign_ports_and_links_are_untouched(store, fake):
    _net(store)
    fake.add_port_raw("eth1", None, {})
    fake.add_port_raw("vm-port", 100, {"owner": "someone-else"})
    fake.add_port_raw("gre-peer", None, {"ovsgre_network": NET})
    fake.add_foreign_link("eth0", "veth")
    fake.add_foreign_link("docker0", "bridge")
    fake.add_foreign_link("ovghshort", "veth")     # not our name format
    fake.add_foreign_link("vethabcdefghijk", "veth")
    before = (dict(fake.links), {k: dict(v) for k, v in fake.ports.items()})
    counts = reconcile(store, fake)
    assert counts == {"restored": 0, "finished_delete": 0, "orphans": 0}
    assert (fake.links, fake.ports) == before
    assert _mutations(fake) == []


def test_joined_endpoint_host_link_is_not_an_orphan(store, fake):
    _net(store)
    ep = _ep(store, "a", "joined")
    _plugged(fake, ep)
    fake.move_to_sandbox(ep["peer_if"])
    reconcile(store, fake)
    assert ep["host_if"] in fake.links and ep["host_if"] in fake.ports


def test_reconcile_is_idempotent(store, fake):
    _net(store)
    _ep(store, "a")
    _ep(store, "b", "deleting")
    j = _ep(store, "c", "joined")
    _plugged(fake, j, tag=3)
    fake.move_to_sandbox(j["peer_if"])
    fake.add_veth("ovgh" + "d" * 11, "ovgc" + "d" * 11)
    first = reconcile(store, fake)
    assert sum(first.values()) > 0
    state = (dict(fake.links), {k: dict(v) for k, v in fake.ports.items()},
             store.list("endpoints"))
    fake.calls.clear()
    assert reconcile(store, fake) == {"restored": 0, "finished_delete": 0,
                                      "orphans": 0}
    assert _mutations(fake) == []
    assert (fake.links, fake.ports, store.list("endpoints")) == state


def test_after_a_host_reboot(api, store, fake):
    """Kernel links are gone, OVSDB ports survived; dockerd will restart
    containers later: created endpoints get their pair back, joined ones
    whose sandbox died just lose the port."""
    api.create_network(NET)
    a, b = make_id("a"), make_id("b")
    api.create_endpoint(NET, a)
    api.create_endpoint(NET, b, "10.10.0.3/24")
    _, reply, _ = api.join(NET, b)
    fake.move_to_sandbox(reply["InterfaceName"]["SrcName"])

    rebooted = FakeDataplane()
    rebooted.ports = {k: dict(v) for k, v in fake.ports.items()}
    counts = reconcile(store, rebooted)
    ea, eb = store.get("endpoints", a), store.get("endpoints", b)
    vlan = store.get("networks", NET)["vlan"]
    assert counts["restored"] == 1
    assert set(rebooted.links) == {ea["host_if"], ea["peer_if"]}
    assert set(rebooted.ports) == {ea["host_if"]}
    assert rebooted.ports[ea["host_if"]]["tag"] == vlan
    assert eb["state"] == "joined"


# -- the janitor (while running) --------------------------------------------------

def test_janitor_finishes_refused_deletes(store, fake):
    from ovsgre.reconcile import collect_garbage
    _net(store)
    ep = _ep(store, "gone", state="deleting")
    _plugged(fake, ep)
    keep = _ep(store, "keep", state="joined")
    _plugged(fake, keep)
    counts = collect_garbage(store, fake)
    assert counts["finished_delete"] == 1
    assert store.get("endpoints", ep["endpoint_id"]) is None
    assert ep["host_if"] not in fake.ports and ep["host_if"] not in fake.links
    assert keep["host_if"] in fake.ports and keep["host_if"] in fake.links


def test_janitor_removes_orphans_and_never_replugs(store, fake):
    from ovsgre.reconcile import collect_garbage
    _net(store)
    keep = _ep(store, "keep")
    _plugged(fake, keep)
    missing = _ep(store, "no-port-yet")        # start-up's job, not ours
    fake.add_veth("ovgh0123456789a", "ovgc0123456789a")   # no record
    fake.add_port_raw("ovgh0123456789a", 3, _owner("late"))
    fake.add_port_raw("foreign", 3, {"owner": "someone-else"})
    counts = collect_garbage(store, fake)
    assert counts["orphans"] == 3     # the port and both link ends
    assert "ovgh0123456789a" not in fake.ports
    assert not {"ovgh0123456789a", "ovgc0123456789a"} & set(fake.links)
    assert "foreign" in fake.ports
    assert keep["host_if"] in fake.ports
    assert missing["host_if"] not in fake.ports
    assert "plug" not in _mutations(fake)


def test_janitor_with_nothing_to_do_changes_nothing(store, fake):
    from ovsgre.reconcile import collect_garbage
    _net(store)
    _plugged(fake, _ep(store, "a"))
    assert collect_garbage(store, fake) == {"finished_delete": 0,
                                            "dead_sandbox": 0, "orphans": 0}
    assert _mutations(fake) == []


def test_janitor_thread_survives_errors_and_uses_the_lock(store, fake):
    import threading
    from ovsgre.driver import Driver
    from ovsgre.janitor import Janitor
    driver = Driver(store, fake, 1450)
    runs = []
    real = driver.locked

    def locked(func, *args):
        assert not driver._lock._is_owned()
        runs.append(func.__name__)
        if len(runs) == 1:
            raise RuntimeError("OVSDB did not answer")
        return real(func, *args)

    driver.locked = locked
    janitor = Janitor(driver, every=0.01)
    janitor.start()
    try:
        deadline = threading.Event()
        for _ in range(500):
            if len(runs) >= 3:
                break
            deadline.wait(0.01)
    finally:
        janitor.stop()
        janitor.join(2)
    assert runs[:3] == ["collect_garbage"] * 3


# -- endpoints Docker does not know ----------------------------------------------

class FakeDockerEndpoints:
    def __init__(self, known):
        self.known = known            # {network id: set of endpoint IDs}
        self.asked = []

    def endpoints(self, network_id):
        self.asked.append(network_id)
        return self.known.get(network_id)


def _aged(store, label, age, now, state="created"):
    ep = _ep(store, label, state=state)
    ep["created_at"] = now - age
    store.put("endpoints", ep["endpoint_id"], ep)
    return ep


def test_stale_endpoints_are_old_and_unknown_to_docker(store):
    from ovsgre.janitor import stale_endpoints
    _net(store)
    now = 10_000.0
    known = _aged(store, "known", 300, now, "joined")
    lost = _aged(store, "lost", 300, now)
    young = _aged(store, "young", 5, now)            # Docker may not have
    going = _aged(store, "going", 300, now, "deleting")   # it yet
    docker = FakeDockerEndpoints({NET: {known["endpoint_id"]}})
    assert stale_endpoints(store, docker, 60, now) == [lost["endpoint_id"]]
    del young, going


def test_nothing_is_stale_when_docker_cannot_tell(store):
    from ovsgre.janitor import stale_endpoints
    _net(store)
    now = 10_000.0
    _aged(store, "lost", 300, now)
    assert stale_endpoints(store, FakeDockerEndpoints({}), 60, now) == []


def test_records_without_a_creation_time_count_as_old(store):
    from ovsgre.janitor import stale_endpoints
    _net(store)
    ep = _ep(store, "old-release")
    assert "created_at" not in ep
    docker = FakeDockerEndpoints({NET: set()})
    assert stale_endpoints(store, docker, 60) == [ep["endpoint_id"]]


def test_janitor_removes_what_docker_forgot(store, fake):
    from ovsgre.driver import Driver
    from ovsgre.janitor import Janitor
    _net(store)
    driver = Driver(store, fake, 1450)
    now = __import__("time").time()
    lost = _aged(store, "lost", 300, now)
    _plugged(fake, lost)
    kept = _aged(store, "kept", 300, now, "joined")
    _plugged(fake, kept)
    janitor = Janitor(driver, FakeDockerEndpoints({NET: {kept["endpoint_id"]}}),
                      stale_after=60)
    janitor.run_once()
    assert store.get("endpoints", lost["endpoint_id"]) is None
    assert lost["host_if"] not in fake.ports
    assert store.get("endpoints", kept["endpoint_id"]) is not None
    assert kept["host_if"] in fake.ports


def test_janitor_interval_follows_stale_after():
    from ovsgre.janitor import GC_EVERY, Janitor
    assert Janitor(None, stale_after=4).every == 2
    assert Janitor(None, stale_after=0.5).every == 1.0
    assert Janitor(None, stale_after=3600).every == GC_EVERY


def test_new_endpoints_carry_their_creation_time(api, store):
    import time
    api.create_network(NET)
    before = time.time()
    api.create_endpoint(NET, make_id("ep"))
    ep = store.get("endpoints", make_id("ep"))
    assert before - 1 <= ep["created_at"] <= time.time() + 1


def test_janitor_removes_joined_endpoints_whose_sandbox_died(store, fake):
    """dockerd restarted drops the endpoints of containers that died
    meanwhile without calling the plugin; no Docker API needed to see it:
    a joined endpoint's host veth goes with its sandbox."""
    from ovsgre.reconcile import collect_garbage
    _net(store)
    now = 10_000.0
    dead = _aged(store, "dead", 300, now, "joined")
    _plugged(fake, dead)
    fake._delete_link(dead["host_if"])          # the sandbox went away
    young = _aged(store, "young", 5, now, "joined")
    _plugged(fake, young)
    fake._delete_link(young["host_if"])
    alive = _aged(store, "alive", 300, now, "joined")
    _plugged(fake, alive)
    left = _aged(store, "left", 300, now)        # created: not a sandbox
    _plugged(fake, left)
    fake._delete_link(left["host_if"])
    counts = collect_garbage(store, fake, stale_after=60, now=now)
    assert counts["dead_sandbox"] == 1
    assert store.get("endpoints", dead["endpoint_id"]) is None
    assert dead["host_if"] not in fake.ports
    for ep in (young, alive, left):
        assert store.get("endpoints", ep["endpoint_id"]) is not None
    # without stale_after (start-up's janitor call) nothing of that kind
    assert collect_garbage(store, fake)["dead_sandbox"] == 0


# -- malformed records --------------------------------------------------------

@pytest.mark.parametrize("broken", [
    lambda ep: ep.pop("host_if"),
    lambda ep: ep.update(mtu="1450"),
    lambda ep: ep.update(state="frozen"),
    lambda ep: ep.update(network_id=""),
])
def test_malformed_record_is_set_aside_and_start_up_goes_on(
        state_dir, fake, broken):
    """A record edited by hand must not stop the plugin from starting: it
    is moved to quarantine/ (named in the log), the rest is reconciled and
    the pair it named is removed as an orphan."""
    import json
    import os

    from ovsgre.store import LocalStore

    store = LocalStore(state_dir)
    _net(store)
    good, bad = _ep(store, "good"), _ep(store, "bad")
    _plugged(fake, good)
    _plugged(fake, bad)
    record = dict(bad)
    broken(record)
    path = os.path.join(state_dir, "endpoints", bad["endpoint_id"] + ".json")
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(record, fh)
    store.close()

    store = LocalStore(state_dir, validate=True)
    try:
        assert list(store.list("endpoints")) == [good["endpoint_id"]]
        reconcile(store, fake)
        assert set(fake.ports) == {good["host_if"]}
        assert bad["peer_if"] not in fake.links
        moved = os.path.join(state_dir, "quarantine",
                             "endpoints-" + bad["endpoint_id"] + ".json")
        assert not os.path.exists(path)
        with open(moved, encoding="utf-8") as fh:
            assert json.load(fh) == record
    finally:
        store.close()


def test_readers_leave_malformed_records_in_place(state_dir):
    import os

    from ovsgre.store import LocalStore

    os.makedirs(os.path.join(state_dir, "networks"))
    path = os.path.join(state_dir, "networks", "n1.json")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write('{"vlan": 1}')
    reader = LocalStore(state_dir, lock=False, validate=True)
    assert reader.list("networks") == {}
    assert os.path.exists(path)


@pytest.mark.parametrize("key", ["7.5", "7,actions=drop\n#", 0, True])
def test_network_record_with_a_bad_key_is_set_aside(state_dir, key):
    """A network key that would go into the tunnel table as text is not
    kept across restarts: the record is set aside at start-up."""
    import json
    import os

    from ovsgre.store import LocalStore

    store = LocalStore(state_dir)
    _net(store)
    record = store.get("networks", NET)
    store.close()
    path = os.path.join(state_dir, "networks", NET + ".json")
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(dict(record, key=key), fh)
    store = LocalStore(state_dir, validate=True)
    try:
        assert store.list("networks") == {}
        assert os.path.exists(os.path.join(
            state_dir, "quarantine",
            "networks-" + NET + ".json"))
    finally:
        store.close()
