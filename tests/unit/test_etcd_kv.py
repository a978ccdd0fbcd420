"""EtcdKV without an etcd server: endpoint parsing, rotation through the
endpoints in ``call()``, the KV methods over a fake etcd3gw client, and the
watch stream parser (``iter_events``) on a canned stream."""

import base64
import json
import threading
import time

import pytest
import requests
from etcd3gw import exceptions as etcd_exc

from ovsgre.cluster.etcd import (EtcdKV, Registration, Watcher,
                                 iter_events)
from ovsgre.errors import Unavailable

from .conftest import eventually

EPS = ["http://10.0.0.1:2379", "http://10.0.0.2:2379", "http://10.0.0.3:2379"]


def b64(text):
    return base64.b64encode(text.encode()).decode()


class FakeSession:
    def __init__(self):
        self.closed = False

    def close(self):
        self.closed = True


class FakeClient:
    """Answers like etcd3gw.Etcd3Client, or raises ``error`` on every call."""

    def __init__(self, name, error=None):
        self.name = name
        self.error = error
        self.calls = []
        self.data = {}
        self.session = FakeSession()
        self.post_reply = {}

    def _enter(self, *call):
        self.calls.append(call)
        if self.error is not None:
            raise self.error

    def get_url(self, path):
        return f"http://{self.name}/v3/" + path.lstrip("/")

    def get(self, key):
        self._enter("get", key)
        return [self.data[key].encode()] if key in self.data else []

    def put(self, key, value, lease=None):
        self._enter("put", key, value, lease)
        self.data[key] = value
        return True

    def create(self, key, value, lease=None):
        self._enter("create", key, value, lease)
        if key in self.data:
            return False
        self.data[key] = value
        return True

    def replace(self, key, old, new):
        self._enter("replace", key, old, new)
        if self.data.get(key) != old:
            return False
        self.data[key] = new
        return True

    def delete(self, key):
        self._enter("delete", key)
        return self.data.pop(key, None) is not None

    def post(self, url, json=None):
        self._enter("post", url, json)
        return self.post_reply


def make_kv(*clients):
    kv = EtcdKV([f"http://{c.name}:2379" for c in clients])
    kv._clients = list(clients)
    return kv


# -- endpoints ----------------------------------------------------------------

@pytest.mark.parametrize("endpoints", [
    ["ftp://x"], ["ftp://x:2379"], ["http://"], ["10.0.0.1:2379"],
    ["etcd"], [EPS[0], "unix:///run/etcd.sock"], ["https://:2379"]])
def test_bad_endpoint(endpoints):
    with pytest.raises(ValueError, match="etcd endpoint"):
        EtcdKV(endpoints)


def test_no_endpoint():
    with pytest.raises(ValueError):
        EtcdKV([])


def test_endpoints_parsed():
    kv = EtcdKV(["http://10.0.0.1:2379", "https://etcd.example:2380",
                 "http://h"], timeout=1.5)
    got = [(c.host, c.port, c.protocol) for c in kv._clients]
    assert got == [("10.0.0.1", 2379, "http"),
                   ("etcd.example", 2380, "https"), ("h", 2379, "http")]
    assert all(c.timeout == 1.5 for c in kv._clients)
    assert kv._clients[0].get_url("/kv/range") == \
        "http://10.0.0.1:2379/v3/kv/range"
    assert kv.shared is True and kv.endpoints[2] == "http://h"
    kv.close()


def test_tls_options():
    kv = EtcdKV(["https://etcd:2379"], ca="/ca.pem", cert="/c.pem",
                key="/k.pem")
    session = kv._clients[0].session
    assert session.verify == "/ca.pem"
    assert session.cert == ("/c.pem", "/k.pem")


def test_close_closes_sessions():
    a, b = FakeClient("a"), FakeClient("b")
    make_kv(a, b).close()
    assert a.session.closed and b.session.closed


# -- rotation -----------------------------------------------------------------

def test_call_moves_to_next_endpoint():
    a = FakeClient("a", requests.ConnectionError("refused"))
    b = FakeClient("b")
    b.data["/ovsgre/k"] = '{"v": 1}'
    kv = make_kv(a, b)
    assert kv.get("/ovsgre/k") == {"v": 1}
    assert kv._index == 1
    assert len(a.calls) == 1 and len(b.calls) == 1
    # the next call starts at the endpoint that worked
    assert kv.get("/ovsgre/k") == {"v": 1}
    assert len(a.calls) == 1 and len(b.calls) == 2


@pytest.mark.parametrize("error", [
    requests.ConnectionError("refused"), requests.Timeout("slow"),
    etcd_exc.ConnectionFailedError("down"),
    etcd_exc.ConnectionTimeoutError("slow"),
    etcd_exc.InternalServerError("oops"), OSError("no route")])
def test_failures_that_rotate(error):
    a, b = FakeClient("a", error), FakeClient("b")
    kv = make_kv(a, b)
    assert kv.create("/ovsgre/k", 1) is True
    assert kv._index == 1


def test_call_wraps_around():
    a, b, c = FakeClient("a"), FakeClient("b"), FakeClient("c")
    kv = make_kv(a, b, c)
    kv._index = 2
    c.error = requests.ConnectionError("refused")
    kv.put("/ovsgre/k", 1)
    assert kv._index == 0 and len(a.calls) == 1 and not b.calls


def test_all_failing_names_each_endpoint():
    clients = [FakeClient(n, requests.ConnectionError(f"refused {n}"))
               for n in ("a", "b", "c")]
    kv = make_kv(*clients)
    kv._index = 1
    with pytest.raises(Unavailable) as exc:
        kv.get("/ovsgre/k")
    msg = str(exc.value)
    assert "(get)" in msg
    for n in ("a", "b", "c"):
        assert f"http://{n}:2379: refused {n}" in msg
    assert all(len(c.calls) == 1 for c in clients)     # each tried once
    assert exc.value.status == 503


def test_other_errors_propagate_without_rotation():
    a, b = FakeClient("a", KeyError("bug")), FakeClient("b")
    kv = make_kv(a, b)
    with pytest.raises(KeyError):
        kv.get("/ovsgre/k")
    assert kv._index == 0 and not b.calls


def test_concurrent_failover_moves_index_once():
    a = FakeClient("a", requests.ConnectionError("refused"))
    b = FakeClient("b")
    kv = make_kv(a, b)
    barrier = threading.Barrier(8)
    results = []

    def worker():
        barrier.wait()
        results.append(kv.create(f"/ovsgre/{threading.get_ident()}", 1))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert results == [True] * 8
    assert kv._index == 1


# -- KV methods over the fake client ----------------------------------------

def test_kv_methods_serialise_json():
    c = FakeClient("a")
    kv = make_kv(c)
    kv.put("/ovsgre/k", {"b": 1, "a": [1, 2]})
    assert c.data["/ovsgre/k"] == '{"a": [1, 2], "b": 1}'   # sorted keys
    assert kv.get("/ovsgre/k") == {"a": [1, 2], "b": 1}
    assert kv.get("/ovsgre/none") is None
    assert kv.create("/ovsgre/k", 5) is False
    assert kv.create("/ovsgre/n", {"z": 1, "y": 2}) is True
    assert kv.replace("/ovsgre/k", {"b": 1, "a": [1, 2]}, {"v": 2}) is True
    assert kv.replace("/ovsgre/k", {"b": 1, "a": [1, 2]}, {"v": 3}) is False
    assert kv.get("/ovsgre/k") == {"v": 2}
    kv.delete("/ovsgre/k")
    assert kv.get("/ovsgre/k") is None


def test_lease_passed_through():
    c = FakeClient("a")
    kv = make_kv(c)
    lease = object()
    kv.put("/ovsgre/hosts/x", {"ip": "x"}, lease=lease)
    assert c.calls[-1][-1] is lease


def test_list_with_revision():
    c = FakeClient("a")
    c.post_reply = {"header": {"revision": "42"}, "kvs": [
        {"key": b64("/ovsgre/hosts/a"), "value": b64('{"ip": "a"}')},
        {"key": b64("/ovsgre/hosts/b"), "value": b64("not json")},
        {"key": b64("/ovsgre/hosts/c"), "value": b64('{"ip": "c"}')}]}
    kv = make_kv(c)
    items, rev = kv.list_with_revision("/ovsgre/hosts/")
    assert rev == 42
    assert items == {"/ovsgre/hosts/a": {"ip": "a"},
                     "/ovsgre/hosts/c": {"ip": "c"}}
    _, url, body = c.calls[-1]
    assert url == "http://a/v3/kv/range"
    assert body == {"key": b64("/ovsgre/hosts/"),
                    "range_end": b64("/ovsgre/hosts0")}


def test_list_empty_range():
    c = FakeClient("a")
    c.post_reply = {"header": {"revision": "7"}}    # no "kvs" when empty
    assert make_kv(c).list("/ovsgre/x/") == {}


def test_keepalive():
    c = FakeClient("a")
    kv = make_kv(c)
    lease = type("Lease", (), {"id": 1234})()
    c.post_reply = {"result": {"ID": "1234", "TTL": "10"}}
    assert kv.keepalive(lease) is True
    assert c.calls[-1][1:] == ("http://a/v3/lease/keepalive", {"ID": 1234})
    c.post_reply = {"result": {"ID": "1234"}}      # expired: no TTL
    assert kv.keepalive(lease) is False


# -- the watch stream ---------------------------------------------------------

class FakeResponse:
    def __init__(self, lines):
        self.lines = lines
        self.closed = False

    def iter_lines(self, chunk_size=512):
        assert chunk_size is None      # events must not wait for a chunk
        for line in self.lines:
            if isinstance(line, Exception):
                raise line
            yield line

    def close(self):
        self.closed = True


def event(kind, key, value=None):
    kv = {"key": b64(key), "mod_revision": "9"}
    if value is not None:
        kv["value"] = b64(json.dumps(value))
    ev = {"kv": kv}
    if kind is not None:
        ev["type"] = kind
    return ev


def line(*events, **extra):
    result = dict(extra, header={"revision": "9"})
    if events:
        result["events"] = list(events)
    return json.dumps({"result": result}).encode()


def test_iter_events():
    resp = FakeResponse([
        line(created=True, watch_id="0"),
        b"",
        line(event(None, "/ovsgre/hosts/a", {"ip": "a"})),   # PUT omitted
        b"   ",
        line(event("PUT", "/ovsgre/hosts/b", {"ip": "b"}),
             event("DELETE", "/ovsgre/hosts/a")),
        line(event("PUT", "/ovsgre/hosts/c")),          # empty value
        json.dumps({"result": {"events": [event(
            "PUT", "/ovsgre/hosts/ü", [1])]}}),        # str lines too
    ])
    assert list(iter_events(resp)) == [
        ("PUT", "/ovsgre/hosts/a", {"ip": "a"}),
        ("PUT", "/ovsgre/hosts/b", {"ip": "b"}),
        ("DELETE", "/ovsgre/hosts/a", None),
        ("PUT", "/ovsgre/hosts/c", None),
        ("PUT", "/ovsgre/hosts/ü", [1]),
    ]


def test_iter_events_empty_stream():
    assert list(iter_events(FakeResponse([]))) == []


def test_iter_events_canceled():
    resp = FakeResponse([
        line(created=True),
        line(event("PUT", "/ovsgre/hosts/a", {"ip": "a"})),
        line(canceled=True, compact_revision="5",
             cancel_reason="mvcc: required revision has been compacted"),
        line(event("PUT", "/ovsgre/hosts/b", {"ip": "b"})),
    ])
    events = iter_events(resp)
    assert next(events) == ("PUT", "/ovsgre/hosts/a", {"ip": "a"})
    with pytest.raises(Unavailable, match="canceled"):
        next(events)


def test_iter_events_stream_error_propagates():
    resp = FakeResponse([line(created=True),
                         requests.exceptions.ChunkedEncodingError("cut")])
    with pytest.raises(requests.RequestException):
        list(iter_events(resp))




class WatchKV:
    """list_with_revision + watch_stream, scripted per cycle."""

    def __init__(self, cycles):
        self.cycles = list(cycles)
        self.watched = []
        self.lock = threading.Lock()

    def list_with_revision(self, prefix):
        with self.lock:
            if not self.cycles:
                raise Unavailable("etcd down")
            self.current = self.cycles.pop(0)
        return dict(self.current[0]), self.current[1]

    def watch_stream(self, prefix, start_revision):
        self.watched.append((prefix, start_revision))
        return self.current[2]


def test_watcher_follows_events_and_rewatches():
    first = FakeResponse([
        line(created=True),
        line(event("PUT", "/ovsgre/hosts/b", {"ip": "b"})),
        line(event("DELETE", "/ovsgre/hosts/a")),
    ])
    second = FakeResponse([line(created=True)])
    kv = WatchKV([({"/ovsgre/hosts/a": {"ip": "a"}}, 10, first),
                  ({"/ovsgre/hosts/c": {"ip": "c"}}, 20, second)])
    seen = []
    w = Watcher(kv, "/ovsgre/hosts/", seen.append, backoff=0.01)
    w.start()
    try:
        assert eventually(lambda: len(kv.watched) >= 2)
    finally:
        w.stop()
    # (not w.join()/is_alive(): see test_watcher_can_be_joined)
    assert eventually(lambda: w not in threading.enumerate())
    assert kv.watched[:2] == [("/ovsgre/hosts/", 11), ("/ovsgre/hosts/", 21)]
    assert seen[:4] == [
        {"/ovsgre/hosts/a": {"ip": "a"}},
        {"/ovsgre/hosts/a": {"ip": "a"}, "/ovsgre/hosts/b": {"ip": "b"}},
        {"/ovsgre/hosts/b": {"ip": "b"}},
        {"/ovsgre/hosts/c": {"ip": "c"}},     # re-read after the stream end
    ]
    assert first.closed and second.closed


THREAD_STOP_BUG = (
    "bug: etcd.py:189 (Watcher) and etcd.py:242 (Registration) assign "
    "self._stop = threading.Event(), shadowing threading.Thread._stop(), "
    "which Thread.join() and is_alive() call once the thread has ended: "
    "on Python 3.11 both raise TypeError: 'Event' object is not callable "
    "(repr() of the thread fails too)")


def test_watcher_can_be_joined():
    kv = WatchKV([])        # every cycle fails: etcd down
    w = Watcher(kv, "/ovsgre/hosts/", lambda items: None, backoff=0.01)
    w.start()
    w.stop()
    w.join(5)
    assert not w.is_alive()


class RegistrationKV:
    def grant(self, ttl):
        raise Unavailable("etcd down")


def test_registration_can_be_joined():
    r = Registration(RegistrationKV(), "/ovsgre/hosts/x", {"ip": "x"}, 1)
    r.start()
    r.stop(revoke=False)
    r.join(5)
    assert not r.is_alive()


class LiveKV:
    """etcd as Registration sees it: leases, keepalive, keys."""

    def __init__(self):
        self.keys, self.leases, self.grants = {}, set(), 0

    def grant(self, ttl):
        self.grants += 1
        lease = type("Lease", (), {"id": self.grants})()
        self.leases.add(lease.id)
        return lease

    def put(self, key, value, lease=None):
        self.keys[key] = (value, lease.id)

    def keepalive(self, lease):
        return lease.id in self.leases

    def get(self, key):
        return self.keys.get(key, (None,))[0]


def _wait(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@pytest.mark.parametrize("lose", ["lease", "key"])
def test_registration_comes_back_after_losing_its_lease_or_key(lose):
    kv = LiveKV()
    r = Registration(kv, "/ovsgre/hosts/x", {"ip": "x"}, ttl=1)
    r.start()
    try:
        _wait(lambda: "/ovsgre/hosts/x" in kv.keys)
        if lose == "lease":          # expired while etcd was unreachable
            kv.leases.clear()
            del kv.keys["/ovsgre/hosts/x"]
        else:                        # deleted under a live lease
            del kv.keys["/ovsgre/hosts/x"]
        _wait(lambda: "/ovsgre/hosts/x" in kv.keys)
        value, lease = kv.keys["/ovsgre/hosts/x"]
        assert value == {"ip": "x"} and lease in kv.leases
        assert kv.grants == 2
    finally:
        r.stop(revoke=False)
        r.join(5)


def test_one_client_factory_for_the_plugin_and_the_commands():
    from ovsgre.config import resolve
    s = resolve(environ={"OVSGRE_ETCD": "https://etcd:2379",
                         "OVSGRE_ETCD_TIMEOUT": "2.5",
                         "OVSGRE_ETCD_CA": "/ca.pem",
                         "OVSGRE_ETCD_CERT": "/c.pem",
                         "OVSGRE_ETCD_KEY": "/k.pem"})
    kv = EtcdKV.from_settings(s)
    assert kv.endpoints == ["https://etcd:2379"] and kv.timeout == 2.5
    assert kv._clients[0].session.cert == ("/c.pem", "/k.pem")
    assert EtcdKV.from_settings(s, timeout=1.0).timeout == 1.0
    assert EtcdKV.from_settings(s, timeout=9.0).timeout == 2.5
