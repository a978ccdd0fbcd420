"""Read-only collection of this host's ovsgre state, for `status` and `doctor`.

Nothing here changes anything: the local store is read file by file (no
lock, no directory created, no temporary file removed: the running plugin
owns them), OVSDB is asked with one `select` transaction over its JSON-RPC
socket, kernel links through a netlink dump, OpenFlow tables through
`ovs-ofctl dump-flows`, ovs-vswitchd through `ovs-appctl version`, peers
through one etcd range read, names through the Docker API.

Every external call is bounded by a timeout and runs argv lists (never a
shell).  Whatever fails is recorded in the observation (`errors`) instead of
raised, so a half-broken host still gives a useful picture.

`HostProbe` is the only class that touches the system; `collect()` turns
what it reports into one plain dict (the observation) that `status`
formats and `doctor` checks.  Tests give `collect()` a fake probe.
"""

import concurrent.futures
import glob
import json
import os
import re
import socket
import subprocess
import threading
import time

from .cluster.networks import KEYS, NETS
from .declared_networks import PREFIX as DECLARED
from .ipam import POOLS
from .cluster.records import (Malformed, parse_declared, parse_host,
                              parse_key, parse_key_owner, parse_network,
                              parse_pool, printable, shown_url)
from . import OWNER, names
from .definitions import (DELETING, HOSTS_PREFIX, OWNER_KEY, PATCH_INT,
                          PEER_KEY, ROLE_KEY)
from .store import ENDPOINT_STATES, REQUIRED, malformed  # noqa: F401

DEFAULT_TIMEOUT = 3.0
STORE_KINDS = ("networks", "endpoints")




class ProbeError(Exception):
    """One piece of state could not be read (message says why)."""


class ProbeUnavailable(ProbeError):
    """The probe itself could not run (tool missing), as opposed to the
    thing probed being broken."""


# ---------------------------------------------------------------- helpers

def run_argv(argv, timeout, input_text=None):
    """(returncode, stdout, stderr) of argv, bounded; ProbeError when it
    cannot run at all or takes too long."""
    try:
        proc = subprocess.run(argv, capture_output=True, text=True,
                              timeout=timeout, input=input_text,
                              stdin=None if input_text is not None
                              else subprocess.DEVNULL)
    except FileNotFoundError as exc:
        raise ProbeUnavailable(f"{argv[0]} not found: {exc}") from exc
    except subprocess.TimeoutExpired as exc:
        raise ProbeError(f"{argv[0]} {argv[1] if len(argv) > 1 else ''} "
                         f"did not answer within {timeout:g}s") from exc
    except OSError as exc:
        raise ProbeError(f"{argv[0]}: {exc}") from exc
    return proc.returncode, proc.stdout, proc.stderr


# ------------------------------------------------------------- local store

def read_store(state_dir):
    """{"networks": {id: record}, "endpoints": {id: record}, "bad": [path],
    "malformed": [{kind, id, path, problems, record}]} read without locking
    or writing anything.  Malformed records (see `malformed`) are kept out
    of networks/endpoints.  ProbeError when the directory or one of its
    kinds cannot be listed."""
    root = os.path.abspath(state_dir)
    if not os.path.isdir(root):
        raise ProbeError(f"state directory {root} does not exist")
    out = {"bad": [], "malformed": []}
    for kind in STORE_KINDS:
        folder = os.path.join(root, kind)
        records = {}
        try:
            entries = sorted(os.listdir(folder))
        except FileNotFoundError:
            entries = []   # a plugin that never stored this kind yet
        except OSError as exc:
            raise ProbeError(f"cannot list {folder}: {exc}") from exc
        for name in entries:
            if not name.endswith(".json") or name.startswith(".tmp-"):
                continue
            path = os.path.join(folder, name)
            try:
                with open(path, encoding="utf-8") as fh:
                    record = json.load(fh)
            except FileNotFoundError:
                continue   # deleted between listdir and open
            except (OSError, ValueError) as exc:
                out["bad"].append(f"{path}: {exc}")
                continue
            if not isinstance(record, dict):
                out["bad"].append(f"{path}: not a JSON object")
                continue
            problems = malformed(kind, record)
            if problems:
                out["malformed"].append({"kind": kind, "id": name[:-5],
                                         "path": path, "problems": problems,
                                         "record": record})
                continue
            records[name[:-5]] = record
        out[kind] = records
    return out


# ------------------------------------------------------------------ OVSDB

OVSDB_COLUMNS = {
    "Open_vSwitch": ["cur_cfg", "next_cfg", "ovs_version"],
    "Bridge": ["_uuid", "name", "datapath_type", "fail_mode", "ports",
               "external_ids"],
    "Port": ["_uuid", "name", "tag", "interfaces", "external_ids"],
    "Interface": ["_uuid", "name", "type", "options", "ofport", "error",
                  "external_ids"],
}


def _atom(value):
    if isinstance(value, list) and len(value) == 2 and \
            value[0] in ("uuid", "named-uuid"):
        return value[1]
    return value


def _datum(value):
    """OVSDB JSON datum -> Python: sets to lists, maps to dicts."""
    if isinstance(value, list) and len(value) == 2:
        if value[0] == "set":
            return [_atom(v) for v in value[1]]
        if value[0] == "map":
            return {_atom(k): _atom(v) for k, v in value[1]}
    return _atom(value)


def _optional(value):
    """A column of 0 or 1 values: the value or None."""
    value = _datum(value)
    if isinstance(value, list):
        return value[0] if value else None
    return value


def _as_list(value):
    value = _datum(value)
    return value if isinstance(value, list) else [value]


def ovsdb_transact(remote, operations, timeout):
    """One JSON-RPC `transact` on the Open_vSwitch database; the result
    list.  remote: unix:PATH or tcp:HOST:PORT."""
    deadline = time.monotonic() + timeout
    if remote.startswith("unix:"):
        family, address = socket.AF_UNIX, remote[len("unix:"):]
    elif remote.startswith("tcp:"):
        host, _, port = remote[len("tcp:"):].rpartition(":")
        family, address = socket.AF_INET, (host.strip("[]"), int(port))
        if ":" in host:
            family = socket.AF_INET6
    else:
        raise ProbeError(f"OVSDB remote {remote!r}: only unix: and tcp: "
                         "are supported here")
    request = {"method": "transact",
               "params": ["Open_vSwitch"] + list(operations), "id": 1}
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(address)
            sock.sendall(json.dumps(request).encode())
            data = b""
            decoder = json.JSONDecoder()
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise socket.timeout("no reply")
                sock.settimeout(left)
                chunk = sock.recv(1 << 16)
                if not chunk:
                    raise ProbeError(f"OVSDB at {remote} closed the "
                                     "connection")
                data += chunk
                while True:
                    try:
                        text = data.decode().lstrip()
                        message, end = decoder.raw_decode(text)
                    except ValueError:
                        break   # incomplete: read more
                    data = text[end:].encode()
                    if isinstance(message, dict) and message.get("id") == 1:
                        if message.get("error"):
                            raise ProbeError(f"OVSDB at {remote}: "
                                             f"{message['error']}")
                        return message.get("result") or []
    except socket.timeout as exc:
        raise ProbeError(f"OVSDB at {remote} did not answer within "
                         f"{timeout:g}s") from exc
    except OSError as exc:
        raise ProbeError(f"cannot reach OVSDB at {remote}: {exc}") from exc


def read_ovsdb(remote, timeout):
    """Bridges, ports and interfaces by name, plus cur_cfg/next_cfg."""
    tables = list(OVSDB_COLUMNS)
    ops = [{"op": "select", "table": t, "where": [],
            "columns": OVSDB_COLUMNS[t]} for t in tables]
    result = ovsdb_transact(remote, ops, timeout)
    rows = {}
    for table, reply in zip(tables, result):
        if not isinstance(reply, dict) or "rows" not in reply:
            raise ProbeError(f"OVSDB select {table}: {reply}")
        rows[table] = reply["rows"]
    return parse_ovsdb(rows)


def parse_ovsdb(rows):
    """Raw select rows per table -> the snapshot dict used here."""
    interfaces, by_iface_uuid = {}, {}
    for row in rows.get("Interface", []):
        ofport = _optional(row.get("ofport"))
        info = {"type": row.get("type", ""),
                "options": _datum(row.get("options", ["map", []])),
                "ofport": ofport,
                "error": _optional(row.get("error")),
                "external_ids": _datum(row.get("external_ids",
                                               ["map", []]))}
        interfaces[row["name"]] = info
        by_iface_uuid[_atom(row["_uuid"])] = row["name"]
    ports, by_port_uuid = {}, {}
    for row in rows.get("Port", []):
        ifaces = [by_iface_uuid.get(u, u)
                  for u in _as_list(row.get("interfaces", ["set", []]))]
        ports[row["name"]] = {
            "bridge": None, "tag": _optional(row.get("tag")),
            "interfaces": ifaces,
            "external_ids": _datum(row.get("external_ids", ["map", []]))}
        by_port_uuid[_atom(row["_uuid"])] = row["name"]
    bridges = {}
    for row in rows.get("Bridge", []):
        port_names = sorted(by_port_uuid.get(u, u)
                            for u in _as_list(row.get("ports", ["set", []])))
        bridges[row["name"]] = {
            "datapath_type": row.get("datapath_type", "") or "system",
            "fail_mode": _optional(row.get("fail_mode")),
            "ports": port_names,
            "external_ids": _datum(row.get("external_ids", ["map", []]))}
        for name in port_names:
            if name in ports:
                ports[name]["bridge"] = row["name"]
    ovs = (rows.get("Open_vSwitch") or [{}])[0]
    return {"bridges": bridges, "ports": ports, "interfaces": interfaces,
            "cur_cfg": ovs.get("cur_cfg"), "next_cfg": ovs.get("next_cfg"),
            "ovs_version": _optional(ovs.get("ovs_version", ["set", []]))}


# -------------------------------------------------------------- flow table

_STATS = {"cookie", "duration", "n_packets", "n_bytes", "idle_age",
          "hard_age", "reset_counts", "packet_count", "byte_count"}
_NUMBER = re.compile(r"^(0x[0-9a-fA-F]+|[0-9]+)$")


def _split_top(text):
    """Split on commas outside parentheses."""
    out, depth, cur = [], 0, ""
    for ch in text:
        if ch == "," and depth == 0:
            if cur.strip():
                out.append(cur.strip())
            cur = ""
            continue
        depth += ch == "("
        depth -= ch == ")"
        cur += ch
    if cur.strip():
        out.append(cur.strip())
    return out


def _num(text):
    return str(int(text, 0)) if _NUMBER.match(text) else text


def _norm_action(action):
    name, sep, arg = action.partition(":")
    if name == "mod_vlan_vid" and _NUMBER.match(arg):
        # OpenFlow 1.3 shows mod_vlan_vid as push_vlan + set_field
        return ["push_vlan:0x8100",
                f"set_field:{int(arg, 0) | 0x1000}->vlan_vid"]
    if name == "strip_vlan":
        return ["pop_vlan"]
    if name == "set_field" and "->" in arg:
        value, _, field = arg.partition("->")
        return [f"set_field:{_num(value)}->{field}"]
    if name == "push_vlan":
        return [f"push_vlan:{hex(int(arg, 0))}" if _NUMBER.match(arg)
                else action]
    if sep and name in ("output", "goto_table"):
        return [f"{name}:{_num(arg)}"]
    return [action]


def normalize_flow(text):
    """One flow as built by build_flows or printed by dump-flows -> a
    canonical string: stats dropped, table=0 explicit, match fields sorted,
    numbers in decimal, OpenFlow-1.3 spellings of VLAN actions."""
    text = text.strip()
    if " actions=" in text:
        match, actions = text.split(" actions=", 1)
    elif ",actions=" in text:
        match, actions = text.split(",actions=", 1)
    elif text.startswith("actions="):
        match, actions = "", text[len("actions="):]
    else:
        raise ValueError(f"not a flow: {text!r}")
    fields = {}
    for part in match.replace(" ", ",").split(","):
        if not part:
            continue
        key, sep, value = part.partition("=")
        if key in _STATS:
            continue
        fields[key] = _num(value) if sep else ""
    table = fields.pop("table", "0")
    priority = fields.pop("priority", "32768")
    matches = ",".join(f"{k}={v}" if v != "" else k
                       for k, v in sorted(fields.items()))
    acts = []
    for action in _split_top(actions):
        acts += _norm_action(action)
    head = f"table={table},priority={priority}"
    return f"{head},{matches} actions={','.join(acts)}" if matches \
        else f"{head} actions={','.join(acts)}"


def is_learned(normalized):
    """Flows the learn() action adds in table 2 at priority 1."""
    return normalized.startswith("table=2,priority=1,") or \
        normalized.startswith("table=2,priority=1 ")


def parse_dump(text):
    """Flow lines of `ovs-ofctl dump-flows` (header lines skipped)."""
    return [line.strip() for line in text.splitlines()
            if line.strip() and "actions=" in line
            and not line.startswith(("OFPST_", "NXST_"))]


def compare_flows(expected, actual):
    """(missing, unexpected): normalized flows of the computed table not
    installed, and installed ones not in it (learned flows ignored)."""
    want = {normalize_flow(f) for f in expected}
    have = set()
    for flow in actual:
        norm = normalize_flow(flow)
        if not is_learned(norm):
            have.add(norm)
    return sorted(want - have), sorted(have - want)


# --------------------------------------------------------------- the probe

class HostProbe:
    """Read-only access to this host.  Every method either returns what it
    read or raises ProbeError."""

    def __init__(self, settings, timeout=DEFAULT_TIMEOUT):
        self.settings = settings
        self.timeout = timeout
        self._docker = None
        self._docker_lock = threading.Lock()

    # -- store ---------------------------------------------------------
    def store(self):
        return read_store(self.settings.state_dir)

    # -- OVS -----------------------------------------------------------
    def ovsdb(self):
        return read_ovsdb(self.settings.ovsdb,
                          min(self.timeout, self.settings.ovsdb_timeout))

    def _vswitchd_pid(self):
        """PID in <rundir>/ovs-vswitchd.pid, or None."""
        try:
            with open(os.path.join(self.settings.rundir, "ovs-vswitchd.pid"),
                      encoding="ascii") as fh:
                return int(fh.read().strip() or 0) or None
        except (OSError, ValueError):
            return None

    def vswitchd_ctl_candidates(self):
        """Control sockets of ovs-vswitchd: <rundir>/ovs-vswitchd.<pid>.ctl
        (Debian's default) and <rundir>/ovs-vswitchd.ctl (--unixctl)."""
        rundir = self.settings.rundir
        found = []
        pid = self._vswitchd_pid()
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

    def vswitchd(self):
        """{"ctl": path, "version": text} of a vswitchd that answers."""
        candidates = self.vswitchd_ctl_candidates()
        if not candidates:
            raise ProbeError("no ovs-vswitchd control socket in "
                             f"{self.settings.rundir} (ovs-vswitchd.ctl or "
                             "ovs-vswitchd.<pid>.ctl): not running, or "
                             "another --ovs-rundir")
        errors = []
        for ctl in candidates:
            rc, out, err = run_argv(["ovs-appctl", "-T",
                                     str(max(1, int(self.timeout))), "-t",
                                     ctl, "version"], self.timeout + 1)
            if rc == 0:
                return {"ctl": ctl, "version": out.strip().splitlines()[0]
                        if out.strip() else ""}
            errors.append(f"{ctl}: {err.strip() or f'exit {rc}'}")
        raise ProbeError("ovs-vswitchd does not answer: " + "; ".join(errors))

    def upcalls(self, ctl):
        """{"lost": N, "missed": N} of the kernel datapath, from
        `ovs-appctl dpctl/show` (what `ovs-dpctl show` prints): lost counts
        packets that missed the datapath's flow cache and never reached
        ovs-vswitchd."""
        rc, out, err = run_argv(["ovs-appctl", "-T",
                                 str(max(1, int(self.timeout))), "-t", ctl,
                                 "dpctl/show"], self.timeout + 1)
        if rc != 0:
            raise ProbeError(f"ovs-appctl dpctl/show: "
                             f"{err.strip() or f'exit {rc}'}")
        return parse_lookups(out)

    def vswitchd_started(self):
        """Seconds after boot ovs-vswitchd started (None when its PID is
        not visible here, e.g. from a managed plugin's PID namespace)."""
        pid = self._vswitchd_pid()
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

    def dump_flows(self, bridge):
        target = f"unix:{os.path.join(self.settings.rundir, bridge)}.mgmt"
        rc, out, err = run_argv(["ovs-ofctl", "-O", "OpenFlow13", "-t",
                                 str(max(1, int(self.timeout))),
                                 "dump-flows", "--no-stats", target],
                                self.timeout + 1)
        if rc != 0:
            raise ProbeError(f"ovs-ofctl dump-flows {bridge}: "
                             f"{err.strip() or f'exit {rc}'}")
        return parse_dump(out)

    # -- kernel --------------------------------------------------------
    def links(self):
        """{name: {index, mtu, up, kind, peer_index, address}}."""
        from pyroute2 import IPRoute
        try:
            with IPRoute() as ipr:
                msgs = ipr.get_links()
        except Exception as exc:  # netlink failures of any kind
            raise ProbeError(f"netlink link dump: {exc}") from exc
        out = {}
        for msg in msgs:
            name = msg.get_attr("IFLA_IFNAME")
            info = msg.get_attr("IFLA_LINKINFO")
            out[name] = {
                "index": msg["index"],
                "mtu": msg.get_attr("IFLA_MTU"),
                "up": bool(msg["flags"] & 1),
                "kind": info.get_attr("IFLA_INFO_KIND") if info else None,
                "peer_index": msg.get_attr("IFLA_LINK"),
                "address": msg.get_attr("IFLA_ADDRESS"),
            }
        return out

    def addresses(self):
        """{IPv4 address: link index} of this namespace."""
        from pyroute2 import IPRoute
        try:
            with IPRoute() as ipr:
                msgs = ipr.get_addr(family=socket.AF_INET)
        except Exception as exc:
            raise ProbeError(f"netlink address dump: {exc}") from exc
        return {m.get_attr("IFA_ADDRESS"): m["index"] for m in msgs}

    def tx_checksum(self, ifname):
        """True when TX checksum offload is on (ethtool ioctl)."""
        from .dataplane.links import tx_checksum
        try:
            return tx_checksum(ifname)
        except Exception as exc:
            raise ProbeError(str(exc)) from exc

    def tx_checksum_in(self, netns_path, ifindex):
        """(ifname, tx on?) of link ifindex inside the network namespace
        at netns_path (a container's sandbox), via nsenter."""
        rc, out, err = run_argv(["nsenter", f"--net={netns_path}", "ip",
                                 "-j", "link", "show"], self.timeout)
        if rc != 0:
            raise ProbeError(f"nsenter {netns_path}: {err.strip()}")
        try:
            name = next(l["ifname"] for l in json.loads(out or "[]")
                        if l.get("ifindex") == ifindex)
        except (StopIteration, ValueError, KeyError) as exc:
            raise ProbeError(f"no link {ifindex} in {netns_path}") from exc
        rc, out, err = run_argv(["nsenter", f"--net={netns_path}",
                                 "ethtool", "-k", name], self.timeout)
        if rc != 0:
            raise ProbeError(f"ethtool -k {name} in {netns_path}: "
                             f"{err.strip()}")
        for line in out.splitlines():
            key, _, value = line.strip().partition(":")
            if key == "tx-checksumming":
                return name, value.split()[0] == "on"
        raise ProbeError(f"ethtool -k {name}: no tx-checksumming line")

    def local_ip(self):
        """(tunnel source address, how it was found)."""
        if self.settings.local_ip:
            return self.settings.local_ip, "setting"
        if not self.settings.multi_host:
            return "", "single host"
        from .dataplane import detect_local_ip
        try:
            return detect_local_ip(self.settings.tunnel_targets()), "route"
        except Exception as exc:
            raise ProbeError(f"route lookup: {exc}") from exc

    def kernel_module(self):
        """State of the openvswitch kernel module (never modprobe):
        dataplane.openvswitch_module."""
        from .dataplane import openvswitch_module
        return openvswitch_module()

    def datapath(self, existing="", module=None):
        """(datapath, why) the plugin uses, decided without side effects
        (never modprobe, unlike dataplane.detect_datapath): the --datapath
        setting; with auto the datapath_type of the existing integration
        bridge (the plugin set it when it started); without a bridge,
        "system" when the openvswitch module is loaded, built in or
        loadable (the plugin would modprobe it), else "netdev"."""
        wanted = self.settings.datapath
        if wanted != "auto":
            return wanted, "setting"
        if existing in ("system", "netdev"):
            return existing, "bridge"
        module = module or self.kernel_module()
        if module == "absent":
            return "netdev", "no openvswitch module"
        return "system", f"openvswitch module {module}"

    def ping(self, peers, source=""):
        """{peer: (answered?, detail)}; all peers at once, each bounded."""
        def one(peer):
            argv = ["ping", "-c1", "-W1", "-n", "-q"]
            if source:
                argv += ["-I", source]
            try:
                rc, out, err = run_argv(argv + [peer], self.timeout + 1)
            except ProbeUnavailable as exc:   # no ping here: not checked
                return peer, (None, str(exc))
            except ProbeError as exc:         # timed out
                return peer, (False, str(exc))
            detail = (err.strip() or out.strip().splitlines()[-1]
                      if (err.strip() or out.strip()) else "")
            return peer, (rc == 0, detail if rc else "")
        if not peers:
            return {}
        with concurrent.futures.ThreadPoolExecutor(
                min(8, len(peers))) as pool:
            return dict(pool.map(one, sorted(peers)))

    def container_netns(self, container_id):
        """/proc/<pid>/ns/net of a running container (Docker API), so its
        interfaces can be read also where the sandbox path is not visible
        (dockerd in another mount namespace)."""
        with self._docker_lock:
            try:
                pid = (self._docker_client().inspect_container(
                    container_id).get("State") or {}).get("Pid")
            except Exception as exc:
                raise ProbeError(f"Docker API: {exc}") from exc
        if not pid:
            raise ProbeError(f"container {container_id[:12]} is not running")
        return f"/proc/{pid}/ns/net"

    # -- cluster -------------------------------------------------------
    def etcd_hosts(self):
        """{etcd key: record as found} under /ovsgre/hosts/ (parsed by
        parse_hosts: other hosts write them)."""
        return self.etcd_list(HOSTS_PREFIX)

    def etcd_list(self, prefix):
        """{etcd key: record as found} under prefix."""
        from .cluster.etcd import EtcdKV
        s = self.settings
        try:
            kv = EtcdKV.from_settings(s, self.timeout)
        except ValueError as exc:
            raise ProbeError(str(exc)) from exc
        try:
            items = kv.list(prefix)
        except Exception as exc:
            # some client errors carry no text: say what happened
            text = re.sub(r": (?=;|$)", ": no answer (connection failed or "
                          "timed out)", str(exc))
            raise ProbeError(text) from exc
        finally:
            kv.close()
        return items

    # -- Docker --------------------------------------------------------
    def _docker_client(self):
        if self._docker is None:
            import docker
            self._docker = docker.APIClient(
                base_url=self.settings.docker_host, timeout=self.timeout)
        return self._docker

    def close(self):
        if self._docker is not None:
            self._docker.close()
            self._docker = None

    def docker(self):
        """{"networks": {id: name}, "endpoints": {endpoint id: container
        name}, "containers": {endpoint id: container id}} from the Docker
        API (short timeout)."""
        with self._docker_lock:
            return self._docker_names()

    def _docker_names(self):
        try:
            client = self._docker_client()
        except Exception as exc:
            raise ProbeError(f"Docker API at {self.settings.docker_host}: "
                             f"{exc}") from exc
        try:
            networks = {n["Id"]: n["Name"] for n in client.networks()}
            endpoints, containers = {}, {}
            for ctr in client.containers(all=True):
                name = (ctr.get("Names") or ["/" + ctr["Id"][:12]])[0]
                nets = (ctr.get("NetworkSettings") or {}).get("Networks") \
                    or {}
                for net in nets.values():
                    if net.get("EndpointID"):
                        endpoints[net["EndpointID"]] = name.lstrip("/")
                        containers[net["EndpointID"]] = ctr["Id"]
            return {"networks": networks, "endpoints": endpoints,
                    "containers": containers}
        except Exception as exc:
            raise ProbeError(f"Docker API at {self.settings.docker_host}: "
                             f"{exc}") from exc


# ------------------------------------------------------------- collection

def _try(errors, what, func, *args):
    try:
        return func(*args), None
    except ProbeError as exc:
        errors[what] = str(exc)
        return None, str(exc)


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


def collect(settings, probe, deep=False, docker=True):
    """The observation: one dict of everything status shows and doctor
    checks.  deep=True also reads what only doctor needs (offload of
    container ends and of the tunnel source's port, pings of the peers,
    the tunnel bridge's flows).  Never loads a kernel module (the expected
    datapath is judged as in HostProbe.datapath)."""
    errors = {}
    obs = {
        "bridge": settings.bridge,
        "tunnel_bridge": settings.tunnel_bridge,
        "multi_host": settings.multi_host,
        "mode": "etcd" if settings.etcd else
        ("static" if settings.peers else "single-host"),
        "state_dir": os.path.abspath(settings.state_dir),
        "ovsdb_remote": settings.ovsdb,
        "rundir": settings.rundir,
        "docker_host": settings.docker_host,
        "etcd": [shown_url(url) for url in settings.etcd],
        "errors": errors,
    }
    obs["store"], _ = _try(errors, "store", probe.store)
    obs["ovsdb"], _ = _try(errors, "ovsdb", probe.ovsdb)
    obs["vswitchd"], _ = _try(errors, "vswitchd", probe.vswitchd)
    obs["links"], _ = _try(errors, "links", probe.links)
    obs["ovs_module"], _ = _try(errors, "ovs_module", probe.kernel_module)
    existing = (((obs["ovsdb"] or {}).get("bridges") or {})
                .get(settings.bridge) or {}).get("datapath_type", "")
    chosen, _ = _try(errors, "datapath", probe.datapath, existing,
                     obs["ovs_module"])
    obs["datapath"], obs["datapath_source"] = chosen or (None, "")
    obs["docker"] = None
    if docker:
        obs["docker"], _ = _try(errors, "docker", probe.docker)

    local = None
    if settings.multi_host or settings.local_ip:
        local, _ = _try(errors, "local_ip", probe.local_ip)
    obs["local_ip"], obs["local_ip_source"] = local or ("", "")

    # peers: the registry (etcd) or the static list, minus this host
    obs["registered"] = None
    obs["etcd_malformed"] = []
    if settings.etcd:
        raw, _ = _try(errors, "etcd", probe.etcd_hosts)
        hosts = None
        if raw is not None:
            hosts, obs["etcd_malformed"] = parse_hosts(raw)
            obs["etcd_malformed"] += _malformed_records(errors, probe)
            obs["registered"] = bool(obs["local_ip"]) and \
                obs["local_ip"] in hosts
            obs["peers"] = {ip: dict(info, source="etcd")
                            for ip, info in hosts.items()
                            if ip != obs["local_ip"]}
        else:
            obs["peers"] = None   # unknown
    elif settings.peers:
        obs["peers"] = {ip: {"ip": ip, "source": "static"}
                        for ip in settings.peers if ip != obs["local_ip"]}
    else:
        obs["peers"] = {}

    if deep:
        _collect_deep(settings, probe, obs, errors)
    return obs


def _collect_deep(settings, probe, obs, errors):
    links = obs["links"] or {}
    store = obs["store"] or {}
    datapath = obs["datapath"]
    # container ends: in this namespace, or in the sandbox when readable
    offload = {}
    if datapath == "netdev":
        inside = []
        for eid, ep in sorted((store.get("endpoints") or {}).items()):
            peer = ep.get("peer_if", "")
            if peer in links:
                value, err = _try({}, "", probe.tx_checksum, peer)
                offload[eid] = {"where": "host", "ifname": peer,
                                "tx": value, "error": err}
            elif ep.get("state") != DELETING:
                inside.append(ep)
        if inside:   # a few subprocesses each: in parallel, each bounded
            with concurrent.futures.ThreadPoolExecutor(
                    min(8, len(inside))) as pool:
                found = pool.map(lambda ep: _container_offload(
                    probe, obs, ep, links.get(ep.get("host_if"))), inside)
                for ep, result in zip(inside, found):
                    offload[ep["endpoint_id"]] = result
    obs["offload"] = offload

    # the interface holding the tunnel source address
    obs["underlay"] = None
    if settings.multi_host and obs["local_ip"]:
        addrs, _ = _try(errors, "addresses", probe.addresses)
        index = (addrs or {}).get(obs["local_ip"])
        name = next((n for n, l in links.items() if l["index"] == index),
                    None) if index is not None else None
        under = {"ip": obs["local_ip"], "ifname": name, "mtu": None,
                 "tx": None, "tx_error": None}
        if name:
            under["mtu"] = links[name]["mtu"]
            under["tx"], under["tx_error"] = _try({}, "", probe.tx_checksum,
                                                  name)
        obs["underlay"] = under

    # peers over the underlay
    obs["ping"] = {}
    if settings.multi_host:
        targets = set(obs["peers"] or ()) | set(
            p["peer"] for p in tunnel_ports(obs).values() if p["peer"])
        obs["ping"] = probe.ping(sorted(targets), obs["local_ip"])

    obs["upcalls"] = None
    if datapath == "system" and obs["vswitchd"]:
        obs["upcalls"] = _upcalls(probe, obs["vswitchd"]["ctl"], errors)

    # the tunnel bridge's table
    obs["flows"] = None
    ovsdb = obs["ovsdb"]
    if settings.multi_host and ovsdb and \
            settings.tunnel_bridge in ovsdb["bridges"]:
        obs["flows"], _ = _try(errors, "flows", probe.dump_flows,
                               settings.tunnel_bridge)


UPCALL_SAMPLE = 1.0   # seconds between the two reads of the lost count


def _upcalls(probe, ctl, errors):
    """The kernel datapath's lost upcalls: a second read UPCALL_SAMPLE
    later when some were lost, to tell losing now from lost once; and when
    ovs-vswitchd started (the OVS 3.1.0 trap: started within 10 s of boot
    it runs no upcall handlers)."""
    first, _ = _try(errors, "upcalls", probe.upcalls, ctl)
    if first is None:
        return None
    out = {"lost": first["lost"], "lost_now": 0,
           "started": probe.vswitchd_started()}
    if first["lost"]:
        time.sleep(UPCALL_SAMPLE)
        second, _ = _try(errors, "upcalls", probe.upcalls, ctl)
        if second is not None:
            out["lost"] = second["lost"]
            out["lost_now"] = max(0, second["lost"] - first["lost"])
    return out


def _container_offload(probe, obs, ep, host):
    """TX offload of a container end Docker moved into its container: read
    in the container's network namespace, found through the Docker API
    (/proc/PID/ns/net) or the sandbox path recorded at Join."""
    out = {"where": "container", "netns": "", "ifname": "", "tx": None,
           "error": "moved into its container"}
    if not host or not host.get("peer_index"):
        return out
    paths, errors = [], []
    cid = ((obs.get("docker") or {}).get("containers") or {}).get(
        ep.get("endpoint_id"))
    if cid:
        path, err = _try({}, "", probe.container_netns, cid)
        if path:
            paths.append(path)
        else:
            errors.append(err)
    sandbox = ep.get("sandbox") or ""
    if sandbox and os.path.exists(sandbox):
        paths.append(sandbox)
    for path in paths:
        got, err = _try({}, "", probe.tx_checksum_in, path,
                        host["peer_index"])
        if got:
            return {"where": "container", "netns": path, "ifname": got[0],
                    "tx": got[1], "error": None}
        errors.append(err)
    if errors:
        out["error"] += " (not readable here: " + "; ".join(errors) + ")"
    else:
        out["error"] += " (its network namespace is not visible here)"
    return out


# ------------------------------------------------------------ derivations

def tunnel_ports(obs):
    """{port name: {peer, ofport, error}} of GRE ports ovsgre made on the
    tunnel bridge (role=tunnel)."""
    ovsdb = obs.get("ovsdb")
    if not ovsdb:
        return {}
    bridge = ovsdb["bridges"].get(obs["tunnel_bridge"])
    if not bridge:
        return {}
    out = {}
    for name in bridge["ports"]:
        port = ovsdb["ports"].get(name) or {}
        if port.get("external_ids", {}).get(ROLE_KEY) != "tunnel":
            continue
        iface = ovsdb["interfaces"].get(name) or {}
        peer = port["external_ids"].get(PEER_KEY) or \
            iface.get("options", {}).get("remote_ip")
        out[name] = {"peer": peer, "ofport": iface.get("ofport"),
                     "remote_ip": iface.get("options", {}).get("remote_ip"),
                     "error": iface.get("error")}
    return out


def port_of(obs, name):
    """{bridge, tag, ofport, external_ids} of an OVS port, or None."""
    ovsdb = obs.get("ovsdb")
    if not ovsdb or name not in ovsdb["ports"]:
        return None
    port = ovsdb["ports"][name]
    iface = ovsdb["interfaces"].get(name) or {}
    return {"bridge": port["bridge"], "tag": port["tag"],
            "ofport": iface.get("ofport"), "error": iface.get("error"),
            "external_ids": port["external_ids"]}


def expected_flows(obs):
    """What build_flows computes from the tunnel ports present and the
    networks in the store; None when it cannot be computed."""
    from .dataplane.tunnels import build_flows
    patch = port_of(obs, PATCH_INT)
    store = obs.get("store")
    if not patch or not patch["ofport"] or patch["ofport"] < 1 or not store:
        return None
    tunnels = {p["peer"]: p["ofport"] for p in tunnel_ports(obs).values()
               if p["peer"] and p["ofport"] and p["ofport"] > 0}
    networks = {n["vlan"]: n["key"] for n in store["networks"].values()
                if n.get("key") and n.get("vlan")}
    return build_flows(patch["ofport"], tunnels, networks)


def expected_peers(obs):
    """Peers this host should have tunnels to: the registry's, or (etcd
    unknown) the ones it has ports for, like the plugin keeps them."""
    if obs["peers"] is not None:
        return set(obs["peers"])
    return {p["peer"] for p in tunnel_ports(obs).values() if p["peer"]}


def owned_endpoint_ports(obs):
    """{name: port} of ports with owner=ovsgre and the endpoint role."""
    ovsdb = obs.get("ovsdb")
    if not ovsdb:
        return {}
    return {name: port for name, port in ovsdb["ports"].items()
            if port["external_ids"].get(OWNER_KEY) == OWNER and
            port["external_ids"].get(ROLE_KEY, "endpoint") == "endpoint"}


def ours(name):
    return names.is_ours(name)


def add_common_arguments(parser, what):
    """--json and --timeout, shared by `ovsgre status` and `ovsgre doctor`."""
    parser.add_argument("--json", action="store_true",
                        help=f"print JSON (stable keys) instead of {what}")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                        metavar="SECONDS",
                        help="bound of each external call "
                             f"(default {DEFAULT_TIMEOUT:g})")


def _malformed_records(errors, probe):
    """Network definitions, GRE key reservations, declared networks and
    IPAM pools in etcd that do not parse (the plugin skips them); an
    unreadable prefix is an error, not a finding."""
    bad = []
    for kind, prefix, parse in (("networks", NETS, parse_network),
                                ("keys", KEYS, _parse_key_record),
                                ("declared", DECLARED, parse_declared),
                                ("pools", POOLS, parse_pool)):
        raw, _ = _try(errors, "etcd", probe.etcd_list, prefix)
        for path, value in sorted((raw or {}).items()):
            try:
                parse(path, value, prefix)
            except Malformed as exc:
                bad.append({"kind": kind, "id": printable(
                    path[len(prefix):]), "path": printable(path),
                    "problems": [str(exc)]})
    return bad


def _parse_key_record(path, value, prefix):
    """A GRE key reservation at prefix + KEY: {"name": NAME}."""
    parse_key(int(path[len(prefix):])
              if path[len(prefix):].isdigit() else path[len(prefix):])
    return parse_key_owner(value)


def parse_hosts(items):
    """({ip: {ip, hostname, version}}, [malformed]) from host records as
    etcd holds them: only what parses, in printable text."""
    hosts, bad = {}, []
    for path, value in sorted(items.items()):
        try:
            host = parse_host(path, value, HOSTS_PREFIX)
        except Malformed as exc:
            bad.append({"kind": "hosts", "id": printable(
                path[len(HOSTS_PREFIX):]), "path": printable(path),
                "problems": [str(exc)]})
            continue
        hosts[str(host.ip)] = {"ip": str(host.ip), "hostname": host.hostname,
                               "version": host.version}
    return hosts, bad
