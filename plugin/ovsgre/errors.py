"""Errors the driver raises; the protocol layer maps them to HTTP status."""


class OvsgreError(Exception):
    """Base class; `status` is the HTTP status the protocol layer answers,
    `reason` the label of the error in the metrics."""

    status = 500
    reason = "error"


class InvalidRequest(OvsgreError):
    """The request is malformed or names an impossible value (HTTP 400)."""

    status = 400
    reason = "invalid"


class NotFound(OvsgreError):
    """The request names a network or endpoint this host does not know."""

    status = 404
    reason = "not_found"


class Conflict(OvsgreError):
    """The request contradicts existing state (e.g. a different config)."""

    status = 409
    reason = "conflict"


class DataplaneError(OvsgreError):
    """OVS or the kernel failed or timed out (HTTP 500)."""

    status = 500
    reason = "dataplane"


class Unavailable(OvsgreError):
    """A dependency (OVSDB, store) cannot be reached right now."""

    status = 503
    reason = "unavailable"
