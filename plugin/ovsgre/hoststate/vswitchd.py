"""The ovs-vswitchd process and its datapath: control socket, version,
upcall counters, start time, the OpenFlow table of a bridge, and the
datapath the plugin uses (decided without loading a kernel module)."""

import glob
import os
import re

from .. import dataplane
from . import command
from .command import ProbeError
from .flowtable import parse_dump
from .records import Vswitchd


def _appctl(ctl, timeout, *args):
    """(returncode, stdout, stderr) of `ovs-appctl -t ctl ARGS`, bounded."""
    return command.run_argv(["ovs-appctl", "-T", str(max(1, int(timeout))),
                             "-t", ctl] + list(args), timeout + 1)


def vswitchd_pid(rundir):
    """PID in <rundir>/ovs-vswitchd.pid, or None."""
    try:
        with open(os.path.join(rundir, "ovs-vswitchd.pid"),
                  encoding="ascii") as fh:
            return int(fh.read().strip() or 0) or None
    except (OSError, ValueError):
        return None


def ctl_candidates(rundir):
    """Control sockets of ovs-vswitchd: <rundir>/ovs-vswitchd.<pid>.ctl
    (Debian's default) and <rundir>/ovs-vswitchd.ctl (--unixctl)."""
    found = []
    pid = vswitchd_pid(rundir)
    if pid:
        found.append(os.path.join(rundir, f"ovs-vswitchd.{pid}.ctl"))
    found.append(os.path.join(rundir, "ovs-vswitchd.ctl"))
    found += sorted(glob.glob(os.path.join(rundir, "ovs-vswitchd.*.ctl")))
    seen, out = set(), []
    for path in found:
        if path not in seen and os.path.exists(path):
            seen.add(path)
            out.append(path)
    return out


def answering(rundir, timeout) -> Vswitchd:
    """{"ctl": path, "version": text} of a vswitchd that answers."""
    candidates = ctl_candidates(rundir)
    if not candidates:
        raise ProbeError("no ovs-vswitchd control socket in "
                         f"{rundir} (ovs-vswitchd.ctl or "
                         "ovs-vswitchd.<pid>.ctl): not running, or "
                         "another --ovs-rundir")
    errors = []
    for ctl in candidates:
        rc, out, err = _appctl(ctl, timeout, "version")
        if rc == 0:
            return {"ctl": ctl, "version": out.strip().splitlines()[0]
                    if out.strip() else ""}
        errors.append(f"{ctl}: {err.strip() or f'exit {rc}'}")
    raise ProbeError("ovs-vswitchd does not answer: " + "; ".join(errors))


def upcalls(ctl, timeout):
    """{"lost": N, "missed": N} of the kernel datapath, from
    `ovs-appctl dpctl/show` (what `ovs-dpctl show` prints): lost counts
    packets that missed the datapath's flow cache and never reached
    ovs-vswitchd."""
    rc, out, err = _appctl(ctl, timeout, "dpctl/show")
    if rc != 0:
        raise ProbeError(f"ovs-appctl dpctl/show: "
                         f"{err.strip() or f'exit {rc}'}")
    return parse_lookups(out)


def parse_lookups(text):
    """{"lost": N, "missed": N} summed over the datapaths `dpctl/show`
    lists ("lookups: hit:H missed:M lost:L")."""
    total = {"lost": 0, "missed": 0}
    found = False
    for match in re.finditer(r"lookups: hit:(\d+) missed:(\d+) lost:(\d+)",
                             text):
        found = True
        total["missed"] += int(match.group(2))
        total["lost"] += int(match.group(3))
    if not found:
        raise ProbeError("dpctl/show shows no datapath lookups")
    return total


def started(rundir):
    """Seconds after boot ovs-vswitchd started (None when its PID is
    not visible here, e.g. from a managed plugin's PID namespace)."""
    pid = vswitchd_pid(rundir)
    if not pid:
        return None
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii",
                  errors="replace") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        # field 22 of stat (the 20th after the command): start time
        # in clock ticks since boot
        ticks = int(fields[19])
    except (OSError, ValueError, IndexError):
        return None
    return ticks / os.sysconf("SC_CLK_TCK")


def dump_flows(rundir, bridge, timeout):
    """The flows of bridge, through its OpenFlow management socket."""
    target = f"unix:{os.path.join(rundir, bridge)}.mgmt"
    rc, out, err = command.run_argv(["ovs-ofctl", "-O", "OpenFlow13", "-t",
                                     str(max(1, int(timeout))),
                                     "dump-flows", "--no-stats", target],
                                    timeout + 1)
    if rc != 0:
        raise ProbeError(f"ovs-ofctl dump-flows {bridge}: "
                         f"{err.strip() or f'exit {rc}'}")
    return parse_dump(out)


def kernel_module():
    """State of the openvswitch kernel module (never modprobe):
    dataplane.openvswitch_module."""
    return dataplane.openvswitch_module()


def choose_datapath(wanted, existing, module_state):
    """(datapath, why) the plugin uses, decided without side effects
    (never modprobe, unlike dataplane.detect_datapath): the --datapath
    setting; with auto the datapath_type of the existing integration
    bridge (the plugin set it when it started); without a bridge,
    "system" when the openvswitch module is loaded, built in or
    loadable (the plugin would modprobe it), else "netdev".
    module_state: a function giving the module's state, asked only when
    needed."""
    if wanted != "auto":
        return wanted, "setting"
    if existing in ("system", "netdev"):
        return existing, "bridge"
    module = module_state()
    if module == "absent":
        return "netdev", "no openvswitch module"
    return "system", f"openvswitch module {module}"


def ofproto_trace(ctl, bridge, flow, timeout):
    """The text of `ovs-appctl ofproto/trace BRIDGE FLOW` (a dry run: no
    MAC is learned, no packet sent)."""
    rc, out, err = _appctl(ctl, timeout, "ofproto/trace", bridge, flow)
    if rc != 0:
        raise ProbeError(f"ofproto/trace {bridge}: "
                         f"{(err or out).strip()}")
    return out


def fdb(ctl, bridge, timeout):
    """{(vlan, mac): OpenFlow port number} the bridge has learned."""
    rc, out, err = _appctl(ctl, timeout, "fdb/show", bridge)
    if rc != 0:
        raise ProbeError(f"fdb/show {bridge}: {(err or out).strip()}")
    learned = {}
    for line in out.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 3 and parts[0].isdigit() and parts[1].isdigit():
            learned[(int(parts[1]), parts[2].lower())] = int(parts[0])
    return learned
