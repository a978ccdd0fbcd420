"""Networks declared once for the whole cluster.

`ovsgre network create NAME --subnet ...` records the network under
/ovsgre/declared/NAME in etcd.  On every host a background thread of the
plugin keeps Docker in line with those records through the Docker API:
it creates the Docker network (driver and IPAM driver ovsgre, labelled
ovsgre.declared=NAME) where it is missing and removes labelled networks
whose record is gone.  A host that joins later gets every network.

It never runs inside a request Docker is waiting on (it is its own thread,
and the Docker calls it makes come back to the plugin's other threads), and
it does not start until START_DELAY after start-up: dockerd may be waiting
for this plugin while it restores its own state (moby#32815).
"""

import logging
import re
import threading

from .cluster.etcd import Watcher
from .errors import InvalidRequest

LOG = logging.getLogger(__name__)

PREFIX = "/ovsgre/declared/"
LABEL = "ovsgre.declared"
START_DELAY = 5.0
RETRY = 15.0
DOCKER_TIMEOUT = 30
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def check_name(name):
    if not _NAME.fullmatch(name or ""):
        raise InvalidRequest(f"network name {name!r}: 1-64 letters, digits, "
                             "'_', '.', '-', starting with a letter or digit")
    return name


class DeclaredNetworks(threading.Thread):
    def __init__(self, kv, docker_host, driver_name):
        super().__init__(name="declared networks", daemon=True)
        self.kv = kv
        self.docker_host = docker_host
        self.driver_name = driver_name
        self._cond = threading.Condition()
        self._wanted = None       # {name: record}, None until first read
        self._dirty = False
        self._halt = False
        self.watcher = Watcher(kv, PREFIX, self._changed)

    def begin(self):
        timer = threading.Timer(START_DELAY, self._start_all)
        timer.daemon = True
        timer.start()

    def _start_all(self):
        self.watcher.start()
        self.start()

    def _changed(self, items):
        with self._cond:
            self._wanted = {k[len(PREFIX):]: v for k, v in items.items()}
            self._dirty = True
            self._cond.notify_all()

    def run(self):
        failed = False
        while True:
            with self._cond:
                # a failed attempt (Docker down, containers still attached)
                # is retried after RETRY; otherwise only changes wake us
                self._cond.wait_for(lambda: self._halt or self._dirty,
                                    timeout=RETRY if failed else None)
                if self._halt:
                    return
                wanted = self._wanted
                self._dirty = False
            if wanted is None:
                continue
            try:
                failed = not self._apply(wanted)
            except Exception as exc:
                LOG.warning("declared networks not applied yet: %s", exc)
                failed = True

    def _apply(self, wanted):
        """Make Docker's labelled networks match; True when all done."""
        import docker   # only here: the plugin itself never needs it
        client = docker.DockerClient(base_url=self.docker_host,
                                     timeout=DOCKER_TIMEOUT)
        try:
            have = {n.attrs["Labels"].get(LABEL): n for n in
                    client.networks.list(filters={"label": LABEL})}
            done = True
            for name, record in sorted(wanted.items()):
                if name not in have:
                    done &= self._create(client, name, record)
            for name, network in have.items():
                if name not in wanted:
                    done &= self._remove(network, name)
            return done
        finally:
            client.close()

    def _create(self, client, name, record):
        import docker
        pools = [docker.types.IPAMPool(subnet=s) for s in record["subnets"]]
        ipam = docker.types.IPAMConfig(
            driver=self.driver_name, pool_configs=pools,
            options={"ovsgre.network": name})
        options = dict(record.get("options") or {}, **{"ovsgre.network":
                                                       name})
        try:
            client.networks.create(
                name, driver=self.driver_name, ipam=ipam, options=options,
                enable_ipv6=bool(record.get("ipv6")),
                internal=bool(record.get("internal")),
                labels={LABEL: name}, check_duplicate=True)
        except docker.errors.APIError as exc:
            LOG.warning("declared network %s not created: %s", name, exc)
            return False
        LOG.info("created declared network %s", name)
        return True

    @staticmethod
    def _remove(network, name):
        import docker
        try:
            network.remove()
        except docker.errors.APIError as exc:  # containers still attached
            LOG.warning("declared network %s not removed yet: %s", name,
                        exc)
            return False
        LOG.info("removed declared network %s", name)
        return True

    def stop(self):
        with self._cond:
            self._halt = True
            self._cond.notify_all()
        self.watcher.stop()
