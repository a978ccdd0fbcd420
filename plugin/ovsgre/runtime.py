"""The composition root: every long-lived part of the plugin is built,
started and stopped here, and nowhere else.
"""

import logging
import time

from .cluster.etcd import EtcdKV
from .cluster.kv import LocalKV
from .cluster.networks import NetworkRegistry
from .dataplane import Dataplane, container_mtu, detect_local_ip
from .dataplane.ovsdb import read_counters
from .dataplane.tunnels import Tunnels
from .declared_networks import DeclaredNetworks
from .docker_api import DockerEndpoints
from .driver import Driver
from .errors import Unavailable
from .hoststate.docker import DockerReader
from .ipam import Ipam
from .janitor import Janitor
from .metrics import Metrics, StateCollector
from .peers import EtcdPeers, StaticPeers
from .protocol import create_app
from .reconcile import reconcile
from .records import HostRecords
from .store import LocalStore
from .tunnel_sync import TunnelSync

LOG = logging.getLogger(__name__)

OVSDB_WAIT = 30   # seconds to wait for ovsdb-server at start-up


class Runtime:
    """Every long-lived part of the plugin, built from settings in this one
    place: start() opens the stores and OVSDB, reconciles, starts the
    background parts (peers and the tunnel sync, the janitor, declared
    networks) and returns the WSGI app; stop() stops what start() started,
    in reverse order: the tunnel sync last (its peer source leaves the
    cluster, revoking this host's lease).
    Never waits for etcd: it may be down, and the registration and watch
    threads catch up when it returns."""

    def __init__(self, settings):
        self.settings = settings
        self.running = []    # started parts, each with stop()

    def start(self):
        settings = self.settings
        store = LocalStore(settings.state_dir, validate=True)
        dataplane = _connect(settings)
        reconcile(store, dataplane)
        local_ip = _local_ip(settings)
        kv = _cluster_kv(settings)
        host_id = local_ip or "local"
        tunnel_sync = None
        if settings.multi_host:
            tunnel_sync = _tunnel_sync(settings, store, dataplane, kv,
                                       local_ip)
            self.running.append(tunnel_sync)
        mtu = container_mtu(settings.mtu, local_ip)
        LOG.info("ready: bridge %s datapath %s port type %s container MTU "
                 "%d, %s", settings.bridge, dataplane.datapath,
                 dataplane.port_type, mtu,
                 f"tunnels from {local_ip}" if tunnel_sync else "single host")
        ipam = Ipam(kv, host_id)
        driver = Driver(store, dataplane, mtu, NetworkRegistry(kv, host_id),
                        tunnel_sync, settings.ready_timeout, ipam,
                        settings.scope)
        metrics = _metrics(settings, store, tunnel_sync)
        janitor = Janitor(driver, DockerEndpoints(settings.docker_host),
                          settings.stale_after, metrics=metrics)
        janitor.start()
        self.running.append(janitor)
        if settings.etcd:
            declared = DeclaredNetworks(kv, settings.docker_host,
                                        settings.driver_name)
            declared.begin()
            self.running.append(declared)
        if metrics is not None:
            _serve_metrics(metrics, settings.metrics_address)
            self.running.append(metrics)
        return create_app(driver, ipam, metrics)

    def stop(self):
        while self.running:
            part = self.running.pop()
            try:
                part.stop()
            except Exception as exc:   # stop the others all the same
                LOG.warning("stopping %s: %s", type(part).__name__, exc)


def _metrics(settings, store, tunnel_sync):
    """The metrics registry, when --metrics-address asks for one; what is
    read at scrape time is read through the plugin's own store, OVSDB
    client module and the Docker reader of `ovsgre status`."""
    if not settings.metrics_address:
        return None
    timeout = min(settings.ovsdb_timeout, 5)
    registration = getattr(getattr(tunnel_sync, "peer_source", None),
                           "registration", None)
    metrics = Metrics()
    metrics.watch(StateCollector(
        HostRecords(store),
        counters=lambda: read_counters(settings.ovsdb, timeout),
        names=DockerReader(settings.docker_host, timeout).names,
        tunnel_sync=tunnel_sync,
        etcd_up=registration.registered.is_set if registration else None))
    return metrics


def _serve_metrics(metrics, address):
    try:
        metrics.serve(address)
    except OSError as exc:
        raise Unavailable(f"cannot serve metrics at {address} "
                          f"(--metrics-address): {exc}") from exc


def _local_ip(settings):
    local_ip = settings.local_ip or (
        detect_local_ip(settings.tunnel_targets())
        if settings.multi_host else "")
    if settings.multi_host and not local_ip:
        raise Unavailable("cannot tell the tunnel source address: set "
                          "--local-ip")
    return local_ip


def _cluster_kv(settings):
    if not settings.etcd:
        return LocalKV(settings.state_dir)
    return EtcdKV.from_settings(settings)


def _tunnel_sync(settings, store, dataplane, kv, local_ip):
    tunnels = Tunnels(dataplane.ovsdb, settings.bridge,
                      settings.tunnel_bridge, dataplane.datapath, local_ip,
                      settings.rundir, settings.learned_macs)
    if settings.etcd:
        peers = EtcdPeers(kv, local_ip, settings.lease_ttl,
                          settings.max_peers)
    else:
        peers = StaticPeers(settings.peers, local_ip)
    sync = TunnelSync(store, tunnels, peers)
    sync.begin()
    return sync


def _connect(settings):
    deadline = time.monotonic() + OVSDB_WAIT
    while True:
        try:
            return Dataplane(settings.ovsdb, settings.bridge,
                             settings.datapath, settings.ovsdb_timeout,
                             settings.port_type)
        except Unavailable as exc:
            if time.monotonic() > deadline:
                raise
            LOG.warning("%s; retrying", exc)
            time.sleep(1)
