"""Every real part and every fake has what its protocol in
ovsgre.interfaces says: the same methods with the same parameters (a real
class may add trailing parameters with defaults, e.g. etcd's lease), and
the same attributes."""

import inspect
import re

import pytest

from ovsgre import interfaces
from ovsgre.cluster.etcd import EtcdKV
from ovsgre.cluster.kv import LocalKV
from ovsgre.cluster.networks import NetworkRegistry
from ovsgre.dataplane import Dataplane
from ovsgre.dataplane.tunnels import Tunnels
from ovsgre.docker_api import DockerEndpoints
from ovsgre.peers import EtcdPeers, StaticPeers
from ovsgre.store import LocalStore
from ovsgre.tunnel_sync import TunnelSync

from . import fakes
from .test_reconcile import FakeDockerEndpoints

IMPLEMENTATIONS = [
    (interfaces.Dataplane, [Dataplane, fakes.FakeDataplane]),
    (interfaces.RecordStore, [LocalStore]),
    (interfaces.KeyValueStore, [LocalKV, EtcdKV, fakes.InterleavingKV]),
    (interfaces.NetworkRegistry, [NetworkRegistry, fakes.FakeRegistry]),
    (interfaces.TunnelPorts, [Tunnels, fakes.FakeTunnels]),
    (interfaces.PeerSource, [StaticPeers, EtcdPeers, fakes.FakePeers]),
    (interfaces.TunnelSync, [TunnelSync, fakes.FakeTunnelSync]),
    (interfaces.DockerEndpoints, [DockerEndpoints, FakeDockerEndpoints]),
]

CASES = [(proto, cls) for proto, classes in IMPLEMENTATIONS
         for cls in classes]


def _methods(cls):
    return {name: inspect.signature(func)
            for name, func in inspect.getmembers(cls, inspect.isfunction)
            if not name.startswith("_")}


def _protocol_methods(proto):
    return {name: sig for name, sig in _methods(proto).items()
            if name in vars(proto)}


def _attributes(cls):
    """Names a class sets on its instances or on itself."""
    names = set()
    for klass in inspect.getmro(cls):
        if klass is object or klass.__module__ == "threading":
            continue
        names |= set(vars(klass))
        names |= set(re.findall(r"self\.([a-z_]+)\s*=",
                                inspect.getsource(klass)))
    return names


@pytest.mark.parametrize("proto,cls", CASES,
                         ids=[f"{p.__name__}-{c.__name__}" for p, c in CASES])
def test_implementation_matches_its_protocol(proto, cls):
    have = _methods(cls)
    for name, sig in _protocol_methods(proto).items():
        assert name in have, f"{cls.__name__} lacks {name}"
        wanted = list(sig.parameters)
        params = list(have[name].parameters.values())
        assert [p.name for p in params[:len(wanted)]] == wanted, \
            f"{cls.__name__}.{name}{have[name]} is not {name}{sig}"
        assert all(p.default is not inspect.Parameter.empty
                   for p in params[len(wanted):]), \
            f"{cls.__name__}.{name} has extra required parameters"
    for name in getattr(proto, "__annotations__", {}):
        assert name in _attributes(cls), f"{cls.__name__} lacks .{name}"


def test_every_protocol_has_an_implementation_checked():
    declared = {obj for obj in vars(interfaces).values()
                if inspect.isclass(obj) and obj.__module__ ==
                interfaces.__name__}
    assert declared == {proto for proto, _ in IMPLEMENTATIONS}


def test_the_plugin_calls_only_what_the_protocols_declare():
    """Every method the driver, reconciler and janitor call on the
    dataplane, and the tunnel sync on its tunnels, is in the protocol."""
    import ovsgre.driver
    import ovsgre.janitor
    import ovsgre.reconcile
    import ovsgre.tunnel_sync
    used = set()
    for mod in (ovsgre.driver, ovsgre.reconcile, ovsgre.janitor):
        # calls, and methods passed on to be called (no parenthesis)
        used |= set(re.findall(r"dataplane\.([a-z_]+)\b(?!\s*=)",
                               inspect.getsource(mod)))
    assert used and used <= set(_protocol_methods(interfaces.Dataplane))
    used = set(re.findall(r"self\.tunnels\.([a-z_]+)\(",
                          inspect.getsource(ovsgre.tunnel_sync)))
    assert used and used <= set(_protocol_methods(interfaces.TunnelPorts))
