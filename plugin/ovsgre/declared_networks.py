"""Networks declared once for the whole cluster.

`ovsgre network create NAME --subnet ...` records the network under
/ovsgre/declared/NAME in etcd.  On every host a background thread of the
plugin keeps Docker in line with those records through the Docker API:
it creates the Docker network (driver and IPAM driver ovsgre, labelled
ovsgre.declared=NAME and ovsgre.declared.rev=a hash of the record) where it
is missing, re-creates one whose record changed (a `network rm` and
`create` with other settings, even when both arrive as one watch update),
and removes labelled networks whose record is gone.  A network that
containers still use is left alone (logged) and retried every RETRY
seconds.  Besides etcd events, a full pass runs every RESYNC seconds, so a
Docker network removed by hand comes back.  A host that joins later gets
every network.

It never runs inside a request Docker is waiting on (it is its own thread,
and the Docker calls it makes come back to the plugin's other threads), and
it does not start until START_DELAY after start-up: dockerd may be waiting
for this plugin while it restores its own state (moby#32815).
"""

import hashlib
import json
import logging
import threading

from . import docker_api
from .cluster.etcd import Watcher
from .cluster.records import Malformed, MalformedLog, parse_declared
from .definitions import valid_name
from .errors import InvalidRequest

LOG = logging.getLogger(__name__)

PREFIX = "/ovsgre/declared/"
LABEL = "ovsgre.declared"
REV_LABEL = "ovsgre.declared.rev"
START_DELAY = 5.0
RETRY = 15.0
RESYNC = 60.0     # seconds between full passes when nothing happens
DOCKER_TIMEOUT = 30


def check_name(name):
    if not valid_name(name):
        raise InvalidRequest(f"network name {name!r}: 1-64 letters, digits, "
                             "'_', '.', '-', starting with a letter or digit")
    return name


def revision(record):
    """Short hash of a declared record, kept as a label on its network."""
    data = json.dumps(record, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(data.encode()).hexdigest()[:16]


def _outdated(network, name, declared):
    """Whether a labelled Docker network no longer matches its record."""
    attrs = network.attrs
    rev = (attrs.get("Labels") or {}).get(REV_LABEL)
    if rev:
        return rev != revision(declared.record)
    # created before the revision label: compare what Docker shows
    subnets = sorted(c.get("Subnet") for c in
                     (attrs.get("IPAM") or {}).get("Config") or [])
    options = attrs.get("Options") or {}
    wanted = dict(declared.options, **{"ovsgre.network": name})
    return (subnets != sorted(declared.subnets) or
            bool(attrs.get("Internal")) != declared.internal or
            bool(attrs.get("EnableIPv6")) != declared.ipv6 or
            any(options.get(k) != v for k, v in wanted.items()))


class DeclaredNetworks(threading.Thread):
    def __init__(self, kv, docker_host, driver_name):
        super().__init__(name="declared networks", daemon=True)
        self.kv = kv
        self.docker_host = docker_host
        self.driver_name = driver_name
        self._cond = threading.Condition()
        self._wanted = None       # {name: Declared}, None until first read
        self._dirty = False
        self._halt = False
        self._timer = None
        self.malformed = MalformedLog(LOG, "declared network")
        self.watcher = Watcher(kv, PREFIX, self._changed)

    def begin(self):
        self._timer = threading.Timer(START_DELAY, self._start_all)
        self._timer.daemon = True
        self._timer.start()

    def _start_all(self):
        with self._cond:
            if self._halt:
                return
            self.watcher.start()
            self.start()

    def _changed(self, items):
        wanted = {}
        for path, record in items.items():
            try:
                declared = parse_declared(path, record, PREFIX)
            except Malformed as exc:     # the others go on
                self.malformed.skip(path, exc)
                continue
            wanted[declared.name] = declared
        self.malformed.keep_only(set(items) - {PREFIX + n for n in wanted})
        with self._cond:
            self._wanted = wanted
            self._dirty = True
            self._cond.notify_all()

    def run(self):
        failed = False
        while True:
            with self._cond:
                # changes wake us; a failed attempt (Docker down, containers
                # still attached) is retried after RETRY; and a full pass
                # every RESYNC repairs what changed in Docker alone
                self._cond.wait_for(lambda: self._halt or self._dirty,
                                    timeout=RETRY if failed else RESYNC)
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
        client = docker_api.client(self.docker_host, DOCKER_TIMEOUT)
        try:
            have = {n.attrs["Labels"].get(LABEL): n for n in
                    client.networks.list(filters={"label": LABEL})}
            done = True
            for name, declared in sorted(wanted.items()):
                network = have.get(name)
                if network is not None and _outdated(network, name,
                                                     declared):
                    if not self._remove_outdated(network, name):
                        done = False
                        continue
                    network = None
                if network is None:
                    done &= self._create(client, name, declared)
            for name, network in have.items():
                if name not in wanted:
                    done &= self._remove(network, name)
            return done
        finally:
            client.close()

    def _create(self, client, name, declared):
        import docker
        pools = [docker.types.IPAMPool(subnet=s) for s in declared.subnets]
        ipam = docker.types.IPAMConfig(
            driver=self.driver_name, pool_configs=pools,
            options={"ovsgre.network": name})
        options = dict(declared.options, **{"ovsgre.network": name})
        try:
            client.networks.create(
                name, driver=self.driver_name, ipam=ipam, options=options,
                enable_ipv6=declared.ipv6, internal=declared.internal,
                labels={LABEL: name,
                        REV_LABEL: revision(declared.record)},
                check_duplicate=True)
        except docker.errors.APIError as exc:
            LOG.warning("declared network %s not created: %s", name, exc)
            return False
        LOG.info("created declared network %s", name)
        return True

    def _remove_outdated(self, network, name):
        """Remove a network whose record changed, unless containers use it
        (then False: the caller retries later)."""
        import docker
        try:
            network.reload()    # the listing leaves out the containers
        except docker.errors.NotFound:
            return True
        except docker.errors.APIError as exc:
            LOG.warning("declared network %s not checked: %s", name, exc)
            return False
        containers = network.attrs.get("Containers") or {}
        if containers:
            users = ", ".join(sorted(c.get("Name") or cid[:12]
                                     for cid, c in containers.items()))
            LOG.warning("declared network %s changed in etcd, but "
                        "containers still use the old one on this host "
                        "(%s): kept; re-created once they leave (checked "
                        "every %.0f s)", name, users, RETRY)
            return False
        LOG.info("declared network %s changed in etcd: re-creating it", name)
        return self._remove(network, name)

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
        """Stop the delayed start, the watch and the thread."""
        with self._cond:
            self._halt = True
            self._cond.notify_all()
            if self._timer is not None:
                self._timer.cancel()
            if self.watcher.is_alive():
                self.watcher.stop()
        self.watcher.stop()
