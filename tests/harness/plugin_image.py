"""The ovsgre managed (v2) plugin in a namespace host's dockerd.

    ensure_plugin_created(host.docker)   # scripts/build-plugin.sh, cached
    plugin = ManagedPlugin(host)         # ovsgre/ovsgre:latest
    plugin.configure(OVSGRE_SCOPE="global")   # + mounts -> the host's files
    plugin.enable()                      # returns once GetCapabilities answers
    ...
    plugin.remove()                      # disable + rm (idempotent)
    plugin.remove_cgroups()              # after host.stop(), last resort

Building: the first call of ensure_plugin_created() in a test run runs the
whole scripts/build-plugin.sh against that host's dockerd (debootstrap of the
base rootfs, pip wheel, docker build, export, docker plugin create) and keeps
the bundle (config.json + rootfs/); later calls create the plugin in other
dockerds from that bundle (the script with OVSGRE_BUNDLE).  The debootstrap
tarball is cached for the run in a directory under /tmp/ovgt removed at
exit, or across runs in $OVGT_PLUGIN_CACHE when that is set.

The plugin runs in the host's network namespace (config.json: network host);
its mounts are pointed at the host's own files with `docker plugin set`:
the OVS run dir of the harness OVS (OVS_RUNDIR), a state dir under the
host's run dir, the namespace dockerd's API socket.  Its
stdout/stderr land in dockerd's log (lines tagged plugin=<id>).  It is stopped by dockerd (disable) or, as a
last resort, by TestHost.stop() (every process left in the host's netns).
"""
from __future__ import annotations

import atexit
import json
import logging
import os
import re
import shutil
import threading
import time
from typing import Optional

from ._proc import CommandError, pids_in_cgroup, run
from .datapath import DATAPATH
from .dockerd import DOCKER_CLI
from .host import BASE_ROOT
from .image import BUSYBOX_TAG
from .netns import link_json, unique_prefix
from .plugin import call

log = logging.getLogger("ovsgre.harness")

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
BUILD_SCRIPT = os.path.join(REPO, "scripts", "build-plugin.sh")
CONFIG_JSON = os.path.join(REPO, "config.json")
PLUGIN = "ovsgre/ovsgre:latest"
BUILD_TIMEOUT = 600

_lock = threading.Lock()
_work: Optional[str] = None      # per-run directory (bundle, maybe cache)
_bundle: Optional[str] = None    # built bundle, once per run
timings: dict = {}               # what the build steps took (seconds)


def _cleanup() -> None:
    if _work:
        shutil.rmtree(_work, ignore_errors=True)


def _work_dir() -> str:
    global _work
    if _work is None:
        _work = os.path.join(BASE_ROOT, f"{unique_prefix()}-plugin")
        os.makedirs(_work)
        atexit.register(_cleanup)
    return _work


def base_cache() -> str:
    """Where build-plugin.sh caches the debootstrap tarball."""
    return os.environ.get("OVGT_PLUGIN_CACHE") or os.path.join(
        _work_dir(), "base")


def _script(docker_host, name: str, **env):
    """Run scripts/build-plugin.sh against docker_host (a DockerHost);
    returns (seconds, {step: seconds}, stdout)."""
    full = dict(docker_host.cli_env, DOCKER=DOCKER_CLI,
                OVSGRE_BASE_CACHE=base_cache(), TMPDIR=_work_dir(), **env)
    t0 = time.monotonic()
    cp = run(["sh", BUILD_SCRIPT, name], env=full, timeout=BUILD_TIMEOUT)
    took = time.monotonic() - t0
    steps = _steps(cp.stderr)
    log.info("build-plugin.sh %s: %.1f s %s", name, took, steps)
    return took, steps, cp.stdout


def _steps(stderr: str) -> dict:
    """{'debootstrap': 54.5, 'docker build': 9.9, ...}: the script's
    'build-plugin: STEP [(detail)] took N s' lines."""
    out = {}
    for line in stderr.splitlines():
        m = re.match(r"build-plugin: (.+?)(?: \(.*\))? took ([\d.]+) s$",
                     line)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


def ensure_plugin_created(docker_host, name: str = PLUGIN) -> dict:
    """Create the managed plugin `name` (disabled) in docker_host: the first
    time per run with the full build, then from the kept bundle.  Returns
    {'total': s, 'steps': {...}, 'full_build': bool, 'output': stdout,
    'bundle': dir with config.json and rootfs/}."""
    global _bundle
    with _lock:
        if _bundle is None:
            bundle = os.path.join(_work_dir(), "bundle")
            took, steps, out = _script(docker_host, name,
                                       OVSGRE_PLUGIN_DIR=bundle)
            _bundle = bundle
            result = {"total": took, "steps": steps, "full_build": True,
                      "output": out, "bundle": bundle}
            timings["build"] = result
            return result
        took, steps, out = _script(docker_host, name,
                                   OVSGRE_BUNDLE=_bundle)
        result = {"total": took, "steps": steps, "full_build": False,
                  "output": out, "bundle": _bundle}
        timings.setdefault("create", []).append(result)
        return result


class ManagedPlugin:
    """The plugin `name` as seen by one namespace host's dockerd."""

    def __init__(self, host, name: str = PLUGIN):
        self.host = host
        self.docker = host.docker
        self.name = name
        self.state_dir = os.path.join(host.run_dir, "plugin-state")
        self.timings: dict = {}
        self._ids: set = set()        # every plugin ID seen (cgroup names)

    # ------------------------------------------------------------ docker
    def cli(self, *args, **kw):
        return self.docker.cli(*args, **kw)

    def inspect(self) -> Optional[dict]:
        cp = self.cli("plugin", "inspect", self.name, check=False)
        if cp.returncode != 0:
            return None
        return json.loads(cp.stdout)[0]

    @property
    def id(self) -> str:
        info = self.inspect()
        if info is None:
            raise RuntimeError(f"plugin {self.name} does not exist")
        return info["Id"]

    @property
    def enabled(self) -> bool:
        info = self.inspect()
        return bool(info and info["Enabled"])

    @property
    def socket(self) -> str:
        """The plugin's socket: dockerd 20.10 keeps managed plugins'
        sockets in /run/docker/plugins/ID/ (whatever --exec-root says),
        which the harness bind-mounts from the host's plugins_dir."""
        return os.path.join(self.docker.plugins_dir, self.id, "ovsgre.sock")

    def configure(self, **settings) -> None:
        """Point the mounts at this host's directories and set OVSGRE_*
        settings (`docker plugin set`, plugin disabled)."""
        os.makedirs(self.state_dir, exist_ok=True)
        # the run's datapath, like every plugin the harness starts
        settings.setdefault("OVSGRE_DATAPATH", DATAPATH)
        args = [f"ovs-rundir.source={self.host.ovs.rundir}",
                f"state.source={self.state_dir}",
                f"docker-sock.source={self.docker.sock}"]
        args += [f"{k}={v}" for k, v in settings.items()]
        self.cli("plugin", "set", self.name, *args)

    def enable(self, timeout: float = 60) -> float:
        """`docker plugin enable`, then wait until GetCapabilities answers
        on the plugin's socket; returns the seconds the enable took."""
        t0 = time.monotonic()
        self.cli("plugin", "enable", "--timeout", str(int(timeout)),
                 self.name, timeout=timeout + 30)
        t1 = time.monotonic()
        self._ids.add(self.id)
        self.wait_ready(timeout)
        self.timings.update(enable=t1 - t0, ready=time.monotonic() - t0)
        return t1 - t0

    def pids(self) -> list:
        """PIDs of the plugin's processes (its cgroup is named by its ID)."""
        return [p for i in self._ids for p in pids_in_cgroup(i)]

    def remove_cgroups(self) -> None:
        """Last resort after a host was torn down by force: runc names the
        plugin's cgroups after its ID, relative to the cgroup of its
        caller (not under dockerd's --cgroup-parent).  rmdir the empty ones
        left behind (an orderly disable removes them itself)."""
        root = "/sys/fs/cgroup"
        for pid_ in self._ids:
            for dirpath, dirnames, _ in os.walk(root):
                if os.path.basename(dirpath) == pid_:
                    try:
                        os.rmdir(dirpath)
                        log.warning("removed leftover cgroup %s", dirpath)
                    except OSError as e:
                        log.error("leftover cgroup %s: %s", dirpath, e)
                    dirnames[:] = []
                elif dirpath.count("/") > 6:
                    dirnames[:] = []

    def call(self, method: str, body=None, timeout: float = 30):
        """POST /method to the plugin's socket, as dockerd does.  Its path
        is too long for AF_UNIX (108 bytes): connect through
        /proc/self/fd/N/ of an open descriptor of its directory."""
        fd = os.open(os.path.dirname(self.socket), os.O_RDONLY)
        try:
            return call(f"/proc/self/fd/{fd}/ovsgre.sock", method, body,
                        timeout=timeout)
        finally:
            os.close(fd)

    def wait_ready(self, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                status, reply = self.call("NetworkDriver.GetCapabilities",
                                          timeout=5)
                if status == 200:
                    return reply
                last = (status, reply)
            except OSError as e:
                last = e
            time.sleep(0.1)
        raise RuntimeError(f"plugin {self.name} not ready ({last}):\n"
                           + self.log_tail())

    def capabilities(self) -> dict:
        status, reply = self.call("NetworkDriver.GetCapabilities")
        assert status == 200, (status, reply)
        return reply

    def disable(self, force: bool = False) -> None:
        if self.enabled:
            args = ["plugin", "disable"] + (["-f"] if force else []) + \
                [self.name]
            self.cli(*args)

    def remove(self) -> None:
        """Disable (forced if need be) and remove; idempotent, logs
        failures instead of raising (teardown)."""
        try:
            if self.inspect() is None:
                return
            if self.enabled:
                cp = self.cli("plugin", "disable", self.name, check=False)
                if cp.returncode != 0:
                    log.warning("plugin disable: %s; forcing",
                                cp.stderr.strip())
                    self.cli("plugin", "disable", "-f", self.name,
                             check=False)
            self.cli("plugin", "rm", "-f", self.name, check=False)
        except (CommandError, OSError, RuntimeError) as e:
            log.error("removing plugin %s: %s", self.name, e)

    # ------------------------------------------------------------ logs
    def log_lines(self) -> list:
        """The plugin's output lines (dockerd logs them with plugin=ID)."""
        try:
            pid = self.id
        except RuntimeError:
            return []
        try:
            with open(self.docker.log_path, errors="replace") as f:
                lines = f.readlines()
        except OSError:
            return []
        out = []
        for line in lines:
            if f"plugin={pid}" not in line:
                continue
            m = re.search(r'msg="((?:[^"\\]|\\.)*)"', line)
            out.append(m.group(1).replace('\\"', '"') if m else line.rstrip())
        return out

    def log_tail(self, n: int = 40) -> str:
        lines = self.log_lines()
        if not lines:
            return self.docker.log_tail(n)
        return "\n".join(lines[-n:])

    # ------------------------------------------------------------ state
    def records(self, kind: str) -> dict:
        """{id: record} of the plugin's state dir ('networks'/'endpoints')."""
        folder = os.path.join(self.state_dir, kind)
        out = {}
        try:
            names = os.listdir(folder)
        except FileNotFoundError:
            return out
        for n in names:
            if n.startswith(".") or n.endswith(".tmp"):
                continue
            try:
                with open(os.path.join(folder, n)) as f:
                    out[n.rsplit(".json", 1)[0]] = json.load(f)
            except (OSError, ValueError):
                continue
        return out


class ManagedSite:
    """A namespace host whose dockerd runs the managed plugin; helpers in
    the style of tests/e2e (containers from the busybox test image)."""

    def __init__(self, host, plugin: ManagedPlugin, image: str = BUSYBOX_TAG):
        self.host = host
        self.plugin = plugin
        self.image = image
        self.driver = plugin.name

    def docker(self, *args, check=True, timeout=120):
        return self.host.docker.cli(*args, check=check, timeout=timeout)

    def out(self, *args, **kw) -> str:
        return self.docker(*args, **kw).stdout.strip()

    def run_bg(self, name, network, *cmd, extra=()):
        """Detached container; --init so `docker rm -f` is quick."""
        self.docker("run", "-d", "--init", "--name", name, "--network",
                    network, *extra, self.image, *cmd)

    def run_rm(self, network, *cmd, extra=(), check=True, timeout=120):
        return self.docker("run", "--rm", "--network", network, *extra,
                           self.image, *cmd, check=check, timeout=timeout)

    def ip(self, container, network) -> str:
        fmt = "{{json .NetworkSettings.Networks}}"
        nets = json.loads(self.out("inspect", "-f", fmt, container))
        return nets[network]["IPAddress"]

    def leftovers(self) -> dict:
        """Everything ovsgre made that still exists on this host."""
        links = [l["ifname"] for l in link_json(self.host.netns)
                 if l["ifname"].startswith("ovg")]
        ports = [p for p in self.host.ovs.vsctl(
            "list-ports", "br-ovsgre", check=False).split() if p]
        records = [f"{kind}/{key}" for kind in ("networks", "endpoints")
                   for key in self.plugin.records(kind)]
        return {"links": links, "ports": ports, "records": records}

    def wait_no_leftovers(self, timeout: float = 10) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            left = self.leftovers()
            if not any(left.values()) or time.monotonic() > deadline:
                return left
            time.sleep(0.2)

    def remove_all(self) -> None:
        """Containers, then every network of the plugin's driver."""
        self.host.docker.remove_all_containers()
        cp = self.docker("network", "ls", "-q", "--filter",
                         f"driver={self.driver}", check=False)
        for net in cp.stdout.split():
            self.docker("network", "rm", net, check=False)
