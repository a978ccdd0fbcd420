"""OVSDB: bridges, ports and interfaces, read through the plugin's own
OVSDB module (one short-lived `select`, bounded by the timeout)."""

from ..dataplane import ovsdb as dataplane_ovsdb
from ..errors import Unavailable
from .command import ProbeError
from .records import OvsdbSnapshot


def read_ovsdb(remote, timeout) -> OvsdbSnapshot:
    """Bridges, ports and interfaces by name, plus cur_cfg/next_cfg
    (dataplane.ovsdb.read_snapshot); ProbeError when OVSDB does not
    answer in time."""
    try:
        return dataplane_ovsdb.read_snapshot(remote, timeout)
    except Unavailable as exc:
        raise ProbeError(str(exc)) from exc


def parse_ovsdb(rows) -> OvsdbSnapshot:
    """Raw select rows per table -> the snapshot dict."""
    return dataplane_ovsdb.parse_snapshot(rows)
