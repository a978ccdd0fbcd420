"""`HostProbe`: the one object `collect` asks about this host; each method
is one read of one subsystem's reader module, bounded by the timeout, and
either returns what it read or raises ProbeError.  Tests give `collect` a
fake with the same methods."""

import threading

from ..definitions import HOSTS_PREFIX
from . import cluster, kernel, localstore, ovsdb, vswitchd
from .docker import DockerReader

DEFAULT_TIMEOUT = 3.0


class HostProbe:
    """Read-only access to this host."""

    def __init__(self, settings, timeout=DEFAULT_TIMEOUT):
        self.settings = settings
        self.timeout = timeout
        self._docker = None   # made on first use, by whichever thread
        self._docker_lock = threading.Lock()

    def _dockerd(self):
        with self._docker_lock:
            if self._docker is None:
                self._docker = DockerReader(self.settings.docker_host,
                                            self.timeout)
            return self._docker

    def close(self):
        if self._docker is not None:
            self._docker.close()

    # the plugin's local store
    def store(self):
        return localstore.read_store(self.settings.state_dir)

    # OVSDB
    def ovsdb(self):
        return ovsdb.read_ovsdb(self.settings.ovsdb,
                                min(self.timeout, self.settings.ovsdb_timeout))

    # ovs-vswitchd and its datapath
    def vswitchd_ctl_candidates(self):
        return vswitchd.ctl_candidates(self.settings.rundir)

    def vswitchd(self):
        return vswitchd.answering(self.settings.rundir, self.timeout)

    def upcalls(self, ctl):
        return vswitchd.upcalls(ctl, self.timeout)

    def vswitchd_started(self):
        return vswitchd.started(self.settings.rundir)

    def dump_flows(self, bridge):
        return vswitchd.dump_flows(self.settings.rundir, bridge, self.timeout)

    def ofproto_trace(self, bridge, flow):
        ctl = self.vswitchd()["ctl"]
        return vswitchd.ofproto_trace(ctl, bridge, flow, self.timeout)

    def fdb(self, bridge):
        return vswitchd.fdb(self.vswitchd()["ctl"], bridge, self.timeout)

    def kernel_module(self):
        return vswitchd.kernel_module()

    def datapath(self, existing="", module=None):
        return vswitchd.choose_datapath(
            self.settings.datapath, existing,
            lambda: module or self.kernel_module())

    # kernel links, addresses and offload
    def links(self):
        return kernel.links()

    def addresses(self):
        return kernel.addresses()

    def tx_checksum(self, ifname):
        return kernel.tx_checksum(ifname)

    def tx_checksum_in(self, netns_path, ifindex):
        return kernel.tx_checksum_in(netns_path, ifindex, self.timeout)

    def local_ip(self):
        return kernel.local_ip(self.settings)

    def ping(self, peers, source=""):
        return kernel.ping(peers, source, self.timeout)

    # the cluster's records in etcd
    def etcd_hosts(self):
        """Host records under /ovsgre/hosts/ as other hosts wrote them."""
        return self.etcd_list(HOSTS_PREFIX)

    def etcd_list(self, prefix):
        return cluster.etcd_list(self.settings, self.timeout, prefix)

    # dockerd
    def docker(self):
        return self._dockerd().names()

    def neighbour(self, container_id, ip):
        """The container's ARP entry for ip ("" when it has none)."""
        return kernel.neighbour(self.container_netns(container_id), ip,
                                self.timeout)

    def container(self, ref):
        return self._dockerd().inspect(ref)

    def container_netns(self, container_id):
        return self._dockerd().container_netns(container_id)
