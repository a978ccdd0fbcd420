"""Where the peers come from: the static `--peers` list, or etcd (this host
registered under a lease, the others watched).  Each source calls back with
the set of peer addresses, and (etcd only) with which hosts hold each
network, which is where that network's broadcasts need to go.  Records
written by other hosts are parsed before use; a malformed one is skipped
and logged once.
"""

import ipaddress
import logging
import socket

from . import __version__
from .cluster.etcd import Registration, Watcher
from .cluster.networks import NETS
from .cluster.records import (Malformed, MalformedLog, parse_host,
                              parse_network)
from .config import DEFAULTS
from .definitions import HOSTS_PREFIX

LOG = logging.getLogger(__name__)

MAX_PEERS = DEFAULTS["max_peers"]


class StaticPeers:
    def __init__(self, peers, local_ip):
        self.peers = set(peers) - {local_ip}

    def start(self, on_change, on_holders=None):
        on_change(set(self.peers))   # holders stay unknown: flood to all

    def stop(self):
        pass


class EtcdPeers:
    """Registers this host under a lease and watches the others."""

    def __init__(self, kv, local_ip, ttl, max_peers=MAX_PEERS):
        self.local_ip = local_ip
        self.max_peers = max_peers
        self.malformed = MalformedLog(LOG, "host")
        self._over_limit = None
        info = {"ip": local_ip, "hostname": socket.gethostname(),
                "version": __version__}
        self.registration = Registration(kv, HOSTS_PREFIX + local_ip, info,
                                         ttl, on_trouble=self._trouble)
        self.watcher = Watcher(kv, HOSTS_PREFIX, self._changed)
        self.networks = Watcher(kv, NETS, self._networks_changed)
        self.bad_networks = MalformedLog(LOG, "network")
        self._on_change = None
        self._on_holders = None

    def start(self, on_change, on_holders=None):
        self._on_change = on_change
        self._on_holders = on_holders
        self.registration.start()
        self.watcher.start()
        if on_holders is not None:
            self.networks.start()

    def _changed(self, items):
        self._on_change(self.peers_in(items))

    def peers_in(self, items):
        """Peer addresses (text) of the host records that parse, at most
        max_peers of them (lowest addresses first, so every host picks
        the same ones); the others are left out and logged once."""
        peers = set()
        for path, record in items.items():
            try:
                peers.add(parse_host(path, record, HOSTS_PREFIX).ip)
            except Malformed as exc:
                self.malformed.skip(path, exc)
        self.malformed.keep_only(
            set(items) - {HOSTS_PREFIX + str(ip) for ip in peers})
        peers.discard(ipaddress.ip_address(self.local_ip))
        kept = sorted(peers)[:self.max_peers]
        if len(peers) > self.max_peers:
            if self._over_limit != len(peers):
                LOG.warning("%d peers registered in etcd, more than "
                            "--max-peers %d: tunnels only to the first %d "
                            "(lowest addresses); raise --max-peers if "
                            "they are all yours", len(peers),
                            self.max_peers, self.max_peers)
            self._over_limit = len(peers)
        else:
            self._over_limit = None
        return {str(ip) for ip in kept}

    def _networks_changed(self, items):
        self._on_holders(self.holders_in(items))

    def holders_in(self, items):
        """{gre key: host addresses holding that network} from the
        network records that parse (the others are skipped, logged once):
        where each network's broadcasts need to go."""
        holders, bad = {}, set()
        for path, record in items.items():
            try:
                net = parse_network(path, record, NETS)
            except Malformed as exc:
                self.bad_networks.skip(path, exc)
                bad.add(path)
                continue
            holders[net.key] = frozenset(net.hosts)
        self.bad_networks.keep_only(bad)
        return holders

    def _trouble(self):
        self.watcher.kick()   # a watch on a dead member may hang silently

    def stop(self):
        self.registration.stop()   # revoke first: peers drop us at once
        self.watcher.stop()
        self.networks.stop()
