"""The integration bridge and its ports, through OVSDB: the plugin through
ovsdbapp's IDL, status and doctor through one bounded `transact` of
python-ovs's JSON-RPC client (read_snapshot), the library under that IDL.

Only this module talks to ovsdb-server.  Every port ovsgre creates carries
external_ids {owner: ovsgre, ovsgre_network: ID, ovsgre_endpoint: ID}, so the
plugin can always tell its own ports from anybody else's.
"""

import errno
import logging
import os
import threading
import time

import ovs.jsonrpc
import ovs.poller
import ovs.stream
import ovs.timeval
from ovsdbapp import exceptions as ovsdb_exc
from ovsdbapp.backend.ovs_idl import command, connection, idlutils
from ovsdbapp.backend.ovs_idl import transaction
from ovsdbapp.schema.open_vswitch import impl_idl

from ..definitions import (ENDPOINT_KEY, NETWORK_KEY,  # noqa: F401
                           OWNER, OWNER_KEY, ROLE_KEY)
from ..errors import DataplaneError, Unavailable

LOG = logging.getLogger(__name__)

# Only the columns ovsgre reads or writes: ovs-vswitchd rewrites each
# Interface's statistics every few seconds, and replicating that for a
# thousand ports would keep the IDL thread busy while calls wait.
COLUMNS = {
    "Open_vSwitch": ("bridges", "cur_cfg", "next_cfg", "iface_types",
                     "external_ids"),
    "Bridge": ("name", "ports", "datapath_type", "fail_mode", "protocols",
               "other_config", "external_ids", "flow_tables"),
    "Flow_Table": ("name", "flow_limit", "overflow_policy", "groups"),
    "Port": ("name", "interfaces", "tag", "external_ids"),
    "Interface": ("name", "type", "options", "ofport", "error",
                  "mtu_request", "external_ids"),
}
BRIDGE_MTU = 1500


def owner_ids(network_id, endpoint_id):
    return {OWNER_KEY: OWNER, ROLE_KEY: "endpoint",
            NETWORK_KEY: network_id, ENDPOINT_KEY: endpoint_id}


class Ovsdb:
    """A long-lived IDL connection with bounded transactions."""

    def __init__(self, remote, timeout):
        self.remote = remote
        self.timeout = timeout
        try:
            helper = idlutils.get_schema_helper(remote, "Open_vSwitch")
        except Exception as exc:
            raise Unavailable(f"cannot reach OVSDB at {remote}: {exc}") \
                from exc
        for table, columns in COLUMNS.items():
            helper.register_columns(table, list(columns))
        self._changes = _Changes()
        idl = _Idl(remote, helper, self._changes)
        self._conn = connection.Connection(idl, timeout)
        self.api = impl_idl.OvsdbIdl(self._conn)

    def close(self):
        self._conn.stop(timeout=self.timeout)

    def _run(self, *commands, wait=True):
        """One transaction.  wait=True also waits for ovs-vswitchd to apply
        it (like ovs-vsctl); wait=False returns once ovsdb-server committed
        it (like --no-wait): vswitchd reconfigures the whole bridge per
        change, which grows with the number of ports, so endpoint calls do
        not wait for it and readiness is checked per port instead."""
        try:
            with self._transaction(wait) as txn:
                for cmd in commands:
                    txn.add(cmd)
            return [cmd.result for cmd in commands]
        except ovsdb_exc.TimeoutException as exc:
            raise DataplaneError(
                f"OVSDB did not answer within {self.timeout}s: {exc}") from exc
        except Exception as exc:
            raise DataplaneError(f"OVSDB transaction failed: {exc}") from exc

    def _transaction(self, wait):
        if wait:
            return self.api.transaction(check_error=True)
        return _NoWait(self.api, self._conn, self.timeout, check_error=True)

    def ensure_bridge(self, name, datapath_type):
        """Create the bridge if missing; keep its datapath type as asked."""
        api = self.api
        self._run(
            api.add_br(name, may_exist=True, datapath_type=datapath_type),
            api.db_set("Bridge", name, ("datapath_type", datapath_type)),
            _pin_mtu(api, name),
            api.br_set_external_id(name, OWNER_KEY, OWNER),
        )

    def bridge(self, name):
        rows = self._run(self.api.db_find_rows(
            "Bridge", ("name", "=", name)), wait=False)[0]
        if not rows:
            return None
        row = rows[0]
        return {"name": row.name, "datapath_type": row.datapath_type,
                "ports": sorted(p.name for p in row.ports)}

    def add_port(self, bridge, port, tag, external_ids, port_type="",
                 wait=False):
        """Attach an existing kernel link as an access port with VLAN tag.
        port_type "" is a plain (system / AF_PACKET) port."""
        api = self.api
        self._run(
            api.add_port(bridge, port, may_exist=True),
            api.db_set("Port", port, ("tag", tag),
                       ("external_ids", external_ids)),
            api.db_set("Interface", port, ("type", port_type)),
            wait=wait,
        )

    def del_port(self, port, bridge=None, wait=False):
        """Remove a port; naming its bridge makes it O(1), without one
        every bridge is searched (start-up clean-up only)."""
        self._run(_DelPort(self.api, bridge, port), wait=wait)

    def del_ports(self, bridge, ports):
        """Remove ports of one bridge in one transaction (one
        reconfiguration of ovs-vswitchd for all); returns the
        configuration number to pass to wait_applied."""
        txn = _Bump(self.api, self._conn, self.timeout, check_error=True)
        try:
            with txn:
                for port in ports:
                    txn.add(_DelPort(self.api, bridge, port))
        except ovsdb_exc.TimeoutException as exc:
            raise DataplaneError(
                f"OVSDB did not answer within {self.timeout}s: {exc}") from exc
        except Exception as exc:
            raise DataplaneError(f"OVSDB transaction failed: {exc}") from exc
        return txn.next_cfg

    def wait_applied(self, next_cfg, timeout):
        """Wait until ovs-vswitchd has applied the configuration numbered
        next_cfg (cur_cfg caught up), without holding up other
        transactions as a waiting one does; True if it did in time."""
        deadline = time.monotonic() + timeout
        while True:
            seen = self._changes.seen()
            current = self._run(_CurCfg(self.api), wait=False)[0]
            if next_cfg is None or current >= next_cfg:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._changes.wait(seen, remaining)

    def iface_types(self):
        """Interface types this ovs-vswitchd supports."""
        rows = self._run(self.api.db_find_rows("Open_vSwitch"),
                         wait=False)[0]
        return set(rows[0].iface_types) if rows else set()

    def interface(self, name):
        """{type, ofport, error} of an interface as ovs-vswitchd reports
        it, or None.  ofport is None until vswitchd has taken the port and
        -1 if it could not."""
        return self._run(_Lookup(self.api, "Interface", name,
                                 _interface_info), wait=False)[0]

    def wait_interface(self, name, timeout):
        """Wait until ovs-vswitchd has taken interface `name` (ofport > 0)
        or refused it (ofport -1 or an error); returns its last state
        (None if there is no such interface) once settled or after
        timeout seconds.  Woken by the IDL's updates, not by polling."""
        deadline = time.monotonic() + timeout
        while True:
            seen = self._changes.seen()
            info = self.interface(name)
            if info is not None and (info["ofport"] or info["error"]):
                return info
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return info
            self._changes.wait(seen, remaining)

    def owned_ports(self):
        """{port name: {tag, external_ids, ofport}} of every endpoint port
        ovsgre made (patch and tunnel ports are the tunnel code's)."""
        rows = self._run(self.api.db_find_rows(
            "Port", ("external_ids", "=", {OWNER_KEY: OWNER})),
            wait=False)[0]
        return {row.name: _port_info(row) for row in rows
                if row.external_ids.get(ROLE_KEY, "endpoint") == "endpoint"}

    def ports_with(self, bridge, key, value):
        """{port name: info} of ports on bridge with external_ids key=value."""
        rows = self._run(self.api.db_find_rows(
            "Bridge", ("name", "=", bridge)), wait=False)[0]
        if not rows:
            return {}
        return {p.name: _port_info(p) for p in rows[0].ports
                if p.external_ids.get(key) == value}

    def ensure_tunnel_bridge(self, name, datapath_type):
        """Bridge that only ever forwards by ovsgre's own flows."""
        api = self.api
        self._run(
            api.add_br(name, may_exist=True, datapath_type=datapath_type),
            api.db_set("Bridge", name, ("datapath_type", datapath_type),
                       ("fail_mode", "secure"),
                       ("protocols", ["OpenFlow10", "OpenFlow13",
                                      "OpenFlow14"]),
                       ("other_config", {"disable-in-band": "true"})),
            _pin_mtu(api, name),
            api.br_set_external_id(name, OWNER_KEY, OWNER),
        )

    def ensure_flow_limit(self, bridge, table, limit, groups):
        """At most `limit` flows in `table` of `bridge`; when full, OVS
        evicts the flow closest to expiry from the largest group (flows
        grouped by the `groups` fields)."""
        rows = self._run(self.api.db_find_rows(
            "Bridge", ("name", "=", bridge)), wait=False)[0]
        current = rows[0].flow_tables.get(table) if rows else None
        if current is not None and list(current.flow_limit) == [limit] \
                and list(current.overflow_policy) == ["evict"] \
                and sorted(current.groups) == sorted(groups):
            return
        create = self.api.db_create(
            "Flow_Table", name=f"ovsgre-{bridge}-{table}", flow_limit=limit,
            overflow_policy="evict", groups=list(groups))
        self._run(create, self.api.db_set(
            "Bridge", bridge, ("flow_tables", {table: create})))

    def ensure_patch(self, bridge, port, peer, external_ids):
        api = self.api
        self._run(
            api.add_port(bridge, port, may_exist=True),
            api.db_set("Interface", port, ("type", "patch"),
                       ("options", {"peer": peer})),
            api.db_set("Port", port, ("external_ids", external_ids)),
        )

    def add_tunnel(self, bridge, port, remote_ip, local_ip, external_ids):
        options = {"remote_ip": remote_ip, "key": "flow"}
        if local_ip:
            options["local_ip"] = local_ip
        api = self.api
        self._run(
            api.add_port(bridge, port, may_exist=True),
            api.db_set("Interface", port, ("type", "gre"),
                       ("options", options)),
            api.db_set("Port", port, ("external_ids", external_ids)),
        )

    def port(self, name):
        return self._run(_Lookup(self.api, "Port", name, _port_info),
                         wait=False)[0]


class _Lookup(command.ReadOnlyCommand):
    """One row by name through the IDL's name index (not a table scan)."""

    def __init__(self, api, table, name, summary):
        super().__init__(api)
        self.table, self.name, self.summary = table, name, summary

    def run_idl(self, txn):
        row = idlutils.row_by_value(self.api.idl, self.table, "name",
                                    self.name, None)
        self.result = self.summary(row) if row is not None else None


class _DelPort(command.BaseCommand):
    """Take a port off one bridge: ovsdbapp's del_port without a bridge
    scans every bridge's whole port list, twice; unreferenced Port and
    Interface rows are garbage-collected by ovsdb-server."""

    def __init__(self, api, bridge, port):
        super().__init__(api)
        self.bridge, self.port = bridge, port

    def run_idl(self, txn):
        port = idlutils.row_by_value(self.api.idl, "Port", "name", self.port,
                                     None)
        if port is None:
            return
        if self.bridge:
            bridges = [idlutils.row_by_value(self.api.idl, "Bridge", "name",
                                             self.bridge, None)]
        else:
            bridges = [b for b in self.api.tables["Bridge"].rows.values()
                       if port in b.ports]
        for bridge in bridges:
            if bridge is not None:
                bridge.delvalue("ports", port)


class _CurCfg(command.ReadOnlyCommand):
    """The configuration number ovs-vswitchd applied last."""

    def run_idl(self, txn):
        rows = list(self.api.tables["Open_vSwitch"].rows.values())
        self.result = rows[0].cur_cfg if rows else 0


class _Bump(transaction.Transaction):
    """Commit without waiting, but number the change (next_cfg, as
    ovs-vsctl does) so that wait_applied can tell when ovs-vswitchd has
    applied it."""

    next_cfg = None

    def pre_commit(self, txn):
        self.api._ovs.increment("next_cfg")
        txn.expected_ifaces = set()

    def post_commit(self, txn):
        super().post_commit(txn)
        self.next_cfg = txn.get_increment_new_value()


class _Changes:
    """A counter of the changes ovs-vswitchd makes that threads can wait
    on (an interface taken, a configuration applied)."""

    def __init__(self):
        self._cond = threading.Condition()
        self._count = 0

    def bump(self):
        with self._cond:
            self._count += 1
            self._cond.notify_all()

    def seen(self):
        with self._cond:
            return self._count

    def wait(self, seen, timeout):
        with self._cond:
            self._cond.wait_for(lambda: self._count != seen, timeout)


class _Idl(connection.OvsdbIdl):
    """ovs-vswitchd writes an interface's ofport (or error) once it has put
    the port in service, and cur_cfg once it has applied a configuration:
    every change of those tables wakes the waiters."""

    def __init__(self, remote, helper, changes):
        super().__init__(remote, helper)
        self._interface_changes = changes

    def notify(self, event, row, updates=None):
        if row._table.name in ("Interface", "Open_vSwitch"):
            self._interface_changes.bump()


class _NoWait(transaction.Transaction):
    """Commit without waiting for ovs-vswitchd (ovs-vsctl --no-wait)."""

    def pre_commit(self, txn):
        txn.expected_ifaces = set()   # ovsdbapp's add_port records into it


def _pin_mtu(api, bridge):
    """A bridge's own (internal) port carries no traffic of ovsgre's; left
    alone, ovs-vswitchd gives it the smallest MTU of the bridge's ports,
    changing it as containers come and go, and every such change of a link
    costs vswitchd a reconfiguration."""
    return api.db_set("Interface", bridge, ("mtu_request", BRIDGE_MTU))


def _first(value):
    """Optional OVSDB columns come as [] or [value]."""
    return value[0] if value else None


def _interface_info(row):
    return {"type": row.type, "ofport": _first(row.ofport),
            "error": _first(row.error) or ""}


def _port_info(row):
    tag = _first(row.tag)
    ofport = _first(row.interfaces[0].ofport) if row.interfaces else None
    return {"tag": tag, "external_ids": dict(row.external_ids),
            "ofport": ofport}


# ------------------------------------------------------- read-only snapshot
# `ovsgre status` and `doctor` must answer within their timeout even when
# ovsdb-server hangs, and must not keep a replica: one `select` transaction
# over a short-lived JSON-RPC connection, bounded by a deadline.

SNAPSHOT_COLUMNS = {
    "Open_vSwitch": ["cur_cfg", "next_cfg", "ovs_version"],
    "Bridge": ["_uuid", "name", "datapath_type", "fail_mode", "ports",
               "external_ids"],
    "Port": ["_uuid", "name", "tag", "interfaces", "external_ids"],
    "Interface": ["_uuid", "name", "type", "options", "ofport", "error",
                  "link_state", "external_ids"],
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


def _optional_datum(value):
    """A column of 0 or 1 values: the value or None."""
    value = _datum(value)
    if isinstance(value, list):
        return value[0] if value else None
    return value


def _as_list(value):
    value = _datum(value)
    return value if isinstance(value, list) else [value]



def transact_once(remote, operations, timeout):
    """One JSON-RPC `transact` on the Open_vSwitch database, through
    python-ovs's client (the IDL's own), bounded by timeout: status and
    doctor must answer while ovsdb-server hangs, and python-ovs's blocking
    calls would wait for ever.  remote: unix:PATH or tcp:HOST:PORT."""
    if not remote.startswith(("unix:", "tcp:")):
        raise Unavailable(f"OVSDB remote {remote!r}: only unix: and tcp: "
                          "are supported here")
    deadline = ovs.timeval.msec() + int(timeout * 1000)
    error, stream = ovs.stream.Stream.open_block(
        ovs.stream.Stream.open(remote), int(timeout * 1000))
    if error:
        raise Unavailable(f"cannot reach OVSDB at {remote}: "
                          f"{os.strerror(error)}")
    conn = ovs.jsonrpc.Connection(stream)
    try:
        request = ovs.jsonrpc.Message.create_request(
            "transact", ["Open_vSwitch"] + list(operations))
        reply = _exchange(conn, request, deadline)
    finally:
        conn.close()
    if reply is None:
        raise Unavailable(f"OVSDB at {remote} did not answer within "
                          f"{timeout:g}s")
    if reply.type == ovs.jsonrpc.Message.T_ERROR or reply.error:
        raise Unavailable(f"OVSDB at {remote}: {reply.error}")
    return reply.result or []


def _exchange(conn, request, deadline):
    """Send request and wait for its reply until deadline (ms, ovs.timeval
    clock); None on timeout, Unavailable when the connection fails."""
    error = conn.send(request)
    while not error:
        conn.run()
        error, message = conn.recv()
        if error == errno.EAGAIN:
            if ovs.timeval.msec() >= deadline:
                return None
            poller = ovs.poller.Poller()
            conn.wait(poller)
            conn.recv_wait(poller)
            poller.timer_wait_until(deadline)
            poller.block()
            error = 0
        elif message is not None and message.id == request.id:
            return message
    reason = os.strerror(error) if error > 0 else "end of stream"
    raise Unavailable(f"OVSDB at {conn.name} closed the connection: "
                      f"{reason}")


def read_snapshot(remote, timeout):
    """Bridges, ports and interfaces by name, plus cur_cfg/next_cfg."""
    tables = list(SNAPSHOT_COLUMNS)
    ops = [{"op": "select", "table": t, "where": [],
            "columns": SNAPSHOT_COLUMNS[t]} for t in tables]
    result = transact_once(remote, ops, timeout)
    rows = {}
    for table, reply in zip(tables, result):
        if not isinstance(reply, dict) or "rows" not in reply:
            raise Unavailable(f"OVSDB select {table}: {reply}")
        rows[table] = reply["rows"]
    return parse_snapshot(rows)


def read_counters(remote, timeout):
    """{port name: {external_ids, statistics, ofport, error, link_state}}
    of the ports ovsgre made (endpoints, tunnels, patch ports): what the
    metrics serve, read when they are scraped (the IDL leaves statistics
    out, see COLUMNS).  ovsgre's ports each have one interface of the same
    name."""
    owned = [["external_ids", "includes", ["map", [[OWNER_KEY, OWNER]]]]]
    ops = [{"op": "select", "table": "Port", "where": owned,
            "columns": ["name", "external_ids"]},
           {"op": "select", "table": "Interface", "where": [],
            "columns": ["name", "statistics", "ofport", "error",
                        "link_state"]}]
    result = transact_once(remote, ops, timeout)
    if len(result) != 2 or not all(isinstance(r, dict) and "rows" in r
                                   for r in result):
        raise Unavailable(f"OVSDB select Port, Interface: {result}")
    interfaces = {row["name"]: row for row in result[1]["rows"]}
    out = {}
    for port in result[0]["rows"]:
        row = interfaces.get(port["name"], {})
        out[port["name"]] = {
            "external_ids": _datum(port.get("external_ids", ["map", []])),
            "statistics": _datum(row.get("statistics", ["map", []])),
            "ofport": _optional_datum(row.get("ofport", ["set", []])),
            "error": _optional_datum(row.get("error", ["set", []])),
            "link_state": _optional_datum(row.get("link_state",
                                                  ["set", []]))}
    return out


def parse_snapshot(rows):
    """Raw select rows per table -> the snapshot dict used here."""
    interfaces, by_iface_uuid = {}, {}
    for row in rows.get("Interface", []):
        ofport = _optional_datum(row.get("ofport"))
        info = {"type": row.get("type", ""),
                "options": _datum(row.get("options", ["map", []])),
                "ofport": ofport,
                "error": _optional_datum(row.get("error")),
                "link_state": _optional_datum(row.get("link_state",
                                                      ["set", []])),
                "external_ids": _datum(row.get("external_ids",
                                               ["map", []]))}
        interfaces[row["name"]] = info
        by_iface_uuid[_atom(row["_uuid"])] = row["name"]
    ports, by_port_uuid = {}, {}
    for row in rows.get("Port", []):
        ifaces = [by_iface_uuid.get(u, u)
                  for u in _as_list(row.get("interfaces", ["set", []]))]
        ports[row["name"]] = {
            "bridge": None, "tag": _optional_datum(row.get("tag")),
            "interfaces": ifaces,
            "external_ids": _datum(row.get("external_ids", ["map", []]))}
        by_port_uuid[_atom(row["_uuid"])] = row["name"]
    bridges = {}
    for row in rows.get("Bridge", []):
        port_names = sorted(by_port_uuid.get(u, u)
                            for u in _as_list(row.get("ports", ["set", []])))
        bridges[row["name"]] = {
            "datapath_type": row.get("datapath_type", "") or "system",
            "fail_mode": _optional_datum(row.get("fail_mode")),
            "ports": port_names,
            "external_ids": _datum(row.get("external_ids", ["map", []]))}
        for name in port_names:
            if name in ports:
                ports[name]["bridge"] = row["name"]
    ovs = (rows.get("Open_vSwitch") or [{}])[0]
    return {"bridges": bridges, "ports": ports, "interfaces": interfaces,
            "cur_cfg": ovs.get("cur_cfg"), "next_cfg": ovs.get("next_cfg"),
            "ovs_version": _optional_datum(ovs.get("ovs_version",
                                                   ["set", []]))}


