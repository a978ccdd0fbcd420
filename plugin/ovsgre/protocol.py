"""HTTP/JSON: the libnetwork remote-driver protocol over Flask.

Parses and validates bodies into specs (schema.py), calls the driver or the
IPAM with them, builds Docker's replies from what they return, maps errors to
``{"Err": ...}`` with a 4xx status for bad input and 5xx for failures, logs
one line per call.  It never touches OVS or the kernel itself.
"""

import dataclasses
import json
import logging
import math
import time

from flask import Flask, g, jsonify, request
from werkzeug.exceptions import HTTPException

from . import schema
from .errors import InvalidRequest, OvsgreError

LOG = logging.getLogger("ovsgre.calls")

ERR_KEY = "Err"          # NetworkDriver replies
IPAM_ERR_KEY = "Error"   # IpamDriver replies (its client reads only this on 200)


def create_app(driver, ipam=None, metrics=None):
    """metrics: a metrics.Metrics that counts and times every call."""
    app = Flask("ovsgre")
    app.config["MAX_CONTENT_LENGTH"] = schema.MAX_BODY
    app.config["ovsgre.driver"] = driver
    handlers = _handlers(driver)
    ipam_handlers = _ipam_handlers(ipam) if ipam is not None else {}
    implements = ["NetworkDriver"] + (["IpamDriver"] if ipam_handlers
                                      else [])

    @app.post("/Plugin.Activate")
    def activate():
        return _timed("Plugin.Activate", {},
                      lambda: {"Implements": implements})

    if ipam_handlers:
        @app.post("/IpamDriver.<call>")
        def ipam_driver(call):
            handler = ipam_handlers.get(call)
            if handler is None:
                return _error(404, f"unknown call IpamDriver.{call}",
                              IPAM_ERR_KEY, "unknown_call")
            return _dispatch(call, handler, schema.IPAM_CALLS, IPAM_ERR_KEY)

    @app.post("/NetworkDriver.GetCapabilities")
    def capabilities():
        return _timed("GetCapabilities", {}, driver.capabilities)

    @app.post("/NetworkDriver.<call>")
    def network_driver(call):
        handler = handlers.get(call)
        if handler is None:
            return _error(404, f"unknown call NetworkDriver.{call}",
                          reason="unknown_call")
        return _dispatch(call, handler)

    @app.errorhandler(HTTPException)
    def http_error(exc):
        key = IPAM_ERR_KEY if request.path.startswith("/IpamDriver.") \
            else ERR_KEY
        return _error(exc.code, exc.description or exc.name, key, "http")

    if metrics is not None:
        known = {"Plugin.Activate", "NetworkDriver.GetCapabilities"}
        known |= {"NetworkDriver." + c for c in handlers}
        known |= {"IpamDriver." + c for c in ipam_handlers}
        _count_calls(app, metrics, known)
    return app


def _count_calls(app, metrics, known):
    """Every answered request, timed from its arrival, under its call name
    (unknown paths under one label: whoever can reach the socket must not
    make up series)."""
    @app.before_request
    def started():
        g.started = time.monotonic()

    @app.after_request
    def answered(response):
        call = request.path.lstrip("/")
        if call not in known:
            call = "unknown"
        metrics.observe_call(call, time.monotonic() - g.started,
                             g.get("error_reason"))
        return response


def _handlers(driver):
    """Call name -> function(spec or clean body) -> reply dict: Docker's
    reply built from what the driver returns."""
    return {
        "CreateNetwork": lambda spec: driver.create_network(spec) or {},
        "DeleteNetwork": lambda b: driver.delete_network(
            b["NetworkID"]) or {},
        # Swarm-scope calls reach only global-scope (v2) plugins; the
        # options returned here are what every node's CreateNetwork gets.
        "AllocateNetwork": lambda spec: allocated_reply(
            spec, driver.allocate_network(spec)),
        "FreeNetwork": lambda b: driver.free_network(b["NetworkID"]) or {},
        "CreateEndpoint": lambda spec: endpoint_reply(
            driver.create_endpoint(spec)),
        "EndpointOperInfo": lambda b: {"Value": dataclasses.asdict(
            driver.endpoint_info(b["NetworkID"], b["EndpointID"]))},
        "DeleteEndpoint": lambda b: driver.delete_endpoint(
            b["NetworkID"], b["EndpointID"]) or {},
        "Join": lambda spec: join_reply(driver.join(spec)),
        "Leave": lambda b: driver.leave(
            b["NetworkID"], b["EndpointID"]) or {},
        "ProgramExternalConnectivity": lambda b: {},
        "RevokeExternalConnectivity": lambda b: {},
        "DiscoverNew": lambda b: {},
        "DiscoverDelete": lambda b: {},
    }


def _ipam_handlers(ipam):
    return {
        "GetCapabilities": lambda b: ipam.capabilities(),
        "GetDefaultAddressSpaces": lambda b: ipam.default_spaces(),
        "RequestPool": lambda req: pool_reply(ipam.request_pool(req)),
        "ReleasePool": lambda b: ipam.release_pool(b["PoolID"]) or {},
        "RequestAddress": lambda req: address_reply(
            ipam.request_address(req)),
        "ReleaseAddress": lambda b: ipam.release_address(
            b["PoolID"], b["Address"]) or {},
    }


# -- replies: the driver's and the IPAM's values -> Docker's bodies ---------
def allocated_reply(spec, key):
    """The options every node's CreateNetwork receives: the ones given,
    with the cluster name and the GRE key fixed."""
    return {"Options": dict(spec.options, **{schema.OPT_NAME: spec.name,
                                             schema.OPT_KEY: str(key)})}


def endpoint_reply(chosen):
    """Only fields Docker left empty; changing a given one is an error."""
    return {"Interface": {"MacAddress": chosen.mac}} if chosen.mac else {}


def join_reply(joined):
    reply = {"InterfaceName": {"SrcName": joined.peer_if,
                               "DstPrefix": "eth"}}
    if joined.disable_gateway:
        reply["DisableGatewayService"] = True
    return reply


def pool_reply(granted):
    return {"PoolID": granted.pool_id, "Pool": granted.pool, "Data": {}}


def address_reply(address):
    return {"Address": address, "Data": {}}


def _dispatch(call, handler, calls=schema.CALLS, err_key=ERR_KEY):
    start = time.monotonic()   # the logged time includes parsing
    body = {}
    try:
        body = _body()
        missing = schema.first_required(call, calls)
        if missing and not request.get_data(cache=True).strip():
            # What dockerd sends when it re-sends a call whose connection
            # dropped (the plugin restarted mid-call): the body is lost.
            raise InvalidRequest(
                f"empty request body (missing field {missing}): dockerd "
                "re-sends a call without its body after the connection to "
                "the plugin dropped (was the plugin restarted?); run the "
                "command again")
        clean = schema.validate(call, body, calls)
        spec = schema.parse(call, clean)
    except OvsgreError as exc:
        LOG.warning("%s%s rejected in %.1f ms: %s", call, _ids(body),
                    _ms(start), exc)
        return _error(exc.status, str(exc), err_key, exc.reason)
    return _timed(call, clean, lambda: handler(spec), err_key, start)


def _body():
    # dockerd sends no Content-Type header: the body is JSON regardless.
    raw = request.get_data(cache=True)
    if not raw.strip():
        return {}
    try:
        return json.loads(raw, parse_constant=_no_constant,
                          parse_float=_finite)
    except _BadNumber as exc:
        raise InvalidRequest(f"request body is not valid JSON: {exc}") \
            from None
    except (ValueError, RecursionError):
        raise InvalidRequest("request body is not valid JSON") from None


class _BadNumber(ValueError):
    pass


def _no_constant(name):
    # Python's json reads NaN and Infinity; JSON (and dockerd) has neither.
    raise _BadNumber(f"{name} is not a JSON number")


def _finite(text):
    # 1e400 is valid JSON but no float: it would reach the driver as inf.
    value = float(text)
    if math.isinf(value):
        raise _BadNumber(f"number {text[:40]} is out of range")
    return value


def _timed(call, body, func, err_key=ERR_KEY, start=None):
    start = time.monotonic() if start is None else start
    ids = _ids(body)
    try:
        reply = func()
    except OvsgreError as exc:
        LOG.warning("%s%s failed in %.1f ms: %s", call, ids,
                    _ms(start), exc)
        return _error(exc.status, str(exc), err_key, exc.reason)
    except Exception as exc:  # a bug or an unexpected library error
        LOG.exception("%s%s crashed in %.1f ms", call, ids, _ms(start))
        return _error(500, f"internal error in {call}: "
                      f"{type(exc).__name__}: {exc}", err_key, "internal")
    LOG.info("%s%s ok in %.1f ms", call, ids, _ms(start))
    return jsonify(reply)


def _ids(body):
    """ ' network=… endpoint=… pool=…' for the log line; also for bodies
    that failed validation, so only what is printable text is shown."""
    if not isinstance(body, dict):
        return ""
    parts = [f" {key[:-2].lower()}={_printable(body.get(key), 12)}"
             for key in ("NetworkID", "EndpointID")]
    parts += [f" {key.lower()}={_printable(body.get(key), 64)}"
              for key in ("PoolID", "Pool", "Address")]
    return "".join(p for p in parts if not p.endswith("="))


def _printable(value, limit):
    if not isinstance(value, str) or not value.isprintable():
        return ""
    return value[:limit]


def _ms(start):
    return (time.monotonic() - start) * 1000


def _error(status, message, key=ERR_KEY, reason="error"):
    """On any status but 200, dockerd's plugin client reads only "Err",
    whatever the interface: an IPAM error carries both keys.  reason: the
    error's label in the metrics."""
    g.error_reason = reason
    response = jsonify({key: message, ERR_KEY: message})
    response.status_code = status
    return response
