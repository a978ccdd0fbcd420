"""Keep the FakeDataplane honest: same interface as the real Dataplane, and
kernel/OVSDB-like behaviour where the driver relies on it."""

import inspect

import pytest

from ovsgre.records import Endpoint

from .fakes import FakeDataplane

EP = {"network_id": "n1", "endpoint_id": "e" * 64,
      "host_if": "ovgh" + "e" * 11, "peer_if": "ovgc" + "e" * 11,
      "mac": "02:00:00:00:00:09", "mtu": 1450}
RECORD = Endpoint(**EP, state="created")


def _public(cls):
    return {name: inspect.signature(func)
            for name, func in inspect.getmembers(cls, inspect.isfunction)
            if not name.startswith("_")}


def test_fake_has_the_real_interface():
    dataplane = pytest.importorskip("ovsgre.dataplane")
    real = _public(dataplane.Dataplane)
    fake = _public(FakeDataplane)
    for name, sig in real.items():
        assert name in fake, f"FakeDataplane lacks {name}"
        assert list(fake[name].parameters) == list(sig.parameters), name
    assert "datapath" in vars(FakeDataplane())


def test_driver_and_reconcile_use_only_the_interface():
    """Every dataplane method the plugin calls exists on the fake."""
    import ovsgre.driver
    import ovsgre.reconcile
    import re
    used = set()
    for mod in (ovsgre.driver, ovsgre.reconcile):
        src = inspect.getsource(mod)
        used |= set(re.findall(r"dataplane\.([a-z_]+)\(", src))
    assert used
    assert used <= set(_public(FakeDataplane))


def test_plug_is_idempotent_and_veth_ends_die_together():
    fake = FakeDataplane()
    fake.plug(RECORD, 5)
    fake.plug(RECORD, 5)
    assert set(fake.links) == {EP["host_if"], EP["peer_if"]}
    assert fake.ports[EP["host_if"]]["tag"] == 5
    fake.remove_link(EP["peer_if"])
    assert fake.links == {}
    assert fake.host_link(RECORD) is None
    fake.plug(RECORD, 6)
    assert fake.ports[EP["host_if"]]["tag"] == 6
    fake.unplug(RECORD)
    assert fake.links == {} and fake.ports == {}


def test_failure_injection():
    fake = FakeDataplane()
    fake.fail("plug", RuntimeError("x"), times=2)
    for _ in range(2):
        with pytest.raises(RuntimeError):
            fake.plug(RECORD, 1)
    fake.plug(RECORD, 1)
    assert fake.count("plug") == 3
