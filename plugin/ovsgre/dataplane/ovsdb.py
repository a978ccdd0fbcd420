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


def owner_ids(network_id, endpoint_id):
    return {OWNER_KEY: OWNER, NETWORK_KEY: network_id,
            ENDPOINT_KEY: endpoint_id}


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
        """{port name: {tag, external_ids, ofport}} of every ovsgre port."""
        rows = self._run(self.api.db_find_rows(
            "Port", ("external_ids", "=", {OWNER_KEY: OWNER})))[0]
        return {row.name: _port_info(row) for row in rows}

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
