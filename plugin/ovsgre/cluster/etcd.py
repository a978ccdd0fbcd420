"""The cluster store in etcd (v3, through its JSON gateway with etcd3gw).

Why etcd3gw: maintained (OpenStack), pure Python over HTTP (no gRPC or
protobuf pins to fight), synchronous like the rest of the plugin, and TLS
through `requests`.  Its two known weak points are handled here:

- it talks to one endpoint: `EtcdKV` rotates through the configured
  endpoints when one fails;
- its watcher goes silent when the member dies: `watch_prefix` here is our
  own loop on the same HTTP API that reports the end of a stream, and the
  lease keepalive (`Registration`) notices a dead etcd and restarts it.

Every request has a timeout (`--etcd-timeout`), so a call that needs etcd
answers an error quickly instead of hanging dockerd, which has no timeout.
"""

import base64
import json
import logging
import os
import socket
import threading
import urllib.parse

import etcd3gw
from etcd3gw import exceptions as etcd_exc
import requests

from ..errors import Unavailable
from .records import printable, shown_url

LOG = logging.getLogger(__name__)

FAILURES = (etcd_exc.Etcd3Exception, requests.RequestException, OSError)


def _b64(text):
    return base64.b64encode(text.encode()).decode()


def _unb64(text):
    return base64.b64decode(text).decode()


def _range_end(prefix):
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


class EtcdKV:
    shared = True   # every host sees the same data

    def __init__(self, endpoints, timeout=2.0, ca=None, cert=None, key=None):
        if not endpoints:
            raise ValueError("no etcd endpoint")
        self.endpoints = list(endpoints)
        self.timeout = timeout
        self._tls = {"ca_cert": ca or None, "cert_cert": cert or None,
                     "cert_key": key or None}
        self._lock = threading.Lock()
        self._index = 0
        self._clients = [self._client(url) for url in self.endpoints]

    @classmethod
    def from_settings(cls, settings, timeout=None):
        """The client the plugin and every command build from settings
        (--etcd, --etcd-timeout or a shorter timeout, the TLS files)."""
        wait = settings.etcd_timeout if timeout is None else \
            min(timeout, settings.etcd_timeout)
        return cls(settings.etcd, wait, settings.etcd_ca,
                   settings.etcd_cert, settings.etcd_key)

    def _client(self, url):
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"bad etcd endpoint {shown_url(url)} (want "
                             "http://HOST:PORT or https://HOST:PORT)")
        return etcd3gw.Etcd3Client(
            host=parsed.hostname, port=parsed.port or 2379,
            protocol=parsed.scheme, timeout=self.timeout, api_path="/v3/",
            session=self._session())

    def _session(self):
        """No settings from the environment: a REQUESTS_CA_BUNDLE or
        HTTPS_PROXY meant for other traffic would override --etcd-ca or
        send etcd requests through a proxy."""
        session = requests.Session()
        session.trust_env = False
        session.verify = self._tls["ca_cert"] or \
            os.environ.get("REQUESTS_CA_BUNDLE") or True
        if self._tls["cert_cert"] and self._tls["cert_key"]:
            session.cert = (self._tls["cert_cert"], self._tls["cert_key"])
        return session

    def call(self, what, func):
        """Run func(client) against the endpoints in turn until one works."""
        errors = []
        for _ in range(len(self._clients)):
            with self._lock:
                index = self._index
            client = self._clients[index]
            try:
                return func(client)
            except FAILURES as exc:
                errors.append(f"{shown_url(self.endpoints[index])}: "
                              f"{_without_secrets(str(exc), self.endpoints)}")
                with self._lock:
                    if self._index == index:
                        self._index = (index + 1) % len(self._clients)
        raise Unavailable(f"etcd unreachable ({what}): {'; '.join(errors)}")

    # -- KV interface -----------------------------------------------------
    def get(self, key):
        values = self.call("get", lambda c: c.get(key))
        return json.loads(values[0]) if values else None

    def list(self, prefix):
        items, _ = self.list_with_revision(prefix)
        return items

    def list_with_revision(self, prefix):
        """({key: value}, store revision of the read) for watch resumption."""
        body = {"key": _b64(prefix), "range_end": _b64(_range_end(prefix))}
        reply = self.call("list", lambda c: c.post(
            c.get_url("/kv/range"), json=body))
        items = {}
        for kv in reply.get("kvs", []):
            try:
                items[_unb64(kv["key"])] = json.loads(
                    _unb64(kv.get("value", "")))
            except ValueError:
                LOG.warning("skipping non-JSON etcd key %s",
                            printable(kv["key"]))
        return items, int(reply["header"]["revision"])

    def put(self, key, value, lease=None):
        data = json.dumps(value, sort_keys=True)
        self.call("put", lambda c: c.put(key, data, lease=lease))

    def create(self, key, value, lease=None):
        data = json.dumps(value, sort_keys=True)
        return self.call("create", lambda c: c.create(key, data,
                                                      lease=lease))

    def replace(self, key, old, new):
        old_data = json.dumps(old, sort_keys=True)
        new_data = json.dumps(new, sort_keys=True)
        return self.call("replace", lambda c: c.replace(key, old_data,
                                                        new_data))

    def write_if_unchanged(self, prefix, revision, key, old, new):
        """Write key := new in one transaction, if its value is still old
        (None: absent) and no key under prefix was modified after
        revision (a deletion there only ever removes a reason to refuse)."""
        compare = [{"key": _b64(prefix), "range_end": _b64(_range_end(prefix)),
                    "target": "MOD", "result": "LESS",
                    "mod_revision": str(revision + 1)}]
        if old is None:
            compare.append({"key": _b64(key), "target": "CREATE",
                            "result": "EQUAL", "create_revision": "0"})
        else:
            compare.append({"key": _b64(key), "target": "VALUE",
                            "result": "EQUAL",
                            "value": _b64(json.dumps(old, sort_keys=True))})
        body = {"compare": compare, "failure": [], "success": [
            {"request_put": {"key": _b64(key), "value": _b64(
                json.dumps(new, sort_keys=True))}}]}
        reply = self.call("write_if_unchanged",
                          lambda c: c.transaction(body))
        return bool(reply.get("succeeded"))

    def delete(self, key):
        self.call("delete", lambda c: c.delete(key))

    def delete_if(self, key, old):
        """Delete only if the value is still `old` (one transaction)."""
        body = {
            "compare": [{"key": _b64(key), "result": "EQUAL",
                         "target": "VALUE",
                         "value": _b64(json.dumps(old, sort_keys=True))}],
            "success": [{"request_delete_range": {"key": _b64(key)}}],
            "failure": [],
        }
        reply = self.call("delete_if", lambda c: c.transaction(body))
        return bool(reply.get("succeeded"))

    def close(self):
        for client in self._clients:
            client.session.close()

    # -- leases and watches ------------------------------------------------
    def grant(self, ttl):
        return self.call("lease grant", lambda c: c.lease(ttl))

    def keepalive(self, lease):
        """Refresh; False when the lease is gone (expired while away)."""
        ttl = self.call("lease keepalive", lambda c: c.post(
            c.get_url("/lease/keepalive"), json={"ID": lease.id}))
        result = ttl.get("result", ttl)
        return int(result.get("TTL", 0)) > 0

    def watch_stream(self, prefix, start_revision):
        """An open HTTP response streaming watch events for prefix."""
        body = {"create_request": {
            "key": _b64(prefix), "range_end": _b64(_range_end(prefix)),
            "start_revision": start_revision}}

        def open_stream(client):
            resp = client.session.post(
                client.get_url("/watch"), json=body, stream=True,
                timeout=(self.timeout, None))
            resp.raise_for_status()
            return resp
        return self.call("watch", open_stream)


def iter_events(resp):
    """(type, key, value) per event; ends when the stream ends."""
    for line in resp.iter_lines(chunk_size=None):
        if not line.strip():
            continue
        result = json.loads(line).get("result", {})
        if result.get("canceled"):
            raise Unavailable(f"etcd canceled the watch: {result}")
        for event in result.get("events", []):
            kv = event["kv"]
            key = _unb64(kv["key"])
            kind = event.get("type", "PUT")
            value = json.loads(_unb64(kv["value"])) if kind == "PUT" \
                and kv.get("value") else None
            yield kind, key, value


class Watcher(threading.Thread):
    """Keeps `callback(items)` informed of a prefix's content.

    Reads the prefix, then watches from the next revision; on any failure
    re-reads and re-watches after a short backoff.  `kick()` closes the
    stream (the keepalive calls it when etcd looked dead, because a watch on
    a dead member can hang without an error)."""

    def __init__(self, kv, prefix, callback, backoff=0.5):
        super().__init__(name=f"watch {prefix}", daemon=True)
        self.kv = kv
        self.prefix = prefix
        self.callback = callback
        self.backoff = backoff
        self._halt = threading.Event()
        self._resp = None
        self.connected = threading.Event()

    def run(self):
        while not self._halt.is_set():
            try:
                self._cycle()
            except Exception as exc:  # etcd down, stream cut, bad data
                if not self._halt.is_set():
                    LOG.warning("watch %s interrupted: %s", self.prefix, exc)
            self.connected.clear()
            self._halt.wait(self.backoff)

    def _cycle(self):
        items, revision = self.kv.list_with_revision(self.prefix)
        self.callback(dict(items))
        self._resp = self.kv.watch_stream(self.prefix, revision + 1)
        self.connected.set()
        try:
            for kind, key, value in iter_events(self._resp):
                if kind == "PUT":
                    items[key] = value
                else:
                    items.pop(key, None)
                self.callback(dict(items))
        finally:
            self._resp.close()
        if not self._halt.is_set():
            raise Unavailable("watch stream ended")

    def kick(self):
        """Cut the stream from under the reading thread.  Shutting the
        socket down wakes a blocked read; closing the response object from
        another thread can block."""
        resp = self._resp
        if resp is None:
            return
        try:
            sock = resp.raw._fp.fp.raw._sock
            sock.shutdown(socket.SHUT_RDWR)
        except (AttributeError, OSError, ValueError):
            pass

    def stop(self):
        self._halt.set()
        self.kick()


class Registration(threading.Thread):
    """This host's key under a lease, kept alive; re-registers by itself
    after etcd comes back (the lease may have expired meanwhile)."""

    def __init__(self, kv, key, value, ttl, on_trouble=None):
        super().__init__(name="etcd registration", daemon=True)
        self.kv = kv
        self.key = key
        self.value = value
        self.ttl = ttl
        self.on_trouble = on_trouble
        self._lease = None
        self._halt = threading.Event()
        self.registered = threading.Event()

    def register(self):
        self._lease = self.kv.grant(self.ttl)
        self.kv.put(self.key, self.value, lease=self._lease)
        self.registered.set()
        LOG.info("registered %s in etcd (lease ttl %ss)", self.key, self.ttl)

    def run(self):
        interval = max(self.ttl / 3.0, 0.5)
        while not self._halt.wait(0 if not self.registered.is_set()
                                  else interval):
            try:
                if not self.registered.is_set() or \
                        not self.kv.keepalive(self._lease) or \
                        self.kv.get(self.key) is None:
                    # lease gone (etcd was down past the TTL), or the key
                    # deleted under a live lease (by hand, a restore):
                    # either way this host would drop out of every mesh
                    self.registered.clear()
                    self.register()
            except Exception as exc:
                if self.registered.is_set():
                    LOG.warning("etcd keepalive failed: %s", exc)
                self.registered.clear()
                if self.on_trouble:
                    self.on_trouble()
                self._halt.wait(min(interval, 1.0))

    def stop(self, revoke=True):
        self._halt.set()
        if revoke and self._lease is not None:
            try:
                self.kv.call("lease revoke", lambda c: c.post(
                    c.get_url("/kv/lease/revoke"),
                    json={"ID": self._lease.id}))
            except Exception as exc:
                LOG.info("lease revoke failed: %s", exc)


def _without_secrets(text, urls):
    """An error text with any endpoint's user and password taken out."""
    for url in urls:
        parts = urllib.parse.urlsplit(url)
        if "@" in parts.netloc:
            text = text.replace(parts.netloc.rsplit("@", 1)[0] + "@", "***@")
    return text
