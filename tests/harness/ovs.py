"""One Open vSwitch instance (ovsdb-server + ovs-vswitchd) per namespace.

All files live in `rundir`; OVS_RUNDIR=rundir is set for every daemon and
client so bridge .mgmt sockets never collide with another instance or with a
system-wide OVS.  Daemons are stopped only by the PIDs in their pidfiles.
"""
from __future__ import annotations

import json
import logging
import os
import time
from typing import Optional

from ._proc import CommandError, cmdline, pid_alive, read_pidfile, run, terminate
from .netns import Netns

log = logging.getLogger("ovsgre.harness")

SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"
DAEMONS = ("ovsdb-server", "ovs-vswitchd")
# What ovs-ctl (behind every distribution's Open vSwitch service) gives
# both daemons: a userspace datapath forwards only when vswitchd gets the
# CPU, and a test host should be as loaded as a real one, not more.
NICE = ["nice", "-n", "-10"]


class OvsInstance:
    def __init__(self, netns: Netns, rundir: str):
        self.netns = netns
        self.rundir = os.path.abspath(rundir)
        self.db_path = os.path.join(self.rundir, "conf.db")
        self.db_sock = os.path.join(self.rundir, "db.sock")
        if len(self.db_sock) >= 100:
            raise ValueError(f"rundir too long for unix sockets: {self.rundir}")

    # ------------------------------------------------------------ paths
    @property
    def db_remote(self) -> str:
        return "unix:" + self.db_sock

    @property
    def env(self) -> dict:
        return {"OVS_RUNDIR": self.rundir, "OVS_DBDIR": self.rundir,
                "OVS_LOGDIR": self.rundir}

    def pidfile(self, daemon: str) -> str:
        return os.path.join(self.rundir, daemon + ".pid")

    def ctl(self, daemon: str) -> str:
        return os.path.join(self.rundir, daemon + ".ctl")

    def logfile(self, daemon: str) -> str:
        return os.path.join(self.rundir, daemon + ".log")

    def pid(self, daemon: str) -> Optional[int]:
        """PID from the daemon's pidfile if that process is alive, else None."""
        p = read_pidfile(self.pidfile(daemon))
        return p if p and pid_alive(p) and self._is_ours(daemon, p) else None

    @property
    def ovsdb_pid(self) -> Optional[int]:
        return self.pid("ovsdb-server")

    @property
    def vswitchd_pid(self) -> Optional[int]:
        return self.pid("ovs-vswitchd")

    def _is_ours(self, daemon: str, pid: int) -> bool:
        argv = cmdline(pid)
        return bool(argv) and any(self.pidfile(daemon) in a for a in argv)

    def log_tail(self, daemon: str, n: int = 40) -> str:
        try:
            with open(self.logfile(daemon), errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    # ------------------------------------------------------------ lifecycle
    def start(self, timeout: float = 15) -> "OvsInstance":
        os.makedirs(self.rundir, exist_ok=True)
        if not os.path.exists(self.db_path):
            run(["ovsdb-tool", "create", self.db_path, SCHEMA])
        try:
            self.start_ovsdb()
            self.vsctl("--no-wait", "init")
            self.start_vswitchd(timeout=timeout)
        except Exception:
            self.stop()
            raise
        return self

    def start_ovsdb(self) -> None:
        if self.ovsdb_pid:
            return
        d = "ovsdb-server"
        self.netns.run(NICE + [
            d, self.db_path,
            "--remote=punix:" + self.db_sock,
            "--remote=db:Open_vSwitch,Open_vSwitch,manager_options",
            "--pidfile=" + self.pidfile(d),
            "--unixctl=" + self.ctl(d),
            "--log-file=" + self.logfile(d),
            "-vconsole:off", "--detach", "--no-chdir",
        ], env=self.env, timeout=30)

    def start_vswitchd(self, timeout: float = 15) -> None:
        if not self.vswitchd_pid:
            d = "ovs-vswitchd"
            self.netns.run(NICE + [
                d, self.db_remote,
                "--pidfile=" + self.pidfile(d),
                "--unixctl=" + self.ctl(d),
                "--log-file=" + self.logfile(d),
                "-vconsole:off", "--detach", "--no-chdir",
            ], env=self.env, timeout=30)
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 15) -> None:
        """Wait until vswitchd has applied the current DB config (bounded)."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            left = max(1, int(deadline - time.monotonic()))
            try:
                # Without --no-wait, vsctl bumps next_cfg and waits for
                # ovs-vswitchd to catch up: a true readiness check.
                self.vsctl("init", timeout=left)
                return
            except (CommandError, OSError) as e:
                last = e
                time.sleep(0.05)
        raise RuntimeError(
            f"OVS in {self.netns.name} not ready after {timeout}s: {last}\n"
            f"--- ovs-vswitchd.log ---\n{self.log_tail('ovs-vswitchd')}\n"
            f"--- ovsdb-server.log ---\n{self.log_tail('ovsdb-server')}")

    def _stop_daemon(self, daemon: str, timeout: float = 5) -> None:
        pf = self.pidfile(daemon)
        pid = read_pidfile(pf)
        if pid and pid_alive(pid):
            terminate([pid], timeout=timeout,
                      verify=lambda p: self._is_ours(daemon, p), what=daemon)
        if os.path.exists(pf) and not (pid and pid_alive(pid)):
            try:
                os.unlink(pf)
            except OSError:
                pass

    def stop_vswitchd(self) -> None:
        self._stop_daemon("ovs-vswitchd")

    def stop_ovsdb(self) -> None:
        self._stop_daemon("ovsdb-server")

    def stop(self) -> None:
        """Stop both daemons (idempotent, never by name)."""
        for d in reversed(DAEMONS):
            try:
                self._stop_daemon(d)
            except Exception as e:  # keep going
                log.error("stopping %s failed: %s", d, e)

    def restart_vswitchd(self, timeout: float = 15,
                         keep_flows: bool = False) -> None:
        """Stop and start ovs-vswitchd.  keep_flows: as ovs-ctl restart
        (Debian's `systemctl restart openvswitch-switch`) does it: save
        every bridge's OpenFlow flows, start with flow-restore-wait=true
        (vswitchd then leaves the datapath's flows alone), put the flows
        back, clear flow-restore-wait."""
        saved = {br: self.saved_flows(br) for br in
                 self.vsctl("list-br").split()} if keep_flows else {}
        if keep_flows:
            self.vsctl("--no-wait", "set", "Open_vSwitch", ".",
                       "other_config:flow-restore-wait=true")
        self.stop_vswitchd()
        self.start_vswitchd(timeout=timeout)
        if keep_flows:
            for br, flows in saved.items():
                run(["ovs-ofctl", "add-flows", br, "-"], env=self.env,
                    input=flows)
            self.vsctl("remove", "Open_vSwitch", ".", "other_config",
                       "flow-restore-wait")

    def saved_flows(self, bridge: str) -> str:
        """bridge's OpenFlow flows as `ovs-ofctl add-flows` reads them."""
        out = self.ofctl("dump-flows", "--no-stats", "--no-names", bridge)
        return "".join(line.strip() + "\n" for line in out.splitlines()
                       if line.strip() and "_FLOW reply" not in line)

    def restart_ovsdb(self, timeout: float = 20) -> None:
        """Restart ovsdb-server on the same conf.db; waits for vswitchd to
        reconnect and apply the config."""
        self.stop_ovsdb()
        self.start_ovsdb()
        if self.vswitchd_pid:
            self.wait_ready(timeout)

    # ------------------------------------------------------------ clients
    def vsctl(self, *args, timeout: int = 10, check: bool = True) -> str:
        cp = run(["ovs-vsctl", "--db=" + self.db_remote, f"--timeout={timeout}",
                  *args], env=self.env, timeout=timeout + 5, check=check)
        return cp.stdout

    def datapath_types(self) -> dict:
        """{bridge: datapath_type} of every bridge ("" = the default,
        i.e. the kernel datapath, reported as "system")."""
        out = self.vsctl("--format=json", "--columns=name,datapath_type",
                         "list", "Bridge")
        rows = json.loads(out)["data"]
        return {name: dp or "system" for name, dp in rows}

    def ofctl(self, *args, check: bool = True, timeout: int = 30) -> str:
        cp = run(["ovs-ofctl", *args], env=self.env, timeout=timeout,
                 check=check)
        return cp.stdout

    def appctl(self, target: str, *args, check: bool = True,
               timeout: int = 30) -> str:
        """target: 'ovs-vswitchd' or 'ovsdb-server' (or a .ctl path)."""
        ctl = target if target.startswith("/") else self.ctl(target)
        cp = run(["ovs-appctl", "-t", ctl, *args], env=self.env,
                 timeout=timeout, check=check)
        return cp.stdout
