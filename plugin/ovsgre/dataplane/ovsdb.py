"""The integration bridge and its ports, through OVSDB (ovsdbapp IDL).

Only this module talks to ovsdb-server.  Every port ovsgre creates carries
external_ids {owner: ovsgre, ovsgre_network: ID, ovsgre_endpoint: ID}, so the
plugin can always tell its own ports from anybody else's.
"""

import logging

from ovsdbapp import exceptions as ovsdb_exc
from ovsdbapp.backend.ovs_idl import connection, idlutils
from ovsdbapp.schema.open_vswitch import impl_idl

from .. import OWNER
from ..errors import DataplaneError, Unavailable

LOG = logging.getLogger(__name__)

TABLES = ("Open_vSwitch", "Bridge", "Port", "Interface")
OWNER_KEY = "owner"
NETWORK_KEY = "ovsgre_network"
ENDPOINT_KEY = "ovsgre_endpoint"
ROLE_KEY = "ovsgre_role"      # endpoint (default), patch or tunnel


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
        for table in TABLES:
            helper.register_table(table)
        idl = connection.OvsdbIdl(remote, helper)
        self._conn = connection.Connection(idl, timeout)
        self.api = impl_idl.OvsdbIdl(self._conn)

    def close(self):
        self._conn.stop(timeout=self.timeout)

    def _run(self, *commands):
        try:
            with self.api.transaction(check_error=True) as txn:
                for cmd in commands:
                    txn.add(cmd)
            return [cmd.result for cmd in commands]
        except ovsdb_exc.TimeoutException as exc:
            raise DataplaneError(
                f"OVSDB did not answer within {self.timeout}s: {exc}") from exc
        except Exception as exc:
            raise DataplaneError(f"OVSDB transaction failed: {exc}") from exc

    def ensure_bridge(self, name, datapath_type):
        """Create the bridge if missing; keep its datapath type as asked."""
        api = self.api
        self._run(
            api.add_br(name, may_exist=True, datapath_type=datapath_type),
            api.db_set("Bridge", name, ("datapath_type", datapath_type)),
            api.br_set_external_id(name, OWNER_KEY, OWNER),
        )

    def bridge(self, name):
        rows = self._run(self.api.db_find_rows(
            "Bridge", ("name", "=", name)))[0]
        if not rows:
            return None
        row = rows[0]
        return {"name": row.name, "datapath_type": row.datapath_type,
                "ports": sorted(p.name for p in row.ports)}

    def add_port(self, bridge, port, tag, external_ids):
        """Attach an existing kernel link as an access port with VLAN tag."""
        api = self.api
        self._run(
            api.add_port(bridge, port, may_exist=True),
            api.db_set("Port", port, ("tag", tag),
                       ("external_ids", external_ids)),
        )

    def del_port(self, port):
        self._run(self.api.del_port(port, if_exists=True))

    def owned_ports(self):
        """{port name: {tag, external_ids, ofport}} of every endpoint port
        ovsgre made (patch and tunnel ports are the tunnel code's)."""
        rows = self._run(self.api.db_find_rows(
            "Port", ("external_ids", "=", {OWNER_KEY: OWNER})))[0]
        return {row.name: _port_info(row) for row in rows
                if row.external_ids.get(ROLE_KEY, "endpoint") == "endpoint"}

    def ports_with(self, bridge, key, value):
        """{port name: info} of ports on bridge with external_ids key=value."""
        rows = self._run(self.api.db_find_rows(
            "Bridge", ("name", "=", bridge)))[0]
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
            api.br_set_external_id(name, OWNER_KEY, OWNER),
        )

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
        rows = self._run(self.api.db_find_rows(
            "Port", ("name", "=", name)))[0]
        return _port_info(rows[0]) if rows else None


def _port_info(row):
    tag = row.tag[0] if row.tag else None
    ofport = None
    if row.interfaces:
        value = row.interfaces[0].ofport
        ofport = value[0] if value else None
    return {"tag": tag, "external_ids": dict(row.external_ids),
            "ofport": ofport}
