"""`ovsgre serve`: the plugin under gunicorn on a unix socket.

One worker with threads, so the driver's in-process lock and caches hold for
every request.  The socket is bound with umask 0117 (mode 0660) by the
gunicorn master before any worker accepts a connection; dockerd's requests
queue in the backlog until start-up reconciliation is done.
"""

import grp
import logging
import os
import sys
import time

from gunicorn.app.base import BaseApplication

from .cluster.etcd import EtcdKV
from .cluster.kv import LocalKV
from .cluster.networks import NetworkRegistry
from .declared import DeclaredNetworks
from .dataplane import Dataplane, container_mtu, detect_local_ip
from .dataplane.tunnels import Tunnels
from .driver import Driver
from .errors import Unavailable
from .ipam import Ipam
from .protocol import create_app
from .reconcile import DockerEndpoints, Janitor, reconcile
from .store import LocalStore
from .topology import EtcdPeers, StaticPeers, Topology

LOG = logging.getLogger(__name__)

OVSDB_WAIT = 30   # seconds to wait for ovsdb-server at start-up


def setup_logging(level):
    # stdout: dockerd logs a managed plugin's stderr at level=error
    logging.basicConfig(
        level=getattr(logging, level.upper()), stream=sys.stdout,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


class Runtime:
    """Every long-lived part of the plugin, built from settings in this one
    place: start() opens the stores and OVSDB, reconciles, starts the
    background parts (peers and tunnels, the janitor, declared networks)
    and returns the WSGI app; stop() stops what start() started, the
    topology last (it leaves the cluster, revoking this host's lease).
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
        topology = None
        if settings.multi_host:
            topology = _topology(settings, store, dataplane, kv, local_ip)
            self.running.append(topology)
        mtu = container_mtu(settings.mtu, local_ip)
        LOG.info("ready: bridge %s datapath %s port type %s container MTU "
                 "%d, %s", settings.bridge, dataplane.datapath,
                 dataplane.port_type, mtu,
                 f"tunnels from {local_ip}" if topology else "single host")
        ipam = Ipam(kv, host_id)
        driver = Driver(store, dataplane, mtu, NetworkRegistry(kv, host_id),
                        topology, settings.ready_timeout, ipam,
                        settings.scope)
        janitor = Janitor(driver, DockerEndpoints(settings.docker_host),
                          settings.stale_after)
        janitor.start()
        self.running.append(janitor)
        if settings.etcd:
            declared = DeclaredNetworks(kv, settings.docker_host,
                                        settings.driver_name)
            declared.begin()
            self.running.append(declared)
        return create_app(driver, ipam)

    def stop(self):
        while self.running:
            part = self.running.pop()
            try:
                part.stop()
            except Exception as exc:   # stop the others all the same
                LOG.warning("stopping %s: %s", type(part).__name__, exc)


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


def _topology(settings, store, dataplane, kv, local_ip):
    tunnels = Tunnels(dataplane.ovsdb, settings.bridge,
                      settings.tunnel_bridge, dataplane.datapath, local_ip,
                      settings.rundir, settings.learned_macs)
    if settings.etcd:
        peers = EtcdPeers(kv, local_ip, settings.lease_ttl,
                          settings.max_peers)
    else:
        peers = StaticPeers(settings.peers, local_ip)
    topology = Topology(store, tunnels, peers)
    topology.begin()
    return topology


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


class PluginServer(BaseApplication):
    def __init__(self, settings):
        self.settings = settings
        super().__init__()

    def load_config(self):
        s = self.settings
        options = {
            "bind": [f"unix:{s.socket}"],
            "workers": 1,
            "worker_class": "ovsgre.httpworker.WholeRequestWorker",
            "threads": s.threads,
            "umask": 0o117,
            "timeout": 120,
            "graceful_timeout": 10,
            "keepalive": 30,
            "control_socket_disable": True,
            "loglevel": s.log_level,
            "proc_name": "ovsgre",
            "when_ready": self._when_ready,
            "worker_exit": self._worker_exit,
        }
        for key, value in options.items():
            self.cfg.set(key, value)

    def _when_ready(self, _server):
        if self.settings.socket_group:
            gid = grp.getgrnam(self.settings.socket_group).gr_gid
            os.chown(self.settings.socket, 0, gid)
        LOG.info("listening on %s", self.settings.socket)

    def load(self):
        self.runtime = Runtime(self.settings)
        return self.runtime.start()

    def _worker_exit(self, _server, _worker):
        """Stop the background parts; the topology leaves the cluster at
        once (lease revoked) on a clean stop."""
        runtime = getattr(self, "runtime", None)
        if runtime is not None:
            runtime.stop()


def serve(settings):
    setup_logging(settings.log_level)
    os.makedirs(os.path.dirname(settings.socket) or ".", mode=0o755,
                exist_ok=True)
    os.makedirs(settings.state_dir, mode=0o700, exist_ok=True)
    PluginServer(settings).run()
