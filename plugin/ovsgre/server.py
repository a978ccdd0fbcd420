"""`ovsgre serve`: the plugin under gunicorn on a unix socket.

One worker with threads, so the driver's in-process lock and caches hold for
every request.  The socket is bound with umask 0117 (mode 0660) by the
gunicorn master before any worker accepts a connection; dockerd's requests
queue in the backlog until start-up reconciliation is done.
"""

import grp
import logging
import os
import time

from gunicorn.app.base import BaseApplication

from .dataplane import Dataplane, container_mtu
from .driver import Driver
from .errors import Unavailable
from .protocol import create_app
from .reconcile import reconcile
from .store import LocalStore

LOG = logging.getLogger(__name__)

OVSDB_WAIT = 30   # seconds to wait for ovsdb-server at start-up


def setup_logging(level):
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def build_app(settings):
    """Open the store and OVSDB, reconcile, return the WSGI app."""
    store = LocalStore(settings.state_dir)
    dataplane = _connect(settings)
    reconcile(store, dataplane)
    mtu = container_mtu(settings.mtu)
    LOG.info("ready: bridge %s datapath %s container MTU %d",
             settings.bridge, dataplane.datapath, mtu)
    return create_app(Driver(store, dataplane, mtu))


def _connect(settings):
    deadline = time.monotonic() + OVSDB_WAIT
    while True:
        try:
            return Dataplane(settings.ovsdb, settings.bridge,
                             settings.datapath, settings.ovsdb_timeout)
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
            "worker_class": "gthread",
            "threads": s.threads,
            "umask": 0o117,
            "timeout": 120,
            "graceful_timeout": 10,
            "keepalive": 30,
            "control_socket_disable": True,
            "loglevel": s.log_level,
            "proc_name": "ovsgre",
            "when_ready": self._when_ready,
        }
        for key, value in options.items():
            # gunicorn < 25.1 has no control socket (nor its setting)
            if key in self.cfg.settings:
                self.cfg.set(key, value)

    def _when_ready(self, _server):
        if self.settings.socket_group:
            gid = grp.getgrnam(self.settings.socket_group).gr_gid
            os.chown(self.settings.socket, 0, gid)
        LOG.info("listening on %s", self.settings.socket)

    def load(self):
        return build_app(self.settings)


def serve(settings):
    setup_logging(settings.log_level)
    os.makedirs(os.path.dirname(settings.socket) or ".", mode=0o755,
                exist_ok=True)
    os.makedirs(settings.state_dir, mode=0o700, exist_ok=True)
    PluginServer(settings).run()
