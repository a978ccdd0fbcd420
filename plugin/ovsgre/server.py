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

from gunicorn.app.base import BaseApplication

from .runtime import Runtime

LOG = logging.getLogger(__name__)


def setup_logging(level):
    # stdout: dockerd logs a managed plugin's stderr at level=error
    logging.basicConfig(
        level=getattr(logging, level.upper()), stream=sys.stdout,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


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
        """Stop the background parts; this host leaves the cluster at
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
