"""Which datapath auto picks (detect_datapath), and the container MTU."""

import pytest

from ovsgre import dataplane
from ovsgre.dataplane import container_mtu, detect_datapath


class Host:
    """The module's state (dataplane.openvswitch_module), and what
    modprobe would do."""

    def __init__(self, loaded=False, loadable=False, builtin=False):
        self.loaded, self.loadable, self.builtin = loaded, loadable, builtin
        self.modprobes = 0

    def module(self):
        if self.loaded:
            return "loaded"
        if self.builtin:
            return "builtin"
        return "available" if self.loadable else "absent"

    def run(self, argv, **kwargs):
        assert argv[:1] == ["modprobe"] and "openvswitch" in argv
        self.modprobes += 1
        self.loaded = self.loaded or self.loadable


@pytest.fixture
def host(monkeypatch):
    h = Host()
    monkeypatch.setattr(dataplane, "openvswitch_module", h.module)
    monkeypatch.setattr(dataplane.subprocess, "run", h.run)
    return h


@pytest.mark.parametrize("wanted", ["system", "netdev"])
def test_explicit_datapath_is_obeyed_without_probing(host, wanted):
    host.loaded = wanted == "netdev"
    assert detect_datapath(wanted, "netdev" if wanted == "system"
                           else "system") == wanted
    assert host.modprobes == 0


def test_loaded_module_means_system(host):
    host.loaded = True
    assert detect_datapath("auto") == "system"
    assert detect_datapath("auto", "system") == "system"
    assert host.modprobes == 0


def test_loadable_module_is_loaded_and_used(host):
    host.loadable = True
    assert detect_datapath("auto") == "system"
    assert host.modprobes == 1


def test_builtin_module_means_system_without_modprobe(host):
    """Built into the kernel, openvswitch has no /sys/module entry."""
    host.builtin = True
    assert detect_datapath("auto") == "system"
    assert host.modprobes == 0


def test_no_module_means_netdev(host):
    assert detect_datapath("auto") == "netdev"
    assert host.modprobes == 1


@pytest.mark.parametrize("loaded", [False, True])
def test_existing_userspace_bridge_stays_userspace(host, loaded):
    """A restart never moves a running bridge's ports to the kernel
    datapath because the module appeared."""
    host.loaded = loaded
    host.loadable = True
    assert detect_datapath("auto", "netdev") == "netdev"
    assert host.modprobes == 0


def test_existing_kernel_bridge_kept_while_the_module_loads(host):
    host.loadable = True
    assert detect_datapath("auto", "system") == "system"
    assert host.modprobes == 1


def test_existing_kernel_bridge_without_module_becomes_userspace(host):
    """A system bridge without the module forwards nothing."""
    assert detect_datapath("auto", "system") == "netdev"
    assert host.modprobes == 1


def test_unknown_existing_type_is_no_hint(host):
    assert detect_datapath("auto", "dpdk") == "netdev"
    assert host.modprobes == 1


def test_modprobe_missing_is_netdev(monkeypatch):
    monkeypatch.setattr(dataplane.os.path, "isdir", lambda p: False)

    def no_modprobe(*args, **kwargs):
        raise FileNotFoundError("modprobe")
    monkeypatch.setattr(dataplane.subprocess, "run", no_modprobe)
    assert detect_datapath("auto") == "netdev"


# -- container MTU -------------------------------------------------------------

def test_container_mtu_is_underlay_minus_gre_overhead(monkeypatch):
    seen = []

    def underlay(local_ip=""):
        seen.append(local_ip)
        return 1500
    monkeypatch.setattr(dataplane, "underlay_mtu", underlay)
    assert container_mtu(0, "198.18.0.2") == 1458
    assert seen == ["198.18.0.2"]
    monkeypatch.setattr(dataplane, "underlay_mtu", lambda local_ip="": 9000)
    assert container_mtu(0) == 8958


def test_configured_mtu_wins(monkeypatch):
    def underlay(local_ip=""):
        raise AssertionError("not asked when --mtu is set")
    monkeypatch.setattr(dataplane, "underlay_mtu", underlay)
    assert container_mtu(1400) == 1400
