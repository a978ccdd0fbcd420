"""Run `ovsgre serve` inside a test host's network namespace and talk to it.

The plugin is started the way the README tells users (`ovsgre serve` with
OVSGRE_* settings), only with per-test paths.
"""

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

from .datapath import DATAPATH


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=30):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.unix_path)


def call(sock_path, method, body=None, raw=None, timeout=30):
    """POST /method like dockerd does (no Content-Type); (status, json)."""
    conn = UnixHTTPConnection(sock_path, timeout=timeout)
    data = raw if raw is not None else json.dumps(body or {}).encode()
    try:
        conn.request("POST", "/" + method, body=data, headers={
            "Accept": "application/vnd.docker.plugins.v1.2+json"})
        resp = conn.getresponse()
        text = resp.read()
    finally:
        conn.close()
    try:
        return resp.status, json.loads(text)
    except ValueError:
        return resp.status, text.decode(errors="replace")


def ovsgre_argv():
    """The console script beside this Python (as users run it), else -m."""
    exe = os.path.join(os.path.dirname(sys.executable), "ovsgre")
    if os.access(exe, os.X_OK):
        return [exe]
    exe = shutil.which("ovsgre")
    return [exe] if exe else [sys.executable, "-m", "ovsgre"]


# The run's datapath (datapath.py), never `auto`: the test beds have no
# openvswitch module, and inside the test VM the kernel datapath is chosen
# on purpose.  Tests that want another datapath say so in extra_env.
DEFAULT_DATAPATH = DATAPATH


class PluginProcess:
    """`ovsgre serve` in netns.  socket_path: where it listens (default
    <workdir>/ovsgre.sock); the e2e harness passes the host's docker
    plugins dir, which its dockerd sees as /run/docker/plugins."""

    def __init__(self, netns, workdir, ovsdb_remote, bridge="br-ovsgre",
                 extra_env=None, socket_path=None):
        self.netns = netns
        self.workdir = workdir
        self.socket = socket_path or os.path.join(workdir, "ovsgre.sock")
        self.state_dir = os.path.join(workdir, "state")
        self.log_path = os.path.join(workdir, "ovsgre.log")
        self.env = {
            "OVSGRE_SOCKET": self.socket,
            "OVSGRE_OVSDB": ovsdb_remote,
            "OVSGRE_BRIDGE": bridge,
            "OVSGRE_STATE_DIR": self.state_dir,
            "OVSGRE_LOG_LEVEL": "info",
            "OVSGRE_DATAPATH": DEFAULT_DATAPATH,
            # Never the machine's own dockerd: the test's, or none at all.
            "OVSGRE_DOCKER_HOST": "unix://" + os.path.join(workdir,
                                                           "no-docker.sock"),
            **(extra_env or {}),
        }
        self.proc = None

    def start(self, timeout=30):
        os.makedirs(self.workdir, exist_ok=True)
        env = dict(os.environ, **self.env)
        env.pop("XDG_RUNTIME_DIR", None)
        log = open(self.log_path, "ab")
        argv = ["ip", "netns", "exec", self.netns.name] + ovsgre_argv() + \
            ["serve"]
        self.proc = subprocess.Popen(argv, env=env, stdout=log, stderr=log,
                                     stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        log.close()
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout=30):
        """Ready when Activate answers (the worker has reconciled)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("ovsgre exited:\n" + self.log_tail())
            if os.path.exists(self.socket):
                try:
                    status, _ = call(self.socket, "Plugin.Activate",
                                     timeout=5)
                    if status == 200:
                        return
                except OSError:
                    pass
            time.sleep(0.05)
        raise RuntimeError("ovsgre not ready:\n" + self.log_tail())

    def call(self, method, body=None, **kw):
        return call(self.socket, method, body, **kw)

    def ok(self, method, body=None):
        status, reply = self.call(method, body)
        assert status == 200, (method, status, reply)
        return reply

    def pids(self):
        """The plugin's processes: the gunicorn master and its worker (the
        process group started with the master)."""
        pids = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    if os.getpgid(int(entry)) == self.proc.pid:
                        pids.append(int(entry))
                except OSError:
                    pass
        return pids

    def environ(self):
        """The environment the running plugin was started with (that of
        the process we launched: `ip netns exec` execs `ovsgre serve`)."""
        with open(f"/proc/{self.proc.pid}/environ", "rb") as fh:
            raw = fh.read()
        return dict(item.decode(errors="replace").split("=", 1)
                    for item in raw.split(b"\0") if b"=" in item)

    def log_tail(self, lines=60):
        try:
            with open(self.log_path, errors="replace") as fh:
                return "".join(fh.readlines()[-lines:])
        except OSError:
            return ""

    def kill9(self):
        """kill -9 the whole process group we started (master + worker)."""
        self._signal(signal.SIGKILL)

    def stop(self, timeout=15):
        if self.proc is None:
            return
        self._signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._signal(signal.SIGKILL)
            self.proc.wait(5)
        self.proc = None

    def _signal(self, sig):
        if self.proc is None or self.proc.poll() is not None:
            if self.proc is not None:
                self._killpg(sig)
            return
        self._killpg(sig)
        if sig == signal.SIGKILL:
            self.proc.wait(10)

    def _killpg(self, sig):
        try:
            os.killpg(self.proc.pid, sig)  # our own session: pid == pgid
        except ProcessLookupError:
            pass
