"""dockerd per simulated host: own network namespace + private mount namespace.

Layout under basedir (keep it short: unix socket paths must be < 108 chars):
  docker.sock   API socket (-H unix://...), visible from the root namespace
  dockerd.pid   dockerd pidfile;  dockerd.log  its stdout/stderr
  daemon.json   --config-file
  data/         --data-root   (overlay2, containerd root, ...)
  exec/         --exec-root   (containerd socket/state, netns files, ...)
  plugins/      bind-mounted on /run/docker/plugins inside dockerd's mount ns:
                a plugin outside it listens on plugins/<name>.sock
                (plugin_socket()) and dockerd discovers it, no spec file
  etc/          bind-mounted on /etc/docker inside; etc/plugins = spec_dir
                (kept empty by the harness)
  cli/          DOCKER_CONFIG for the docker CLI

Inside dockerd's mount namespace /run and /opt are fresh tmpfs and /sys is a
sysfs of the host's netns (with the real /sys/fs/cgroup moved back on it).
Mounts made there are invisible in the root mount namespace; they go away
with the namespace once every process in it has exited.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import time
from typing import Optional

from ._proc import (unmount_under, cmdline, descendants, ns_inode, pid_alive, pids_in_cgroup,
                    pids_in_ns, read_pidfile, run, terminate, wait_gone)
from .netns import Netns

log = logging.getLogger("ovsgre.harness")

# /usr/bin/docker is the docker.io 20.10 client, matching dockerd 20.10.
# (/usr/local/bin/docker, earlier in PATH, is a separate 28.x client.)
DOCKER_CLI = "/usr/bin/docker"
DOCKERD = "/usr/sbin/dockerd"

# Runs as: sh -c SCRIPT ovgt-dockerd PLUGINS_DIR ETC_DIR dockerd ARGS...
# Paths come in as positional args, never interpolated into the script.
_MOUNT_SCRIPT = r'''
set -e
plugins="$1"; etcdir="$2"; shift 2
mount -t tmpfs -o mode=755 ovgt-run /run
mkdir /run/.ovgt-cgroup
mount --rbind /sys/fs/cgroup /run/.ovgt-cgroup
mount -t sysfs ovgt-sysfs /sys
mount --move /run/.ovgt-cgroup /sys/fs/cgroup
rmdir /run/.ovgt-cgroup
mount -t tmpfs -o mode=755 ovgt-opt /opt
mkdir -p /run/docker/plugins
mount --bind "$plugins" /run/docker/plugins
mount --bind "$etcdir" /etc/docker
exec "$@"
'''


class DockerError(RuntimeError):
    pass


class DockerHost:
    def __init__(self, netns: Netns, basedir: str,
                 cgroup_parent: Optional[str] = None,
                 storage_driver: Optional[str] = None,
                 daemon_config: Optional[dict] = None,
                 extra_args: Optional[list] = None,
                 debug: bool = False):
        self.netns = netns
        self.basedir = os.path.abspath(basedir)
        self.sock = os.path.join(self.basedir, "docker.sock")
        if len(self.sock) >= 100:
            raise ValueError(f"basedir too long for unix sockets: {basedir}")
        self.pidfile = os.path.join(self.basedir, "dockerd.pid")
        self.log_path = os.path.join(self.basedir, "dockerd.log")
        self.config_file = os.path.join(self.basedir, "daemon.json")
        self.data_root = os.path.join(self.basedir, "data")
        self.exec_root = os.path.join(self.basedir, "exec")
        self.plugins_dir = os.path.join(self.basedir, "plugins")
        self.etc_dir = os.path.join(self.basedir, "etc")
        self.spec_dir = os.path.join(self.etc_dir, "plugins")
        self.docker_config = os.path.join(self.basedir, "cli")
        # Absolute, unique cgroup path: /sys/fs/cgroup/<ctrl>/<cgroup_parent>/<id>
        self.cgroup_parent = cgroup_parent or netns.name
        # None = overlay2 with automatic fallback to vfs; env can force one.
        self.requested_storage_driver = (storage_driver
                                         or os.environ.get("OVGT_STORAGE_DRIVER"))
        self.storage_driver: Optional[str] = None  # the one actually in use
        self.daemon_config = dict(daemon_config or {})
        self.extra_args = list(extra_args or [])
        self.debug = debug
        self.proc: Optional[subprocess.Popen] = None
        self.pid: Optional[int] = None
        self._mntns = None      # (dev, ino) of dockerd's mount namespace
        self._mntns_fd = None   # keeps that namespace (and its id) alive

    # ------------------------------------------------------------ paths/urls
    @property
    def base_url(self) -> str:
        return "unix://" + self.sock

    @property
    def containerd_pidfile(self) -> str:
        return os.path.join(self.exec_root, "containerd", "containerd.pid")

    def log_tail(self, n: int = 60) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    # ------------------------------------------------------------ start
    def _dockerd_argv(self, driver: str) -> list:
        argv = [
            DOCKERD,
            "--data-root", self.data_root,
            "--exec-root", self.exec_root,
            "--pidfile", self.pidfile,
            "-H", self.base_url,
            "--config-file", self.config_file,
            "--storage-driver", driver,
            "--exec-opt", "native.cgroupdriver=cgroupfs",
            "--cgroup-parent", "/" + self.cgroup_parent,
            "--bridge=none", "--iptables=false", "--ip-forward=false",
            "--ip-masq=false",
        ]
        if self.debug:
            argv.append("--debug")
        return argv + self.extra_args

    def start(self, timeout: float = 30) -> "DockerHost":
        if self.pid and pid_alive(self.pid):
            return self
        if self._mntns_fd is not None:
            # After stop_daemon(): dockerd again in the mount namespace its
            # containers' shims still live in (see restart()).
            self._start_pinned(timeout)
            return self
        if not os.path.isdir("/etc/docker"):
            raise DockerError("/etc/docker must exist as a mount point "
                              "(the harness never creates it)")
        for d in (self.basedir, self.data_root, self.exec_root,
                  self.plugins_dir, self.spec_dir, self.docker_config):
            os.makedirs(d, exist_ok=True)
        with open(self.config_file, "w") as f:
            json.dump(self.daemon_config, f)
        drivers = ([self.requested_storage_driver]
                   if self.requested_storage_driver else ["overlay2", "vfs"])
        last_err = None
        for driver in drivers:
            try:
                self._start_once(driver, timeout)
                self.storage_driver = driver
                return self
            except DockerError as e:
                last_err = e
                log.warning("dockerd with storage driver %s failed: %s",
                            driver, str(e).splitlines()[0])
                self.stop(remove_containers=False)
                text = str(e).lower()
                if "graphdriver" not in text and "overlay" not in text:
                    break  # not a storage-driver problem: no fallback
        raise last_err

    def _start_once(self, driver: str, timeout: float) -> None:
        argv = ["nsenter", "--net=" + self.netns.path,
                "unshare", "-m", "--propagation", "private",
                "sh", "-c", _MOUNT_SCRIPT, "ovgt-dockerd",
                self.plugins_dir, self.etc_dir,
                *self._dockerd_argv(driver)]
        # nsenter, unshare and sh all exec: the Popen pid is dockerd's.
        self._launch(argv, timeout)
        if self._mntns is None and not self._pin_mntns():
            raise DockerError("dockerd is not in a private mount namespace?!")
        filepid = read_pidfile(self.pidfile)
        if filepid != self.pid:
            log.warning("dockerd pidfile says %s, Popen pid is %s",
                        filepid, self.pid)

    def _launch(self, argv: list, timeout: float) -> None:
        """Start argv (which execs into dockerd), log to log_path, wait for
        the API."""
        logf = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                         stdout=logf, stderr=subprocess.STDOUT,
                                         start_new_session=True,
                                         cwd=self.basedir)
        finally:
            logf.close()
        self.pid = self.proc.pid
        self._wait_api(timeout)

    def _start_pinned(self, timeout: float) -> None:
        """dockerd alone, in the pinned mount namespace (already set up by
        _MOUNT_SCRIPT: its /run holds containerd's shim sockets and the
        containers' netns mounts, which a fresh namespace would not see)."""
        mnt = f"/proc/{os.getpid()}/fd/{self._mntns_fd}"
        argv = ["nsenter", "--net=" + self.netns.path, "--mount=" + mnt,
                *self._dockerd_argv(self.storage_driver)]
        self._launch(argv, timeout)
        if ns_inode(self.pid, "mnt") != self._mntns:
            raise DockerError("restarted dockerd is not in its old mount "
                              "namespace")

    def _pin_mntns(self) -> bool:
        """Record (and keep open) dockerd's private mount namespace, once
        unshare has run; lets stop() find containerd/shims even if dockerd
        died."""
        if self._mntns is not None:
            return True
        try:
            fd = os.open(f"/proc/{self.pid}/ns/mnt", os.O_RDONLY)
        except OSError:
            return False
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) == ns_inode(os.getpid(), "mnt"):
            os.close(fd)  # not unshared yet
            return False
        self._mntns_fd, self._mntns = fd, (st.st_dev, st.st_ino)
        return True

    def _ping(self) -> bool:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(2)
        try:
            s.connect(self.sock)
            s.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            return data.startswith(b"HTTP/1.") and b" 200 " in data[:20] \
                and data.rstrip().endswith(b"OK")
        except OSError:
            return False
        finally:
            s.close()

    def _wait_api(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise DockerError(
                    f"dockerd in {self.netns.name} exited with "
                    f"{self.proc.returncode}\n--- {self.log_path} ---\n"
                    f"{self.log_tail()}")
            self._pin_mntns()
            if self._ping():
                return
            time.sleep(0.05)
        raise DockerError(f"dockerd API at {self.sock} not ready after "
                          f"{timeout}s\n--- {self.log_path} ---\n"
                          f"{self.log_tail()}")

    # ------------------------------------------------------------ clients
    def client(self):
        """A new docker SDK client for this daemon (caller may close it)."""
        import docker
        return docker.DockerClient(base_url=self.base_url, timeout=120)

    @property
    def cli_env(self) -> dict:
        return {"DOCKER_CONFIG": self.docker_config, "DOCKER_HOST": self.base_url,
                "DOCKER_CLI_HINTS": "false"}

    def cli(self, *args, check: bool = True, timeout: float = 120,
            input: Optional[str] = None, stdin=None) -> subprocess.CompletedProcess:
        """Run the docker CLI against this daemon; text output captured."""
        return run([DOCKER_CLI, "-H", self.base_url, *args], check=check,
                   timeout=timeout, env=self.cli_env, input=input, stdin=stdin)

    # Where dockerd (20.10: pkg/plugins, fixed, whatever --exec-root says)
    # looks for a legacy plugin's socket before any spec file.
    DOCKERD_PLUGINS_DIR = "/run/docker/plugins"

    def plugin_socket(self, name: str) -> str:
        """Host path of the socket dockerd discovers for plugin `name`:
        <plugins_dir>/<name>.sock, which is /run/docker/plugins/<name>.sock
        in dockerd's mount namespace (see _MOUNT_SCRIPT).  A process
        outside that namespace listens here; no spec file needed."""
        return os.path.join(self.plugins_dir, name + ".sock")

    def run_in_mntns(self, argv: list, **kw) -> subprocess.CompletedProcess:
        """argv in dockerd's mount namespace (what dockerd sees as its
        files, e.g. /run/docker/plugins), in the host's netns."""
        if self._mntns_fd is None:
            raise DockerError("dockerd's mount namespace is not known "
                              "(not started?)")
        mnt = f"/proc/{os.getpid()}/fd/{self._mntns_fd}"
        return run(["nsenter", "--net=" + self.netns.path, "--mount=" + mnt,
                    *argv], **kw)

    # ------------------------------------------------------------ stop
    def remove_all_containers(self, timeout: float = 30) -> None:
        if not (self.pid and pid_alive(self.pid) and self._ping()):
            return
        import docker
        deadline = time.monotonic() + timeout
        c = docker.DockerClient(base_url=self.base_url, timeout=max(5, timeout))
        try:
            for ctr in c.containers.list(all=True, ignore_removed=True):
                if time.monotonic() >= deadline:
                    log.warning("timeout removing containers on %s",
                                self.netns.name)
                    break
                try:
                    ctr.remove(force=True)
                except Exception as e:  # noqa: BLE001
                    log.warning("removing container %s: %s", ctr.short_id, e)
        finally:
            c.close()

    def _our_pids(self) -> set:
        pids = set()
        if self.pid and pid_alive(self.pid):
            pids.add(self.pid)
            pids.update(descendants(self.pid))
        if self._mntns is not None:
            pids.update(pids_in_ns(self._mntns, "mnt"))
        pids.update(pids_in_cgroup(self.cgroup_parent))
        cpid = read_pidfile(self.containerd_pidfile)
        if cpid and pid_alive(cpid) and any(self.basedir in a
                                            for a in cmdline(cpid)):
            pids.add(cpid)
        pids.discard(os.getpid())
        return {p for p in pids if pid_alive(p)}

    def stop(self, remove_containers: bool = True, timeout: float = 20) -> None:
        """Stop dockerd and everything it started; idempotent, never raises
        for partial failures (they are logged)."""
        if remove_containers:
            try:
                self.remove_all_containers()
            except Exception as e:  # noqa: BLE001
                log.warning("remove containers on %s: %s", self.netns.name, e)
        try:
            # 1. dockerd itself (it stops containerd and containers).
            if self.pid and pid_alive(self.pid):
                terminate([self.pid], timeout=timeout, popen=self.proc,
                          what="dockerd")
            elif self.proc is not None:
                self.proc.poll()
            # 2. anything left in its mount namespace / cgroup / containerd.
            left = self._our_pids()
            if left:
                log.warning("leftover dockerd processes on %s: %s",
                            self.netns.name,
                            {p: cmdline(p)[:2] for p in left})
                terminate(left, timeout=5, what="dockerd leftover")
        except Exception as e:  # noqa: BLE001
            log.error("stopping dockerd on %s: %s", self.netns.name, e)
        self.pid = None
        self.proc = None
        if self._mntns_fd is not None:
            try:
                os.close(self._mntns_fd)
            except OSError:
                pass
            self._mntns_fd = None
        self._mntns = None
        self._remove_cgroups()
        unmount_under(self.basedir)

    def _remove_cgroups(self) -> None:
        root = "/sys/fs/cgroup"
        try:
            hier = [os.path.join(root, h) for h in os.listdir(root)]
        except OSError:
            return
        if os.path.exists(os.path.join(root, "cgroup.controllers")):
            hier = [root]  # pure cgroup v2
        for h in hier:
            top = os.path.join(h, self.cgroup_parent)
            if os.path.islink(h) or not os.path.isdir(top):
                continue
            for dirpath, dirnames, _ in os.walk(top, topdown=False):
                try:
                    os.rmdir(dirpath)
                except OSError as e:
                    log.warning("rmdir cgroup %s: %s", dirpath, e)

    def stop_daemon(self, timeout: float = 20) -> None:
        """SIGTERM dockerd alone and wait for it: unlike stop(), whatever
        outlives it (with live-restore: containerd-shims and containers) is
        left running, and its mount namespace stays pinned so that start()
        runs the next dockerd in it.  stop() still cleans up everything."""
        if self.pid and pid_alive(self.pid):
            terminate([self.pid], timeout=timeout, popen=self.proc,
                      what="dockerd")
        elif self.proc is not None:
            self.proc.poll()
        self.pid = None
        self.proc = None

    def kill(self) -> None:
        """A power cut: SIGKILL dockerd and everything it started (nothing
        gets to clean up), then release what stop() releases."""
        pids = self._our_pids()
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        left = wait_gone(pids, 10)
        if left:
            log.error("dockerd processes on %s survived SIGKILL: %s",
                      self.netns.name, left)
        if self.proc is not None:
            self.proc.poll()
        self.stop(remove_containers=False)

    def restart(self, timeout: float = 30,
                keep_containers: bool = False) -> "DockerHost":
        """Stop dockerd and start it again on the same data root.

        Default: a full stop() -- containers are stopped, not removed.
        keep_containers=True: stop_daemon() then start(), the way a
        live-restore daemon is restarted (containers keep running if
        daemon.json has "live-restore": true)."""
        if keep_containers:
            self.stop_daemon(timeout=timeout)
        else:
            self.stop(remove_containers=False, timeout=timeout)
        return self.start(timeout=timeout)
